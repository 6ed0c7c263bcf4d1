#!/usr/bin/env bash
# What the shipped monitoring stands on, checked against a running daemon:
#
#   lan (10.1.0.1) ── rt: lan0 | ppp0 (veth) ── peer (10.2.0.1)
#
# tunshim runs in rt with every feature that exports metrics switched on for ppp0 (mss
# "auto" with the guard and the path-MTU search, keepalives, recovery hooks).
#  1. Every metric name in conf/prometheus/tunshim.rules.yml and conf/grafana/tunshim.json
#     appears in a real /metrics scrape (tests/monitoring/check_metric_names.py); the same
#     check fails on a dashboard holding one name the daemon does not export.
. "$(dirname "$0")/lib.sh"
require_root
require_cmd ip iptables-nft socat curl "$PY"
[ -x "$TUNSHIM_BIN" ] || skip "no tunshim binary at $TUNSHIM_BIN"
"$PY" -c 'import yaml' 2>/dev/null || skip "python3-yaml missing (run scripts/deps.sh)"

QNUM=4773
PORT=9478
RULES=$TUNSHIM_SRC/conf/prometheus/tunshim.rules.yml
DASH=$TUNSHIM_SRC/conf/grafana/tunshim.json
CHECK=$TUNSHIM_SRC/tests/monitoring/check_metric_names.py

# ---- topology -----------------------------------------------------------------------------
mkns lan; mkns rt; mkns peer
ip -n "$(ns rt)" link add lan0 type veth peer name eth0 netns "$(ns lan)"
ip -n "$(ns rt)" link add ppp0 type veth peer name eth0 netns "$(ns peer)"
inns rt sysctl -qw net.ipv4.ip_forward=1
inns rt ip addr add 10.1.0.254/24 dev lan0
inns rt ip addr add 10.2.0.254/24 dev ppp0
inns lan ip addr add 10.1.0.1/24 dev eth0
inns peer ip addr add 10.2.0.1/24 dev eth0
for n in lan rt peer; do for l in $(inns "$n" ls /sys/class/net); do inns "$n" ip link set "$l" up; done; done
inns lan ip route add default via 10.1.0.254
inns peer ip route add default via 10.2.0.254
# The path beyond ppp0 carries 1400 bytes: larger echo requests vanish without an error, so
# the path-MTU search has a black hole to find and SYNs (MSS 1460) get clamped to 1360.
inns peer iptables-nft -A INPUT -p icmp --icmp-type echo-request -m length --length 1401:65535 -j DROP
inns peer socat TCP-LISTEN:7000,fork,reuseaddr SYSTEM:true 2>/dev/null &
on_exit "kill $! 2>/dev/null"
connect() { inns lan socat -T2 /dev/null "TCP4:10.2.0.1:7000,connect-timeout=3" 2>/dev/null; }
wait_for 5 connect || die "no path lan -> peer"

SOCK=$E2E_TMP/ctl.sock
CONF=$E2E_TMP/tunshim.conf
cat >"$CONF" <<EOF
[global]
queue_num = $QNUM
stats_listen = "127.0.0.1:$PORT"
control_socket = "$SOCK"

[[tunnel]]
interface = "ppp0"
mss = "auto"
probe_target = "10.2.0.1"
keepalive = "always"
keepalive_interval = "1s"
keepalive_target = "10.2.0.1"
on_down = [["/bin/true"]]
on_up = [["/bin/true"]]
EOF
TS_LOG=$E2E_TMP/tunshim.log
ip netns exec "$(ns rt)" "$TUNSHIM_BIN" run -c "$CONF" >"$TS_LOG" 2>&1 &
TS_PID=$!
stop_tunshim() { if [ -n "$TS_PID" ]; then kill -TERM "$TS_PID" 2>/dev/null; wait "$TS_PID"; fi; TS_PID=""; }
on_exit stop_tunshim
wait_for 10 grep -q "running:" "$TS_LOG" || { cat "$TS_LOG"; die "tunshim did not start"; }

# ---- 1. metric names of the rules and the dashboard ---------------------------------------
M=$E2E_TMP/metrics.txt
scrape() { inns rt curl -sS --max-time 5 -o "$M" "http://127.0.0.1:$PORT/metrics"; }
# The RTT gauges appear with the first keepalive reply, the path MTU once the search has
# a result: wait for both, so the scrape holds every family this configuration exports.
complete() { scrape && grep -q '^tunshim_rtt_seconds{' "$M" && grep -q '^tunshim_pmtu_bytes{tunnel="ppp0"} 1400$' "$M"; }
t0=$SECONDS
wait_for 30 complete && log "path MTU 1400 found and keepalives answered after $((SECONDS - t0)) s" ||
  fail "no RTT or no path MTU 1400 in the scrape: $(grep -E '^tunshim_(rtt|pmtu)' "$M" | tr '\n' ' ')"
log "scrape: $(grep -v '^#' "$M" | sed 's/[{ ].*//' | sort -u | wc -l) metric names, $(grep -cv '^#' "$M") samples"
if out=$("$PY" "$CHECK" "$M" "$RULES" "$DASH" 2>&1); then
  pass "rules and dashboard use only exported names: $(tail -1 <<<"$out")"
else
  fail "names not in the scrape:"; grep -v '^ok ' <<<"$out"
fi
# The check must be able to fail: one made-up name in an otherwise unchanged dashboard.
sed 's/tunshim_icmp_ptb_sent_total/tunshim_icmp_ptb_sent_totally/' "$DASH" >"$E2E_TMP/bogus.json"
if out=$("$PY" "$CHECK" "$M" "$E2E_TMP/bogus.json" 2>&1); then
  fail "the check accepted a dashboard using tunshim_icmp_ptb_sent_totally"
elif grep -q '^FAIL: .*tunshim_icmp_ptb_sent_totally is not in the scrape' <<<"$out"; then
  pass "the check refuses an unknown name ($(grep -m1 '^FAIL' <<<"$out" | sed 's/.*: //'))"
else
  fail "the check failed for another reason: $(tail -3 <<<"$out")"
fi

finish
