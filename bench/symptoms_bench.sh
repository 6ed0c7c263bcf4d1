#!/usr/bin/env bash
# What counting the passive black-hole symptoms costs the daemon (docs/PERFORMANCE.md,
# "Black-hole symptoms in the daemon"): the same `tunshim run` (datapath = "bpf",
# mss = "auto", its search complete, so the trigger polls too) with the symptoms counted
# and with TUNSHIM_TEST_SYMPTOMS=off (not counted, so no nudge either), interleaved round by
# round, on
# client ─ ppp0 veth ─ server (tests/e2e/lab.sh --no-tunnel).
#
#   sudo TUNSHIM_BIN=build/proxy/tunshim bash bench/symptoms_bench.sh [--rounds N]
#        [--seconds S] [--rate BITS]
#
# Per round and mode: iperf3 TCP client → server for S seconds at --rate (default 1.1G:
# about 100 k full-size segments/s), ppp0 with gso_max_segs 1 so that every segment is its
# own packet through the programs (the worst case: GSO would hand them over in batches).
# The programs' own time comes from the kernel (kernel.bpf_stats_enabled, run_time_ns and
# run_cnt of tunshim_egress and tunshim_ingress); the daemon's from /proc/PID/schedstat. Prints
# per round and mode: packets/s and ns per packet of each program, the programs' share of
# one core, the daemon's CPU ms per second; then the medians and the differences.
. "$(dirname "$0")/../tests/e2e/lib.sh"
. "$(dirname "$0")/../tests/e2e/lab.sh"

ROUNDS=5; SECS=5; RATE=1.1G
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift ;; --seconds) SECS=$2; shift ;; --rate) RATE=$2; shift ;;
    *) die "usage: $0 [--rounds N] [--seconds S] [--rate BITS]" ;;
  esac
  shift
done
require_cmd iperf3 tc bpftool
[ -x "$TUNSHIM_BIN" ] || die "TUNSHIM_BIN=$TUNSHIM_BIN is not executable"
export TUNSHIM_DATAPATH=bpf

stats_was=$(sysctl -n kernel.bpf_stats_enabled)
sysctl -qw kernel.bpf_stats_enabled=1
on_exit "sysctl -qw kernel.bpf_stats_enabled=$stats_was"

lab_up --no-tunnel
ip -n "$(ns client)" link set dev ppp0 gso_max_segs 1
lab_spawn server "$E2E_TMP/iperf3.log" iperf3 -s -p 5201
wait_for 5 sh -c "ip netns exec $(ns server) ss -Hltn | grep -q ':5201 '" || die "iperf3 server down"

cat >"$LAB_TUNSHIM_CONF" <<CONF
[global]
log_level = "info"
stats_listen = "off"
control_socket = "$LAB_TUNSHIM_SOCK"
datapath = "bpf"
[[tunnel]]
interface = "ppp0"
mss = "auto"
keepalive = "off"
probe_target = "$LAB_S_TUN"
CONF

searched() {
  inns client "$TUNSHIM_BIN" stats --json --socket "$LAB_TUNSHIM_SOCK" 2>/dev/null |
    "$PY" -c 'import json,sys; t=json.load(sys.stdin)["tunnels"][0]; sys.exit(0 if t["pmtu_state"]=="complete" else 1)'
}
# prog_totals: "run_time_ns run_cnt" of tunshim_egress, then of tunshim_ingress.
prog_totals() {
  bpftool prog show -j | "$PY" -c 'import json,sys
t={"tunshim_egress":[0,0],"tunshim_ingress":[0,0]}
for p in json.load(sys.stdin):
    if p.get("name") in t:
        t[p["name"]][0]+=p.get("run_time_ns",0); t[p["name"]][1]+=p.get("run_cnt",0)
print(*t["tunshim_egress"], *t["tunshim_ingress"])'
}
daemon_ns() { cut -d' ' -f1 "/proc/$LAB_TUNSHIM_PID/schedstat"; }   # CPU time, ns

start_mode() {   # on | off
  lab_tunshim_stop TERM
  if [ "$1" = off ]; then export TUNSHIM_TEST_SYMPTOMS=off; else unset TUNSHIM_TEST_SYMPTOMS; fi
  lab_tunshim_start
  wait_for 30 searched || die "no completed search on ppp0 ($1)"
}

RES="$E2E_TMP/results.txt"; : >"$RES"
for r in $(seq 1 "$ROUNDS"); do
  for mode in on off; do
    start_mode "$mode"
    read -r ens0 ecnt0 ins0 icnt0 <<<"$(prog_totals)"; d0=$(daemon_ns); t0=$(date +%s%N)
    inns client iperf3 -c "$LAB_S_TUN" -p 5201 -t "$SECS" -b "$RATE" -J >"$E2E_TMP/iperf.json" 2>&1 ||
      die "iperf3 failed: $(head -c 300 "$E2E_TMP/iperf.json")"
    read -r ens1 ecnt1 ins1 icnt1 <<<"$(prog_totals)"; d1=$(daemon_ns); t1=$(date +%s%N)
    "$PY" - "$mode" "$r" "$ens0" "$ecnt0" "$ins0" "$icnt0" "$ens1" "$ecnt1" "$ins1" "$icnt1" \
      "$t0" "$t1" "$d0" "$d1" >>"$RES" <<'EOF'
import sys
mode, r = sys.argv[1], sys.argv[2]
ens0, ecnt0, ins0, icnt0, ens1, ecnt1, ins1, icnt1, t0, t1, d0, d1 = map(int, sys.argv[3:])
wall = (t1 - t0) / 1e9
ecnt, icnt, ens, ins = ecnt1 - ecnt0, icnt1 - icnt0, ens1 - ens0, ins1 - ins0
print(mode, r, f"{ecnt / wall:.0f}", f"{ens / max(ecnt, 1):.1f}", f"{icnt / wall:.0f}",
      f"{ins / max(icnt, 1):.1f}", f"{100 * (ens + ins) / (t1 - t0):.3f}",
      f"{(d1 - d0) / 1e6 / wall:.2f}")
EOF
    tail -1 "$RES" | awk '{printf "round %s symptoms %-3s: egress %s packets/s %s ns each, ingress %s packets/s %s ns each, programs %s %% of a core, daemon %s ms CPU/s\n", $2, $1, $3, $4, $5, $6, $7, $8}'
  done
done
lab_tunshim_stop TERM
"$PY" - "$RES" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {}
for mode in ("on", "off"):
    rs = [r for r in rows if r[0] == mode]
    med[mode] = [statistics.median(float(r[i]) for r in rs) for i in range(2, 8)]
    epps, ens, ipps, ins, share, dms = med[mode]
    print(f"median symptoms {mode:3}: egress {epps:.0f}/s {ens:.1f} ns, ingress {ipps:.0f}/s {ins:.1f} ns, programs {share:.3f} % of a core, daemon {dms:.2f} ms CPU/s")
de = med["on"][1] - med["off"][1]; di = med["on"][3] - med["off"][3]
dd = med["on"][5] - med["off"][5]
print(f"symptoms: egress {de:+.1f} ns/packet, ingress {di:+.1f} ns/packet, daemon {dd:+.2f} ms CPU/s")
print(f"at 100 k egress full-size segments/s: {de * 1e5 / 1e9 * 100:+.3f} % of one core in the programs, {dd / 10:+.2f} % in the daemon")
EOF
pass "bench done"
finish
