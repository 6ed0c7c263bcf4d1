#!/usr/bin/env bash
# End-to-end figures of the inline daemon, each measured three ways in the same run, on the
# same namespace path, interleaved round by round: no rule / the kernel's TCPMSS target /
# `tunshim run` (NFQUEUE). Tests check behaviour; this reports numbers (docs/PERFORMANCE.md).
#
#   sudo TUNSHIM_BIN=build-lab/proxy/tunshim bash bench/daemon_bench.sh [--rounds N]
#        [--seconds S] [--connects N] [--iperf-triplets P] [--json FILE]
#
# Path: client ─ ppp0 ─ server, where ppp0 is a veth (tests/e2e/lab.sh --no-tunnel): the
# figures are the queue's. Not the lab's socat tunnel: tried, it loses most of a SYN flood
# inside socat whatever the clamp, and without a clamp its black hole stalls iperf3 itself.
#  * SYN rate: bench/daemon_synflood.py blasts raw SYNs (MSS 1460) out of ppp0 for S seconds;
#    an nft table in the server namespace counts what arrives by its MSS option (1300:
#    clamped, 1460: passed unclamped = fail-open when the queue was full) and drops it. Rate
#    = SYNs counted by the end of the send window / window; lost = sent - counted after a
#    1 s drain.
#  * connect() latency: bench/daemon_connect.py, N sequential blocking connects (SYN out and
#    SYN-ACK in both cross the clamp rules), p50/p99.
#  * bulk: iperf3 (bulk never matches the SYN rules), in its own phase after the rounds:
#    P triplets none / kernel / tunshim of 2 s each back to back, so that each tunshim run
#    has a no-rule run seconds away (other load on the host drifts); ratio = median of the
#    per-triplet tunshim/none ratios.
#  * memory: VmRSS and VmHWM of the daemon after the SYN flood.
. "$(dirname "$0")/../tests/e2e/lib.sh"
. "$(dirname "$0")/../tests/e2e/lab.sh"
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)

ROUNDS=3; SECONDS_FLOOD=3; CONNECTS=3000; JSON=""; PAIRS=6
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift ;; --seconds) SECONDS_FLOOD=$2; shift ;;
    --connects) CONNECTS=$2; shift ;; --json) JSON=$2; shift ;;
    --iperf-triplets) PAIRS=$2; shift ;;
    *) die "usage: $0 [--rounds N] [--seconds S] [--connects N] [--iperf-triplets P] [--json FILE]" ;;
  esac
  shift
done
MSS=1300; FLOOD_PORT=9; CONNECT_PORT=7777
require_cmd iperf3
[ -x "$TUNSHIM_BIN" ] || die "TUNSHIM_BIN=$TUNSHIM_BIN is not executable"

lab_up --no-tunnel
lab_tunshim_conf "$MSS"
lab_spawn server "$E2E_TMP/connect-server.log" "$PY" "$BENCH_DIR/daemon_connect.py" serve "$CONNECT_PORT"
lab_spawn server "$E2E_TMP/iperf3.log" iperf3 -s -p 5201
wait_for 5 sh -c "ip netns exec $(ns server) ss -Hltn | grep -q ':$CONNECT_PORT '" || die "connect server down"
wait_for 5 sh -c "ip netns exec $(ns server) ss -Hltn | grep -q ':5201 '" || die "iperf3 server down"

# Counts arriving flood SYNs by MSS option, then drops them (no RSTs to pay for).
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

# utime + stime of the daemon in clock ticks (0 when it is not running).
daemon_cpu_ticks() {
  if [ -n "$LAB_TUNSHIM_PID" ] && [ -r "/proc/$LAB_TUNSHIM_PID/stat" ]; then
    awk '{print $14 + $15}' "/proc/$LAB_TUNSHIM_PID/stat"
  else echo 0; fi
}
HZ=$(getconf CLK_TCK)

set_mode() {
  lab_tunshim_stop TERM
  lab_kernel_unclamp
  case $1 in
    kernel) lab_kernel_clamp "$MSS" ;;
    tunshim) lab_tunshim_start ;;
  esac
}

RES="$E2E_TMP/results.txt"; : >"$RES"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq 1 "$ROUNDS"); do
  for mode in none kernel tunshim; do
    set_mode "$mode"
    reset_counters
    cpu0=$(daemon_cpu_ticks)
    g=$(inns client "$PY" "$BENCH_DIR/daemon_synflood.py" --src "$LAB_C_TUN" --dst "$LAB_S_TUN" \
        --dport "$FLOOD_PORT" --seconds "$SECONDS_FLOOD")
    read -r c_end u_end o_end <<<"$(read_counters)"
    sleep 1
    read -r c_all u_all o_all <<<"$(read_counters)"
    cpu1=$(daemon_cpu_ticks)
    daemon_view="-1 -1"
    if [ "$mode" = tunshim ]; then
      # Its own count of what it clamped and what bypassed it: SIGUSR1 makes it read the rule
      # counters now and log (its timer does so only every 10 s, and not at exit).
      LAB_TUNSHIM_LOGPOS=$(wc -l <"$LAB_TUNSHIM_LOG")
      kill -USR1 "$LAB_TUNSHIM_PID"
      if wait_for 5 lab_tunshim_logged 'tunnel ppp0: out'; then
        daemon_view=$(tail -n "+$((LAB_TUNSHIM_LOGPOS + 1))" "$LAB_TUNSHIM_LOG" | grep 'tunnel ppp0: out' | tail -1 |
          sed -E 's/.* out clamped=([0-9]+) .*bypassed=([0-9]+) \| in .*/\1 \2/')
      fi
    fi
    sent=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["sent"])' "$g")
    secs=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["seconds"])' "$g")
    rss=0; hwm=0
    if [ "$mode" = tunshim ]; then
      rss=$(awk '/^VmRSS/{print $2}' "/proc/$LAB_TUNSHIM_PID/status")
      hwm=$(awk '/^VmHWM/{print $2}' "/proc/$LAB_TUNSHIM_PID/status")
    fi
    lat=$(inns client "$PY" "$BENCH_DIR/daemon_connect.py" measure "$LAB_S_TUN" "$CONNECT_PORT" "$CONNECTS")
    # shellcheck disable=SC2086  # daemon_view is two words on purpose
    line=$("$PY" - "$mode" "$r" "$sent" "$secs" "$c_end" "$u_end" "$o_end" "$c_all" "$u_all" "$o_all" \
           "$lat" "$rss" "$hwm" $((cpu1 - cpu0)) "$HZ" $daemon_view <<'PY'
import json, sys
m, r, sent, secs, ce, ue, oe, ca, ua, oa, lat, rss, hwm, ticks, hz, d_cl, d_by = sys.argv[1:]
secs = float(secs)
d = {"mode": m, "round": int(r), "sent": int(sent), "seconds": round(secs, 3),
     "send_rate": round(int(sent) / secs),
     "carried_rate": round((int(ce) + int(ue) + int(oe)) / secs),
     "clamped_rate": round(int(ce) / secs),
     "clamped": int(ca), "unclamped": int(ua), "other": int(oa),
     "lost": int(sent) - int(ca) - int(ua) - int(oa),
     "connect": json.loads(lat),
     "rss_kb": int(rss), "hwm_kb": int(hwm),
     # the daemon's CPU time over the flood and its drain, per SYN it received
     "daemon_cpu_us_per_syn": round(int(ticks) * 1e6 / int(hz) / max(1, int(ca)), 2) if m == "tunshim" else None,
     # its own counters since start (flood SYNs plus nothing else yet), for cross-checking
     "daemon_clamped": int(d_cl), "daemon_bypassed": int(d_by)}
print(json.dumps(d))
PY
)
    echo "$line" >>"$RES"
    log "$line"
  done
done
iperf() {
  inns client iperf3 -c "$LAB_S_TUN" -p 5201 -t 2 -J |
    "$PY" -c 'import json,sys; print(int(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]))'
}
for i in $(seq 1 "$PAIRS"); do
  line="{\"mode\": \"iperf3\", \"round\": $i"
  for mode in none kernel tunshim; do
    set_mode "$mode"
    line+=", \"$mode\": $(iperf)"
  done
  echo "$line}" >>"$RES"
  log "$line}"
done
set_mode none
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

"$PY" - "$RES" 0 "$MSS" "$LOAD_START" "$LOAD_END" <<'PY' | tee "$E2E_TMP/summary.txt"
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
ip = [r for r in rows if r["mode"] == "iperf3"]
rows = [r for r in rows if r["mode"] != "iperf3"]
ipm = {m: st.median(r[m] for r in ip) for m in ("none", "kernel", "tunshim")}
path = "veth ppp0"
by = {m: [r for r in rows if r["mode"] == m] for m in ("none", "kernel", "tunshim")}
med = lambda m, f: st.median(f(r) for r in by[m])
print(f"\n== inline daemon bench: {len(by['none'])} rounds, path {path}, mss {sys.argv[3]}, "
      f"{__import__('os').cpu_count()} CPUs, load average {sys.argv[4]} at start, {sys.argv[5]} at end ==")
print(f"(per-mode medians over rounds; unclamped and lost are totals over all rounds)")
print(f"{'':9} {'sent/s':>9} {'clamped/s':>10} {'unclamped':>10} {'lost':>6} "
      f"{'conn p50':>9} {'p99 µs':>8} {'iperf3 Gb/s':>12} {'RSS kB':>7}")
for m in by:
    print(f"{m:9} {med(m, lambda r: r['send_rate']):9.0f} {med(m, lambda r: r['clamped_rate']):10.0f} "
          f"{sum(r['unclamped'] for r in by[m]) if m != 'none' else 0:10d} "
          f"{sum(r['lost'] for r in by[m]):6d} {med(m, lambda r: r['connect']['p50_us']):9.1f} "
          f"{med(m, lambda r: r['connect']['p99_us']):8.1f} {ipm[m] / 1e9:12.2f} "
          f"{max(r['rss_kb'] for r in by[m]) if m == 'tunshim' else 0:7d}")
# Goals are judged on paired figures: each round's tunshim run against the same round's
# none/kernel runs seconds apart, then the median over rounds (host load drifts between rounds).
pair = lambda f: st.median(f(t, n, k) for t, n, k in zip(by["tunshim"], by["none"], by["kernel"]))
kr = med("kernel", lambda r: r["clamped_rate"]); tr = med("tunshim", lambda r: r["clamped_rate"])
rate_ratio = pair(lambda t, n, k: t["clamped_rate"] / k["clamped_rate"])
lost = sum(r["lost"] for r in by["tunshim"]); unc = sum(r["unclamped"] for r in by["tunshim"])
sent_t = sum(r["sent"] for r in by["tunshim"])
p50_add = pair(lambda t, n, k: t["connect"]["p50_us"] - n["connect"]["p50_us"])
p50_add_k = pair(lambda t, n, k: t["connect"]["p50_us"] - k["connect"]["p50_us"])
p99_t = med("tunshim", lambda r: r["connect"]["p99_us"]); p99_k = med("kernel", lambda r: r["connect"]["p99_us"])
p99_ratio = pair(lambda t, n, k: t["connect"]["p99_us"] / k["connect"]["p99_us"])
ratio = st.median(r["tunshim"] / r["none"] for r in ip)
rss = max(r["rss_kb"] for r in by["tunshim"]); hwm = max(r["hwm_kb"] for r in by["tunshim"])
cpu = med("tunshim", lambda r: r["daemon_cpu_us_per_syn"])
goals = [
    ("clamped SYN rate vs kernel TCPMSS (median of per-round ratios)",
     f"{rate_ratio:.2f}x (medians {tr:.0f}/s vs {kr:.0f}/s)", rate_ratio >= 0.75, ">= 0.75x"),
    ("SYNs lost through tunshim", f"{lost}", lost == 0, "0"),
    ("SYNs passed unclamped (fail-open, queue full)", f"{unc} of {sent_t} ({100 * unc / max(1, sent_t):.1f}%)", None, "reported"),
    ("added connect() p50 vs no rule (median of per-round differences)", f"{p50_add:.1f} µs "
     f"({p50_add_k:.1f} µs vs kernel TCPMSS)", p50_add <= 30, "<= 30 µs"),
    ("connect() p99 tunshim vs kernel (median of per-round ratios)",
     f"{p99_ratio:.2f}x (medians {p99_t:.0f} vs {p99_k:.0f} µs)", p99_ratio <= 2.5, "<= 2.5x"),
    ("iperf3 tunshim/none (median of back-to-back ratios)", f"{ratio:.3f}", ratio >= 0.98, ">= 0.98"),
    ("daemon CPU time per clamped SYN (median)", f"{cpu:.1f} µs = {1e6 / cpu:.0f} SYN/s per busy core", None, "reported"),
    ("daemon memory VmRSS (VmHWM)", f"{rss / 1024:.1f} MB ({hwm / 1024:.1f} MB)", rss <= 10 * 1024, "<= 10 MB"),
]
for name, val, ok, goal in goals:
    tag = "info" if ok is None else ("met " if ok else "MISS")
    print(f"[{tag}] {name}: {val} (goal {goal})")
print("spread (min..max over rounds):")
for m in by:
    f = lambda k: [r[k] for r in by[m]]
    print(f"  {m:8} clamped/s {min(f('clamped_rate'))}..{max(f('clamped_rate'))}  "
          f"p50 {min(r['connect']['p50_us'] for r in by[m])}..{max(r['connect']['p50_us'] for r in by[m])} µs  "
          f"iperf3 {min(r[m] for r in ip) / 1e9:.2f}..{max(r[m] for r in ip) / 1e9:.2f} Gb/s")
print("cross-check, per round: server saw clamped/unclamped vs tunshim's own clamped/bypassed: " +
      "; ".join(f"{r['clamped']}/{r['unclamped']} vs {r['daemon_clamped']}/{r['daemon_bypassed']}" for r in by["tunshim"]))
print("iperf3 tunshim/none per triplet: " + " ".join(f"{r['tunshim'] / r['none']:.3f}" for r in ip))
PY
# The daemon's own view, logged by each run at exit (all its traffic: flood, connects, iperf3).
log "tunshim's counters at each exit:"
grep -E "tunnel ppp0: out|queue [0-9]+: packets" "$LAB_TUNSHIM_LOG" | sed 's/^/  /' || true
[ -z "$JSON" ] || cp "$RES" "$JSON"
pass "bench complete"
finish >/dev/null
