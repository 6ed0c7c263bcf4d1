#!/usr/bin/env bash
# The data paths side by side, in one run, interleaved round by round on the same path
# (client ─ ppp0 veth ─ server, tests/e2e/lab.sh --no-tunnel): no rule / the kernel's
# TCPMSS target / `tunshim run` with datapath = "queue" (NFQUEUE) / with datapath = "bpf"
# (tc programs). Medians over the rounds; docs/PERFORMANCE.md has the figures.
#
#   sudo TUNSHIM_BIN=build/proxy/tunshim bash bench/datapath_bench.sh [--rounds N]
#        [--seconds S] [--connects N] [--iperf-rounds N]
#
#  * SYN rate: bench/daemon_synflood.py blasts raw SYNs (MSS 1460) out of ppp0 for S seconds;
#    an nft table in the server namespace counts what arrives by MSS (1300: clamped, 1460:
#    passed unclamped) and drops it. clamped/s = clamped SYNs counted by the end of the send
#    window / window; unclamped share = unclamped / (clamped + unclamped).
#  * connect() latency: bench/daemon_connect.py, N sequential blocking connects (SYN out and
#    SYN-ACK in both meet the clamp), p50/p99.
#  * bulk: iperf3 -t 2 per mode per round (no SYN rule matches bulk; with bpf every packet
#    enters the programs), with the CPU time of the whole machine per GB moved.
. "$(dirname "$0")/../tests/e2e/lib.sh"
. "$(dirname "$0")/../tests/e2e/lab.sh"
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)

ROUNDS=5; SECONDS_FLOOD=3; CONNECTS=2000; IPERF_ROUNDS=3
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift ;; --seconds) SECONDS_FLOOD=$2; shift ;;
    --connects) CONNECTS=$2; shift ;; --iperf-rounds) IPERF_ROUNDS=$2; shift ;;
    *) die "usage: $0 [--rounds N] [--seconds S] [--connects N] [--iperf-rounds N]" ;;
  esac
  shift
done
MSS=1300; FLOOD_PORT=9; CONNECT_PORT=7777
MODES="none kernel queue bpf"
require_cmd iperf3 tc
[ -x "$TUNSHIM_BIN" ] || die "TUNSHIM_BIN=$TUNSHIM_BIN is not executable"

lab_up --no-tunnel
lab_spawn server "$E2E_TMP/connect-server.log" "$PY" "$BENCH_DIR/daemon_connect.py" serve "$CONNECT_PORT"
lab_spawn server "$E2E_TMP/iperf3.log" iperf3 -s -p 5201
wait_for 5 sh -c "ip netns exec $(ns server) ss -Hltn | grep -q ':$CONNECT_PORT '" || die "connect server down"
wait_for 5 sh -c "ip netns exec $(ns server) ss -Hltn | grep -q ':5201 '" || die "iperf3 server down"

reset_counters() {
  inns server nft -f - <<NFT
table inet bench
delete table inet bench
table inet bench {
  chain pre {
    type filter hook prerouting priority -300; policy accept;
    tcp dport $FLOOD_PORT tcp flags & (syn | ack) == syn tcp option maxseg size $MSS counter drop comment "clamped"
    tcp dport $FLOOD_PORT tcp flags & (syn | ack) == syn tcp option maxseg size 1460 counter drop comment "unclamped"
    tcp dport $FLOOD_PORT counter drop comment "other"
  }
}
NFT
}
read_counters() {   # prints "clamped unclamped other"
  inns server nft -j list table inet bench | "$PY" -c 'import json,sys
c={}
for r in json.load(sys.stdin)["nftables"]:
    if "rule" in r:
        for e in r["rule"]["expr"]:
            if "counter" in e: c[r["rule"].get("comment")]=e["counter"]["packets"]
print(c.get("clamped",0), c.get("unclamped",0), c.get("other",0))'
}

set_mode() {
  lab_tunshim_stop TERM
  lab_kernel_unclamp
  case $1 in
    kernel) lab_kernel_clamp "$MSS" ;;
    queue | bpf)
      lab_tunshim_conf "$MSS" "" "datapath = \"$1\""
      TUNSHIM_DATAPATH=$1 lab_tunshim_start ;;
  esac
}

cpu_jiffies() { awk '/^cpu /{print $2+$3+$4+$6+$7+$8}' /proc/stat; }

RES="$E2E_TMP/results.txt"; : >"$RES"
for r in $(seq 1 "$ROUNDS"); do
  for mode in $MODES; do
    set_mode "$mode"
    reset_counters
    g=$(inns client "$PY" "$BENCH_DIR/daemon_synflood.py" --src "$LAB_C_TUN" --dst "$LAB_S_TUN" \
        --dport "$FLOOD_PORT" --seconds "$SECONDS_FLOOD")
    read -r c_end u_end _ <<<"$(read_counters)"
    lat=$(inns client "$PY" "$BENCH_DIR/daemon_connect.py" measure "$LAB_S_TUN" "$CONNECT_PORT" "$CONNECTS")
    line=$("$PY" -c 'import json,sys
m,r,g,ce,ue,lat=sys.argv[1:]; g=json.loads(g); s=g["seconds"]
print(json.dumps({"mode":m,"round":int(r),"sent_rate":round(g["sent"]/s),"clamped_rate":round(int(ce)/s),
  "unclamped_share":round(int(ue)/max(1,int(ce)+int(ue)),4),"connect":json.loads(lat)}))' \
      "$mode" "$r" "$g" "$c_end" "$u_end" "$lat")
    echo "$line" >>"$RES"; log "$line"
  done
done
HZ=$(getconf CLK_TCK)
for r in $(seq 1 "$IPERF_ROUNDS"); do
  for mode in $MODES; do
    set_mode "$mode"
    j0=$(cpu_jiffies)
    out=$(inns client iperf3 -c "$LAB_S_TUN" -p 5201 -t 2 -J)
    j1=$(cpu_jiffies)
    line=$("$PY" -c 'import json,sys
m,r,out,dj,hz=sys.argv[1:]; e=json.loads(out)["end"]; b=e["sum_received"]["bytes"]
print(json.dumps({"mode":"iperf3-"+m,"round":int(r),"gbit_s":round(e["sum_received"]["bits_per_second"]/1e9,3),
  "cpu_s_per_gb":round(int(dj)/int(hz)/(b/1e9),3)}))' "$mode" "$r" "$out" $((j1 - j0)) "$HZ")
    echo "$line" >>"$RES"; log "$line"
  done
done
set_mode none

"$PY" - "$RES" <<'PY' | tee "$E2E_TMP/summary.txt"
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
modes = ["none", "kernel", "queue", "bpf"]
med = lambda m, f: st.median(f(r) for r in rows if r["mode"] == m)
base = med("none", lambda r: r["connect"]["p50_us"])
print("\n| path | clamped SYN/s (offered) | unclamped under the flood | connect() p50 | added p50 | p99 | iperf3 Gbit/s | CPU s/GB |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for m in modes:
    p50 = med(m, lambda r: r["connect"]["p50_us"]); p99 = med(m, lambda r: r["connect"]["p99_us"])
    cr = "–" if m == "none" else f"{med(m, lambda r: r['clamped_rate'])/1000:.0f} k ({med(m, lambda r: r['sent_rate'])/1000:.0f} k)"
    un = "–" if m == "none" else f"{100*med(m, lambda r: r['unclamped_share']):.1f} %"
    ip = [r for r in rows if r["mode"] == "iperf3-" + m]
    g = st.median(r["gbit_s"] for r in ip) if ip else 0
    c = st.median(r["cpu_s_per_gb"] for r in ip) if ip else 0
    add = "–" if m == "none" else f"{p50 - base:+.1f} µs"
    print(f"| {m} | {cr} | {un} | {p50:.1f} µs | {add} | {p99:.1f} µs | {g:.2f} | {c:.3f} |")
PY
finish
