#!/usr/bin/env bash
# Installs what is missing, builds tunshim, and runs its main job on this machine:
#   - where a tunnel interface named in /etc/tunshim/tunshim.conf exists (ppp0, tun0 …):
#     the daemon, in the foreground, on that config (installed from conf/tunshim.conf the
#     first time; an existing file is never overwritten). Ctrl-C stops it and removes its
#     rules.
#   - where none exists (a fresh machine, a laptop without the VPN): `tunshim demo`, which
#     shows on a throwaway namespace lab what the daemon would do, and says how to go on.
# `scripts/run.sh --daemon` starts the daemon even while no tunnel exists yet (it waits for
# the interface; its rules match by name). Needs root: it binds an NFQUEUE and installs
# netfilter rules, and the demo builds network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

config=${TUNSHIM_CONFIG:-/etc/tunshim/tunshim.conf}
force_daemon=0
case "${1:-}" in
  --daemon) force_daemon=1 ;;
  "") ;;
  *) echo "usage: scripts/run.sh [--daemon]" >&2; exit 2 ;;
esac

if [ "$(id -u)" -ne 0 ]; then
  echo "run: needs root (the daemon installs netfilter rules; the demo builds namespaces): sudo scripts/run.sh" >&2
  exit 1
fi

bash scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target tunshim

if [ ! -e "$config" ]; then
  install -D -m 0644 conf/tunshim.conf "$config"
  echo "run: installed the example config at $config (edit it for your tunnel)"
fi
effective=$(./build/proxy/tunshim check-config -c "$config")

# The tunnels the config names, and which of them exist here.
mapfile -t ifaces < <(printf '%s\n' "$effective" | sed -n 's/^interface = "\([^"]*\)".*/\1/p')
present=()
for i in "${ifaces[@]}"; do
  if ip link show dev "$i" >/dev/null 2>&1; then present+=("$i"); fi
done

if [ ${#present[@]} -eq 0 ] && [ "$force_daemon" -eq 0 ]; then
  names=${ifaces[*]:-none}
  echo "run: no tunnel interface ${names// /, } here: showing the demo; edit $config and rerun to start the daemon"
  echo "run: (scripts/run.sh --daemon starts it anyway, e.g. before the VPN is up)"
  exec ./build/proxy/tunshim demo
fi
echo "run: starting tunshim on $config for ${present[*]:-${ifaces[*]}} (Ctrl-C to stop)"
exec ./build/proxy/tunshim run -c "$config"
