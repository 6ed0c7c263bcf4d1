#!/usr/bin/env bash
# Installs what is missing, builds tunshim, and runs its main job: the daemon, in the
# foreground, on /etc/tunshim/tunshim.conf (installed from conf/tunshim.conf the first time;
# an existing file is never overwritten). Ctrl-C stops it and removes its rules.
# Needs root: it binds an NFQUEUE and installs netfilter rules.
set -euo pipefail
cd "$(dirname "$0")/.."

config=${TUNSHIM_CONFIG:-/etc/tunshim/tunshim.conf}

bash scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target tunshim

if [ ! -e "$config" ]; then
  install -D -m 0644 conf/tunshim.conf "$config"
  echo "run: installed the example config at $config (edit it for your tunnel)"
fi
./build/proxy/tunshim check-config -c "$config" >/dev/null
echo "run: starting tunshim on $config (Ctrl-C to stop)"
exec ./build/proxy/tunshim run -c "$config"
