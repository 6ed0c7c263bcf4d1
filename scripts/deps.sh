#!/usr/bin/env bash
# Installs every Debian 12 package tunshim's build, tests and benchmarks need.
# Idempotent: packages already present are skipped, apt runs only when something is missing.
set -euo pipefail

PKGS=(
  # build
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev clang-format clang-tidy
  # libraries
  libuv1-dev libpcap-dev libnetfilter-queue-dev libmnl-dev libtomlplusplus-dev
  libcli11-dev libspdlog-dev libfmt-dev libsystemd-dev libboost-test-dev libbenchmark-dev
  # the eBPF data path: libbpf, and bpftool for the skeleton (clang is above)
  libbpf-dev bpftool
  # tests and benchmarks: real tools on the wire
  iproute2 iptables nftables conntrack tcpdump tshark python3 python3-scapy socat
  tcpreplay iperf3 curl procps psmisc iputils-ping iputils-tracepath prometheus time
  python3-yaml
  # packaging test: unit verify, man pages, .deb build and scratch install
  systemd man-db groff-base bsdextrautils dpkg-dev init-system-helpers
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PKGS[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing packages (${missing[*]}); run as root to install them" >&2
  exit 1
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; answer for it.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
