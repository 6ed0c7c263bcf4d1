#!/usr/bin/env bash
# What the shipped monitoring stands on, checked against a running daemon:
#
#   lan (10.1.0.1) ── rt: lan0 | ppp0 (veth) ── peer (10.2.0.1)
#
# tunshim runs in rt with every feature that exports metrics switched on: for ppp0 mss
# "auto" with the guard and the path-MTU search, keepalives, recovery hooks; an interface
# pattern "tun+" with one matching interface (tun5, one end of a veth pair).
#  1. Every metric name in conf/prometheus/tunshim.rules.yml and conf/grafana/tunshim.json
#     appears in a real /metrics scrape (tests/monitoring/check_metric_names.py); the same
#     check fails on a dashboard holding one name the daemon does not export.
#  2. `tunshim stats --watch 3` with stdout not a terminal prints successive plain tables;
#     between two refreshes a known number of connections crosses ppp0, and the second
#     table shows that many more SYNs clamped each way and the rate they make over the
#     interval it names; SIGINT ends it with status 0. On a pseudo-terminal the frames are
#     drawn in place (cursor home, erase to end of line; the screen cleared once). A daemon
#     that goes away ends it with one line and status 1.
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
inns rt ip link add tun5 type veth peer name x5; inns rt ip link set tun5 up; inns rt ip link set x5 up
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

# A pattern, for the pattern totals (tun5 matches it).
[[tunnel]]
interface = "tun+"
mss = 1360
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

# ---- 2. stats --watch ----------------------------------------------------------------------
# Not a terminal: plain tables. N connections between the first and the second refresh.
W=$E2E_TMP/watch.out
N=6
ip netns exec "$(ns rt)" "$TUNSHIM_BIN" stats --watch 3 --socket "$SOCK" >"$W" 2>"$E2E_TMP/watch.err" &
WPID=$!
on_exit "kill $WPID 2>/dev/null"
tables() { [ "$(grep -c '^SYN out clamped/inserted' "$W")" -ge "$1" ]; }  # tables N: N tables written
wait_for 5 tables 1 || die "no first table from stats --watch: $(cat "$W" "$E2E_TMP/watch.err")"
t0=$(date +%s%N)
for _ in $(seq $N); do connect || fail "connection through ppp0"; done
log "$N connections in $((($(date +%s%N) - t0) / 1000000)) ms"
wait_for 6 tables 2 || fail "no second table within 6 s"
kill -INT "$WPID"
st=0; wait "$WPID" || st=$?
[ $st -eq 0 ] && pass "stats --watch: SIGINT ends it with status 0" || fail "stats --watch after SIGINT: status $st"
grep -q $'\x1b' "$W" && fail "stats --watch wrote terminal escapes into a file" || pass "stats --watch into a file: plain text, no escape sequence"
# cell ROWLABEL N: the ppp0 cell of that row in the N-th table.
cell() { awk -v l="$1" -v n="$2" 'index($0, l) == 1 { if (++k == n) { print substr($0, length(l) + 1); exit } }' "$W" | sed 's/^ *//'; }
over=$(grep -m1 -oE 'rates per second over the last [0-9.]+ s' "$W" | grep -oE '[0-9.]+ s$' | tr -d ' s')
for row in "SYN out clamped/inserted" "SYN in clamped/inserted"; do
  c1=$(cell "$row" 1); c2=$(cell "$row" 2)
  a=${c1%% *}; b=${c2%% *}
  rate=$(sed -nE 's|^[0-9]+ / [0-9]+  \(([0-9.]+)/s / 0\.0/s\).*|\1|p' <<<"$c2")
  if [ -n "$a" ] && [ -n "$b" ] && [ "$((b - a))" = $N ] && [ -n "$rate" ] && [ -n "$over" ] &&
     awk -v r="$rate" -v n=$N -v e="$over" 'BEGIN { x = n / e; exit !(r >= x - 0.06 && r <= x + 0.06) }'; then
    pass "$row: $a then $b, rate $rate/s = $N SYNs / $over s"
  else
    fail "$row: first '$c1', second '$c2', interval '$over' (want +$N and $N/interval)"
  fi
done
grep -q '^every 3s: tunshim stats --watch; rates from the next refresh$' "$W" && [ "$(grep -c '^tunnel  *ppp0  *tun5 (tun+)$' "$W")" = 2 ] &&
  pass "two plain tables, the first without rates" || fail "table heads: $(grep -E '^(every|tunnel)' "$W" | tr '\n' ';')"

# On a terminal: refreshed in place, no full-screen clear after the first frame.
cat >"$E2E_TMP/on_tty.py" <<'PYEOF'
# on_tty.py SECONDS CMD...: runs CMD on a pseudo-terminal, SIGINT after SECONDS; prints its
# exit status on stderr and its output on stdout.
import os, pty, select, signal, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
out, end = b"", time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    if select.select([fd], [], [], 0.1)[0]:
        try:
            out += os.read(fd, 65536)
        except OSError:
            break
os.kill(pid, signal.SIGINT)
_, st = os.waitpid(pid, 0)
try:
    while select.select([fd], [], [], 0.2)[0]:
        out += os.read(fd, 65536)
except OSError:
    pass
sys.stdout.buffer.write(out)
print(os.waitstatus_to_exitcode(st), file=sys.stderr)
PYEOF
T=$E2E_TMP/tty.out
ip netns exec "$(ns rt)" "$PY" "$E2E_TMP/on_tty.py" 2.6 "$TUNSHIM_BIN" stats --watch 1 --socket "$SOCK" >"$T" 2>"$E2E_TMP/tty.st" || true
count() { grep -o "$1" "$T" | wc -l || true; }
frames=$(count $'\x1b\\[H')
clears=$(count $'\x1b\\[2J')
lines=$(tr -d '\r' <"$T" | grep -c '^SYN out clamped/inserted.*'$'\x1b\\[K$' || true)
if [ "$(cat "$E2E_TMP/tty.st")" = 0 ] && [ "$frames" -ge 2 ] && [ "$clears" = 1 ] && [ "$lines" = "$frames" ]; then
  pass "on a terminal: $frames frames drawn from the home position, one screen clear, lines ended by erase-to-end-of-line, status 0 after SIGINT"
else
  fail "terminal output: status $(cat "$E2E_TMP/tty.st"), $frames homes, $clears clears, $lines erased SYN lines: $(head -c 300 "$T" | cat -v)"
fi
grep -q 'rates per second over the last' "$T" && pass "on a terminal: the second frame has rates" || fail "no rates on the terminal"

# The daemon goes away: one line, status 1. (A new file: the old one would satisfy the wait
# for a table before the new process truncated it.)
W=$E2E_TMP/watch-gone.out
ip netns exec "$(ns rt)" "$TUNSHIM_BIN" stats --watch 1 --socket "$SOCK" >"$W" 2>"$E2E_TMP/watch.err" &
WPID=$!
wait_for 5 tables 1 || fail "no table before the daemon stops"
stop_tunshim
st=0
wait_for 5 sh -c "! kill -0 $WPID 2>/dev/null" || fail "stats --watch still runs 5 s after the daemon stopped"
wait "$WPID" || st=$?
err=$(cat "$E2E_TMP/watch.err")
if [ $st -eq 1 ] && [ "$(wc -l <<<"$err")" = 1 ] && grep -Eq '^tunshim: the daemon went away after [0-9]+ refresh(es)?: (cannot connect to .* is tunshim running\?|.* closed the connection without an answer)$' <<<"$err"; then
  pass "daemon stopped: stats --watch ends with status 1 and one line: $err"
else
  fail "daemon stopped: status $st, stderr: $err"
fi

finish
