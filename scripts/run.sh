#!/usr/bin/env bash
# Installs what is missing, builds tunshim, and runs its main job.
# Until the daemon ships, the main job is the offline clamp: it rewrites the sample
# capture tests/data/sample.pcap as the daemon would rewrite the wire, and prints what it did.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target tunshim

out=$(mktemp --suffix=.pcap)
trap 'rm -f "$out"' EXIT
./build/proxy/tunshim clamp --mtu 1400 tests/data/sample.pcap "$out"
