#!/usr/bin/env bash
# Offline clamp throughput: `tunshim clamp` against the pure pcap copy (`tcpdump -r -w`,
# the I/O floor) and `tcprewrite --fixcsum` on the same generated capture. Best of RUNS for
# wall clock and, separately, for CPU time (user+sys: steadier on a shared machine). Input
# and output live in BENCH_DIR (default /dev/shm, so the tools are measured, not the disk).
#
#   bench/pcap_bench.sh [PACKETS]   (default 2500000; env TUNSHIM_BIN, RUNS, BENCH_DIR, KEEP_TMP)
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN=${TUNSHIM_BIN:-$SRC/build-offline/proxy/tunshim}
PACKETS=${1:-2500000}
RUNS=${RUNS:-3}
PY=/usr/bin/python3

[ -x "$BIN" ] || { echo "pcap_bench: TUNSHIM_BIN=$BIN is not an executable" >&2; exit 1; }
for c in tcpdump tcprewrite; do
  command -v "$c" >/dev/null || { echo "pcap_bench: missing $c (run scripts/deps.sh)" >&2; exit 1; }
done

BENCH_DIR=${BENCH_DIR:-/dev/shm}
[ -d "$BENCH_DIR" ] && [ -w "$BENCH_DIR" ] || BENCH_DIR=/tmp
TMP=$(mktemp -d "$BENCH_DIR/tunshim-pcap-bench.XXXXXX")
cleanup() { [ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

IN=$TMP/in.pcap
OUT=$TMP/out.pcap
echo "generating $PACKETS packets …" >&2
"$PY" "$SRC/bench/gen_pcap.py" "$IN" "$PACKETS" >&2
SIZE=$(stat -c %s "$IN")
cat "$IN" >/dev/null   # warm the page cache so every tool starts equal

# best_of NAME CMD…: runs CMD RUNS times (OUT removed before each); prints the best wall
# time and the best CPU time (user+sys), in seconds.
best_of() {
  local name=$1; shift
  local best_wall="" best_cpu="" line
  for _ in $(seq "$RUNS"); do
    rm -f "$OUT"
    /usr/bin/time -f "%e %U %S" -o "$TMP/time" "$@" >/dev/null 2>&1 ||
      { echo "pcap_bench: $name failed: $*" >&2; exit 1; }
    line=$(tail -1 "$TMP/time")
    read -r best_wall best_cpu < <(echo "$line ${best_wall:-inf} ${best_cpu:-inf}" | awk '{
      w = $1; c = $2 + $3; bw = $4; bc = $5
      if (bw == "inf" || w < bw) bw = w
      if (bc == "inf" || c < bc) bc = c
      print bw, bc }')
  done
  echo "$best_wall $best_cpu"
}

read -r T_TCPDUMP C_TCPDUMP < <(best_of tcpdump tcpdump -r "$IN" -w "$OUT")
N_OUT=$(tcpdump -r "$OUT" 2>/dev/null | wc -l)
[ "$N_OUT" -eq "$PACKETS" ] || { echo "pcap_bench: tcpdump copied $N_OUT of $PACKETS" >&2; exit 1; }
read -r T_TCPREWRITE C_TCPREWRITE < <(best_of tcprewrite tcprewrite --fixcsum -i "$IN" -o "$OUT")
read -r T_TUNSHIM C_TUNSHIM < <(best_of tunshim "$BIN" clamp --mss 1360 "$IN" "$OUT")
# The timed run must really have clamped: the summary of one more run, checked.
SUMMARY=$("$BIN" clamp --json --mss 1360 "$IN" "$OUT")
CLAMPED=$(echo "$SUMMARY" | "$PY" -c 'import json,sys; d=json.load(sys.stdin); print(d["packets"], d["clamped"])')

awk -v n="$PACKETS" -v size="$SIZE" -v runs="$RUNS" -v cpus="$(nproc)" -v kernel="$(uname -r)" \
    -v dir="$BENCH_DIR" -v load="$(cut -d' ' -f1 /proc/loadavg)" -v clamped="$CLAMPED" \
    -v t0="$T_TCPDUMP" -v c0="$C_TCPDUMP" -v t1="$T_TCPREWRITE" -v c1="$C_TCPREWRITE" \
    -v t2="$T_TUNSHIM" -v c2="$C_TUNSHIM" 'BEGIN {
  printf "\ninput: %d packets, %.0f MB, Ethernet, in %s; best of %d; %d CPUs, kernel %s, load %s\n",
         n, size / 1e6, dir, runs, cpus, kernel, load
  printf "tunshim clamp checked: packets, clamped = %s\n\n", clamped
  printf "%-34s %8s %12s %8s %8s %10s\n", "command", "wall s", "packets/s", "vs tcpdump", "cpu s", "cpu vs"
  row("tcpdump -r IN -w OUT", t0, c0)
  row("tcprewrite --fixcsum -i IN -o OUT", t1, c1)
  row("tunshim clamp --mss 1360 IN OUT", t2, c2)
}
function row(name, t, c) {
  printf "%-34s %8.2f %12.0f %9.2fx %8.2f %9.2fx\n", name, t, n / t, t / t0, c, c / c0
}'
