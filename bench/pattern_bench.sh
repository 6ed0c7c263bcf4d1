#!/usr/bin/env bash
# Interface patterns at scale (issue 14's benchmarks): tunshim with interface = "ppp+",
# mss = 1200 and N sessions ppp0..pppN-1 (TUN interfaces, tests/e2e/tun_farm.py as every
# peer), in a namespace of its own. For each run (N, keepalive): idle wake-ups of the whole
# daemon, /metrics scrape time and size, the time from a new interface being up to its
# first SYN arriving clamped (p50/p99 over --appear interfaces made one after another), and
# raw SYNs per second clamped, round-robin over all N sessions. bench/pattern_bench.py
# measures; this script sets up and tears down.
#   sudo TUNSHIM_BIN=build/proxy/tunshim bash bench/pattern_bench.sh [RUN...]
# RUN is N:KEEPALIVE, default "1:off 1000:off 1000:idle". TUNSHIM_DATAPATH=bpf measures the
# eBPF data path (lib.sh; default queue). BENCH_ARGS passes options to pattern_bench.py.
. "$(dirname "$0")/../tests/e2e/lib.sh"

require_root
require_cmd ip curl "$PY"
[ -x "$TUNSHIM_BIN" ] || die "TUNSHIM_BIN=$TUNSHIM_BIN is not executable"
HERE=$(cd "$(dirname "$0")" && pwd)
RUNS=("$@")
[ ${#RUNS[@]} -gt 0 ] || RUNS=(1:off 1000:off 1000:idle)

mkns c
RESULTS=()
for run in "${RUNS[@]}"; do
  n=${run%%:*} ka=${run#*:}
  CONF="$E2E_TMP/tunshim-$n-$ka.conf"
  {
    printf '[global]\nlog_level = "info"\nstats_listen = "127.0.0.1:9477"\ncontrol_socket = "%s"\n' "$E2E_TMP/ctl.sock"
    printf '[[tunnel]]\ninterface = "ppp+"\nmss = 1200\nkeepalive = "%s"\n' "$ka"
  } >"$CONF"
  e2e_tunshim_start c "$CONF"
  TPID=$E2E_TUNSHIM_PID
  up() { inns c curl -sf http://127.0.0.1:9477/metrics >/dev/null; }
  wait_for 20 up || die "tunshim did not serve /metrics: $(tail -5 "$E2E_TMP/tunshim.log")"
  DPID=$(for p in $(ip netns pids "$(ns c)"); do
    if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = tunshim ]; then echo "$p"; fi
  done | head -1)
  [ -n "$DPID" ] || die "no tunshim process in the namespace"
  dp=$(inns c curl -s http://127.0.0.1:9477/metrics | sed -n 's/^tunshim_datapath_info{datapath="\([a-z]*\)".*/\1/p')
  log "run N=$n keepalive=$ka datapath=$dp"
  out=$(inns c "$PY" "$HERE/pattern_bench.py" --n "$n" --pid "$DPID" ${BENCH_ARGS:-}) ||
    fail "pattern_bench.py N=$n: $out"
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$DPID/status")
  log "N=$n keepalive=$ka: $out"
  RESULTS+=("$n $ka $dp $rss $out")
  kill -TERM "$TPID"
  wait "$TPID" 2>/dev/null || true
  grep -qE ' (error|critical): ' "$E2E_TMP/tunshim.log" &&
    log "errors in the daemon's log: $(grep -E ' (error|critical): ' "$E2E_TMP/tunshim.log" | head -3)"
  # Every interface the run made goes with the farm's descriptors; wait for the kernel.
  sleep 1
done

printf '\n| tunnels | keepalive | datapath | idle wake-ups/s (preempted/s) | /metrics scrape (median, max) | size | up -> clamped SYN p50 / p99 / max | first SYN unclamped (never clamped) | SYN/s sent | SYN/s clamped | daemon CPU per SYN | RSS |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n'
for r in "${RESULTS[@]}"; do
  set -- $r
  n=$1 ka=$2 dp=$3 rss=$4
  shift 4
  printf '%s' "$*" | "$PY" -c '
import json, sys
n, ka, dp, rss = sys.argv[1:5]
d = json.load(sys.stdin)
if "error" in d:
    print("| %s | %s | %s | %s |" % (n, ka, dp, d["error"])); sys.exit()
a, s, y, i = d["appear"], d["scrape"], d["syn"], d["idle"]
cpu = "%.2f µs" % y["cpu_us_per_syn"] if y["clamped_per_s"] > 0 else "-"
print("| %s | %s | %s | %.2f (%.2f) | %.1f / %.1f ms | %d KB | %.1f / %.1f / %.1f ms (%d) | %d (%d) | %d | %d | %s | %.1f MB |" % (
    n, ka, dp, i["wakeups_per_s"], i["preempted_per_s"], s["median_ms"], s["max_ms"],
    s["bytes"] // 1024, a["p50_ms"], a["p99_ms"], a["max_ms"], a["samples"],
    a["unclamped_first"], a["never"], y["sent_per_s"], y["clamped_per_s"], cpu,
    int(rss) / 1024))' "$n" "$ka" "$dp" "$rss"
done
pass "pattern bench finished (${#RESULTS[@]} runs)"
finish
