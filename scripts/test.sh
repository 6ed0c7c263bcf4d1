#!/usr/bin/env bash
# Installs what is missing, builds tunshim twice, and runs the whole test suite:
#   1. gcc, warnings as errors: unit tests, end-to-end tests (namespaces, real netfilter)
#   2. clang with AddressSanitizer + UndefinedBehaviorSanitizer: unit tests again, the
#      libFuzzer harnesses for a bounded time each (TUNSHIM_FUZZ_SECONDS, default 60), and
#      the end-to-end tests once more against the sanitized daemon.
# Needs root (the end-to-end tests build network namespaces).
#
# ctest runs tests side by side (-j): the end-to-end tests spend most of their time waiting
# on timers and the network, so twice the cores keeps the CPUs busy without starving them.
# Tests that measure time are marked RUN_SERIAL and run alone (tests/CMakeLists.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh

jobs=$(nproc)
test_jobs=${TUNSHIM_TEST_JOBS:-$((2 * jobs))}
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTUNSHIM_WERROR=ON
cmake --build build -j "$jobs"
(cd build && ctest --output-on-failure --timeout 900 -j "$test_jobs")

CC=clang CXX=clang++ cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DTUNSHIM_WERROR=ON -DTUNSHIM_SANITIZE=ON -DTUNSHIM_FUZZ=ON -DTUNSHIM_BENCH=OFF
cmake --build build-asan -j "$jobs"
# Fuzzers are CPU-bound, single-threaded, and each has its own time budget: one per core.
(cd build-asan && ctest --output-on-failure -L 'unit|fuzz' --timeout 900 -j "$jobs")
# The sanitized daemon through every end-to-end test. Any report (leak, overflow, UB) of any
# process a test starts fails that test: tests/e2e/lib.sh points log_path into the test's
# directory and checks it at exit; the builds abort on the first error
# (-fno-sanitize-recover=all). Leaks are checked at every normal exit of the daemon.
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 \
  UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -L e2e --timeout 900 -j "$test_jobs")
