#!/usr/bin/env bash
# Installs what is missing, builds tunshim twice, and runs the whole test suite:
#   1. gcc, warnings as errors: unit tests, end-to-end tests (namespaces, real netfilter)
#   2. clang with AddressSanitizer + UndefinedBehaviorSanitizer: unit tests again, and the
#      libFuzzer harnesses for a bounded time each (TUNSHIM_FUZZ_SECONDS, default 60).
# Needs root (the end-to-end tests build network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

jobs=$(nproc)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTUNSHIM_WERROR=ON
cmake --build build -j "$jobs"
(cd build && ctest --output-on-failure --timeout 900)

CC=clang CXX=clang++ cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DTUNSHIM_WERROR=ON -DTUNSHIM_SANITIZE=ON -DTUNSHIM_FUZZ=ON -DTUNSHIM_BENCH=OFF
cmake --build build-asan -j "$jobs"
(cd build-asan && ctest --output-on-failure -L 'unit|fuzz' --timeout 900)
