#!/usr/bin/env bash
# `tunshim doctor --read` throughput against `tcpdump -r FILE -w /dev/null` (libpcap reading
# and writing every record: the floor any libpcap reader pays) on the same generated
# capture, in the same run. Best of RUNS for wall clock and, separately, for CPU time
# (user+sys). The capture lives in BENCH_DIR (default /dev/shm), so the tools are measured,
# not the disk.
#
#   bench/doctor_bench.sh [PACKETS]   (default 2500000; env TUNSHIM_BIN, RUNS, BENCH_DIR)
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN=${TUNSHIM_BIN:-$SRC/build/proxy/tunshim}
PACKETS=${1:-2500000}
RUNS=${RUNS:-3}
PY=/usr/bin/python3

[ -x "$BIN" ] || { echo "doctor_bench: TUNSHIM_BIN=$BIN is not an executable" >&2; exit 1; }
command -v tcpdump >/dev/null || { echo "doctor_bench: missing tcpdump" >&2; exit 1; }

BENCH_DIR=${BENCH_DIR:-/dev/shm}
[ -d "$BENCH_DIR" ] && [ -w "$BENCH_DIR" ] || BENCH_DIR=/tmp
TMP=$(mktemp -d "$BENCH_DIR/tunshim-doctor-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

IN=$TMP/in.pcap
echo "generating $PACKETS packets …" >&2
"$PY" "$SRC/bench/gen_pcap.py" "$IN" "$PACKETS" >&2
SIZE=$(stat -c %s "$IN")
cat "$IN" >/dev/null   # warm the page cache so both tools start equal

# best_of NAME CMD…: best wall time and best CPU time (user+sys) over RUNS, in seconds.
# doctor exits 1 when it finds risks (the generated mix has some): 0 and 1 are both runs.
best_of() {
  local name=$1; shift
  local best_wall="" best_cpu="" line rc
  for _ in $(seq "$RUNS"); do
    rc=0
    /usr/bin/time -f "%e %U %S" -o "$TMP/time" "$@" >/dev/null 2>&1 || rc=$?
    [ "$rc" -le 1 ] || { echo "doctor_bench: $name failed ($rc): $*" >&2; exit 1; }
    line=$(tail -1 "$TMP/time")
    read -r best_wall best_cpu < <(echo "$line ${best_wall:-inf} ${best_cpu:-inf}" | awk '{
      w = $1; c = $2 + $3; bw = $4; bc = $5
      if (bw == "inf" || w < bw) bw = w
      if (bc == "inf" || c < bc) bc = c
      print bw, bc }')
  done
  echo "$best_wall $best_cpu"
}

read -r T_TCPDUMP C_TCPDUMP < <(best_of tcpdump tcpdump -r "$IN" -w /dev/null)
read -r T_DOCTOR C_DOCTOR < <(best_of doctor "$BIN" doctor --read "$IN" --pmtu 1400 --json)
# The timed run must really have looked at every record.
N=$("$BIN" doctor --read "$IN" --pmtu 1400 --json 2>/dev/null | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["capture"]["records"])' || true)
[ "$N" = "$PACKETS" ] || { echo "doctor_bench: doctor analysed $N of $PACKETS records" >&2; exit 1; }

"$PY" - "$PACKETS" "$SIZE" "$T_TCPDUMP" "$C_TCPDUMP" "$T_DOCTOR" "$C_DOCTOR" <<'PYEOF'
import sys
n, size = int(sys.argv[1]), int(sys.argv[2])
rows = [("tcpdump -r FILE -w /dev/null", float(sys.argv[3]), float(sys.argv[4])),
        ("tunshim doctor --read FILE --pmtu 1400", float(sys.argv[5]), float(sys.argv[6]))]
print(f"{n} packets, {size / 1e6:.0f} MB")
print(f"{'tool':40} {'wall s':>7} {'Mpkt/s':>7} {'cpu s':>7} {'Mpkt/s cpu':>10}")
for name, w, c in rows:
    print(f"{name:40} {w:7.2f} {n / w / 1e6:7.2f} {c:7.2f} {n / c / 1e6 if c else 0:10.2f}")
print(f"doctor / tcpdump throughput: {rows[0][1] / rows[1][1]:.2f}x wall, "
      f"{rows[0][2] / rows[1][2] if rows[1][2] else 0:.2f}x cpu")
PYEOF
