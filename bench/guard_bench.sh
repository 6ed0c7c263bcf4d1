#!/usr/bin/env bash
# What the oversize guard costs on bulk TCP (docs/PERFORMANCE.md, "The guard on bulk TCP").
#
#   sudo TUNSHIM_BIN=build-guardbench/proxy/tunshim bash bench/guard_bench.sh [--runs N]
#        [--seconds S] [--down-seconds D] [--max-load L] [--load-wait W]
#
# Lab: the black-hole tunnel lab (tests/e2e/lab.sh + pmtu_lab.sh) with underlay 1400, so the
# inner path MTU is 1372 while ppp0 says 1500. iperf3 client (client ns) -> server (server
# ns) through ppp0: upload S s, then download (-R) D s, per case, in these cases:
#   A  kernel    no tunshim; the kernel's TCPMSS target clamps SYNs to 1332 (in and out)
#   B  guard     tunshim mss = "auto", guard on (default): path MTU 1372 < ppp0 MTU 1500, so
#                the guard rule (--length 1373:65535, DF) exists and queues every GSO
#                super-packet of the upload; the kernel segments it, each segment goes
#                through tunshim and is accepted (the guard's `passed`)
#   C  noguard   tunshim mss = "auto", guard = "off"
#   D  setmtu    tunshim mss = "auto", set_interface_mtu = true: ppp0 MTU becomes 1372, the
#                guard is on but has no rule
#   E  bpfguard  tunshim datapath = "bpf", mss = "auto", guard on (default): the guard is the
#                tc egress program with guard_mtu 1372; a GSO super-packet is judged by its
#                segment size and never leaves the kernel
# Rounds are interleaved (A B C D, N times) so drifting load on a shared host hits every
# case alike. Per transfer: iperf3 -J receiver throughput and bytes; tunshim's utime+stime
# delta (/proc/PID/stat); packets tunshim read from the queue (`tunshim stats --json`); the
# guard's `passed` delta (the SIGUSR1 counters line, the only place it is exposed); both
# socat processes' CPU (the userspace tunnel, the likely bottleneck); the iperf3 client's own
# CPU % (kernel work of queueing and segmenting partly runs in the sender's context, which
# tunshim's figure does not include); the whole host's busy CPU (catches that kernel work, and
# also whatever else runs on the host). The summary table
# (bench/guard_summary.py) gives medians per transfer and CPU seconds per GB.
. "$(dirname "$0")/../tests/e2e/lib.sh"
. "$(dirname "$0")/../tests/e2e/lab.sh"
. "$(dirname "$0")/../tests/e2e/pmtu_lab.sh"
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)

RUNS=3; SECS=10; DSECS=5; MAX_LOAD=1.5; LOAD_WAIT=600
while [ $# -gt 0 ]; do
  case $1 in
    --runs) RUNS=$2; shift ;; --seconds) SECS=$2; shift ;; --down-seconds) DSECS=$2; shift ;;
    --max-load) MAX_LOAD=$2; shift ;; --load-wait) LOAD_WAIT=$2; shift ;;
    *) die "usage: $0 [--runs N] [--seconds S] [--down-seconds D (0: no download)] [--max-load L] [--load-wait W]" ;;
  esac
  shift
done
require_cmd iperf3
[ -x "$TUNSHIM_BIN" ] || die "TUNSHIM_BIN=$TUNSHIM_BIN is not executable"

UNDERLAY=1400; N=$((UNDERLAY - PMTU_OUTER_OVERHEAD)); MSS=$((N - 40))   # 1372, 1332
SOCK="$E2E_TMP/ctl.sock"
PORT=5201
HZ=$(getconf CLK_TCK)
RAW="$E2E_TMP/raw.tsv"
load1() { cut -d' ' -f1 /proc/loadavg; }

# The host is shared: wait (up to LOAD_WAIT s) for a quiet moment before building the lab.
t_end=$((SECONDS + LOAD_WAIT))
while awk -v l="$(load1)" -v m="$MAX_LOAD" 'BEGIN { exit !(l >= m) }' && [ $SECONDS -lt $t_end ]; do
  log "load average $(load1) >= $MAX_LOAD, waiting ($((t_end - SECONDS)) s left)"
  sleep 15
done
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average at start: $LOAD_START ($(nproc) CPUs)"

pmtu_lab_up
pmtu_lab_underlay "$UNDERLAY"
pmtu_truth_check "$N" || die "the tunnel's path MTU is not $N (DF ping check): lab broken"
pass "lab: inner path MTU $N (underlay $UNDERLAY), ppp0 MTU $LAB_TUN_MTU"
lab_spawn server "$E2E_TMP/iperf3-server.log" iperf3 -s -B "$LAB_S_TUN" -p "$PORT"
wait_for 5 sh -c "ip netns exec $(ns server) ss -Hltn | grep -q ':$PORT '" || die "iperf3 server down"
SOCAT_PIDS=$(for n in client server; do
  for p in $(ip netns pids "$(ns "$n")"); do
    if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = socat ]; then echo "$p"; fi
  done
done | tr '\n' ' ')
[ "$(wc -w <<<"$SOCAT_PIDS")" = 2 ] || die "expected 2 socat processes, found: $SOCAT_PIDS"

# ---- probes --------------------------------------------------------------------------------
ticks() {   # utime + stime of the given pids, in clock ticks (0 for a pid that is gone)
  local p t=0
  for p in "$@"; do
    if [ -n "$p" ] && [ -r "/proc/$p/stat" ]; then t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); fi
  done
  echo "$t"
}
# host_busy: busy jiffies of the whole host (all CPUs, /proc/stat minus idle and iowait). It
# catches the kernel's share of queueing (softirq, segmenting, reinjecting) that no process's
# figure shows, but also anything else the shared host runs at the time.
host_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
stats_json() { inns client "$TUNSHIM_BIN" stats --json --socket "$SOCK" 2>/dev/null; }
stat() {   # pmtu_confirmed | pmtu | mss4 | queue_packets
  stats_json | "$PY" -c '
import json, sys
d = json.load(sys.stdin); t = d["tunnels"][0]; m = t["metrics"]; k = sys.argv[1]
if k == "pmtu_confirmed": print(str(t[k]).lower())
elif k == "pmtu": print(m.get("pmtu_bytes"))
elif k == "mss4": print(m["mss_clamp_bytes"]["ipv4"])
elif k == "queue_packets": print(d["global"]["queue_packets_total"])
' "$1"
}
confirmed_at() { [ "$(stat pmtu_confirmed)" = true ] && [ "$(stat pmtu)" = "$1" ]; }
guard_rule() { inns client iptables-save -t mangle | grep -q -- "--length $((N + 1)):65535"; }
ppp0_mtu() { ip -n "$(ns client)" -o link show ppp0 | sed -n 's/.* mtu \([0-9]*\) .*/\1/p'; }
mtu_is() { [ "$(ppp0_mtu)" = "$1" ]; }
# guard_passed: the guard's `passed` counter from a fresh SIGUSR1 counters block (0 when the
# daemon logs no guard line: no tunshim, or guard = "off").
guard_passed() {
  [ -n "$LAB_TUNSHIM_PID" ] || { echo 0; return; }
  local pos
  pos=$(wc -l <"$LAB_TUNSHIM_LOG")
  kill -USR1 "$LAB_TUNSHIM_PID"
  # (a subshell: fail() would count nowhere; transfer() checks for the "x")
  # The block's last line: the queue's counters, or on the eBPF path the datapath line.
  wait_for 10 sh -c "tail -n +$((pos + 1)) '$LAB_TUNSHIM_LOG' | grep -Eq 'queue [0-9]*: packets=|datapath bpf:'" ||
    { echo x; return; }
  tail -n "+$((pos + 1))" "$LAB_TUNSHIM_LOG" | sed -n 's/.*guard above .* passed=\([0-9]*\).*/\1/p' | tail -1 |
    grep . || echo 0
}
queue_packets() { if [ -n "$LAB_TUNSHIM_PID" ]; then stat queue_packets; else echo 0; fi; }

# transfer CASE DIR SECONDS: one iperf3 run, one raw line into RAW.
transfer() {
  local c=$1 dir=$2 s=$3 rflag="" j="$E2E_TMP/iperf3.$1.$2.$RANDOM.json"
  [ "$dir" = down ] && rflag=-R
  local g0 q0 t0 k0 t1 k1 q1 g1 l0 l1 h0 h1
  g0=$(guard_passed); q0=$(queue_packets)
  l0=$(load1); t0=$(ticks "$LAB_TUNSHIM_PID"); k0=$(ticks $SOCAT_PIDS); h0=$(host_busy)
  # shellcheck disable=SC2086
  if ! inns client timeout $((s + 20)) iperf3 -c "$LAB_S_TUN" -p "$PORT" -t "$s" -J $rflag >"$j" 2>&1; then
    fail "$c $dir: iperf3 failed: $(head -c 300 "$j")"
    return
  fi
  h1=$(host_busy); t1=$(ticks "$LAB_TUNSHIM_PID"); k1=$(ticks $SOCAT_PIDS); l1=$(load1)
  q1=$(queue_packets); g1=$(guard_passed)
  case "$g0$g1$q0$q1" in ''|*[!0-9]*) fail "$c $dir: counters unreadable (guard $g0/$g1, queue $q0/$q1)"; return ;; esac
  read -r bytes bps retr icpu <<<"$("$PY" -c '
import json, sys
e = json.load(open(sys.argv[1]))["end"]
print(e["sum_received"]["bytes"], e["sum_received"]["bits_per_second"], e["sum_sent"].get("retransmits", 0),
      e["cpu_utilization_percent"]["host_total"])' "$j")"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$dir" "$s" "$bytes" "$bps" "$retr" \
    "$((t1 - t0))" "$((q1 - q0))" "$((g1 - g0))" "$((k1 - k0))" "$l0" "$l1" "$icpu" "$((h1 - h0))" >>"$RAW"
  log "$c $dir: $(awk -v b="$bps" 'BEGIN{printf "%.1f", b/1e6}') Mbit/s, $bytes B, retr $retr, client CPU $icpu %," \
      "tunshim $((t1 - t0)) ticks, queue +$((q1 - q0)), guard passed +$((g1 - g0)), socat $((k1 - k0)) ticks, host busy $((h1 - h0)) ticks, load $l0..$l1"
  [ "$bytes" -gt 0 ] && pass "$c $dir: transfer through the black hole moved $bytes bytes" ||
    fail "$c $dir: nothing crossed"
}

conf() {   # conf TUNNEL-LINES [GLOBAL-LINES]
  cat >"$LAB_TUNSHIM_CONF" <<CONF
[global]
${2:-}
log_level = "info"
stats_listen = "off"
control_socket = "$SOCK"
[[tunnel]]
interface = "ppp0"
mss = "auto"
keepalive = "off"
probe_target = "$LAB_S_TUN"
$1
CONF
}

# setup CASE / teardown CASE: each case starts from ppp0 at 1500 and no rules at all.
setup() {
  case $1 in
    A-kernel)
      lab_kernel_clamp "$MSS"
      ;;
    B-guard|C-noguard|D-setmtu|E-bpfguard)
      # lab_tunshim_start waits for the hooks of TUNSHIM_DATAPATH's path (lab.sh).
      TUNSHIM_DATAPATH=queue
      case $1 in
        B-guard) conf '' 'datapath = "queue"' ;;
        C-noguard) conf 'guard = "off"' 'datapath = "queue"' ;;
        D-setmtu) conf 'set_interface_mtu = true' 'datapath = "queue"' ;;
        E-bpfguard) conf '' 'datapath = "bpf"'; TUNSHIM_DATAPATH=bpf; E2E_START_WAIT=90 ;;
      esac
      lab_tunshim_start
      wait_for 30 confirmed_at "$N" || fail "$1: no path MTU $N (got $(stat pmtu))"
      [ "$(stat mss4)" = "$MSS" ] || fail "$1: clamp $(stat mss4), want $MSS"
      ;;
  esac
  case $1 in
    B-guard)
      wait_for 10 guard_rule && pass "$1: guard rule queues packets above $N (ppp0 MTU $(ppp0_mtu))" ||
        fail "$1: no guard rule above $N"
      ;;
    D-setmtu)
      wait_for 10 mtu_is "$N" && pass "$1: ppp0 MTU is now $N" || fail "$1: ppp0 MTU $(ppp0_mtu), want $N"
      ! guard_rule && pass "$1: no guard rule" || fail "$1: a guard rule exists"
      ;;
    E-bpfguard)
      bpf_guard_on() { [ "$(e2e_bpf_state client ppp0 guard_mtu)" = "$N" ]; }
      wait_for 10 bpf_guard_on && pass "$1: the egress program's guard_mtu is $N (ppp0 MTU $(ppp0_mtu))" ||
        fail "$1: guard_mtu '$(e2e_bpf_state client ppp0 guard_mtu)', want $N"
      ! guard_rule && pass "$1: no guard rule" || fail "$1: a guard rule exists"
      BPF_G0=$(e2e_bpf_state client ppp0)
      ;;
    *)
      ! guard_rule && pass "$1: no guard rule" || fail "$1: a guard rule exists"
      mtu_is "$LAB_TUN_MTU" || fail "$1: ppp0 MTU $(ppp0_mtu), want $LAB_TUN_MTU"
      ;;
  esac
}
teardown() {
  case $1 in
    A-kernel) lab_kernel_unclamp ;;
    *) if [ "$1" = E-bpfguard ]; then
         # What the guard did with the bulk: judged by segment size, nothing dropped.
         local g1; g1=$(e2e_bpf_state client ppp0)
         log "$1: programs' counters before the transfers: $(grep -o 'guard_[a-z]*=[0-9]*' <<<"$BPF_G0" | tr '\n' ' ')"
         log "$1: programs' counters after the transfers:  $(grep -o 'guard_[a-z]*=[0-9]*' <<<"$g1" | tr '\n' ' ')"
       fi
       lab_tunshim_stop
       [ "$(lab_tunshim_rules)" = 0 ] || fail "$1: tunshim left queue rules behind"
       ip -n "$(ns client)" link set ppp0 mtu "$LAB_TUN_MTU" ;;   # D lowered it
  esac
}

CASES=(A-kernel B-guard C-noguard D-setmtu E-bpfguard)
for ((r = 1; r <= RUNS; r++)); do
  for c in "${CASES[@]}"; do
    setup "$c"
    transfer "$c" up "$SECS"
    [ "$DSECS" -eq 0 ] || transfer "$c" down "$DSECS"
    teardown "$c"
  done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

echo
log "command: TUNSHIM_BIN=$TUNSHIM_BIN bash bench/guard_bench.sh --runs $RUNS --seconds $SECS --down-seconds $DSECS"
log "lab: black hole, underlay $UNDERLAY, inner path MTU $N, ppp0 MTU $LAB_TUN_MTU, clamp $MSS; $(nproc) CPUs, CLK_TCK $HZ"
log "load average (1/5/15 min): start $LOAD_START, end $LOAD_END"
"$PY" "$BENCH_DIR/guard_summary.py" "$RAW" "$HZ"
finish
