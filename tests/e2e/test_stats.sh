#!/usr/bin/env bash
# What the operator sees of a running `tunshim run`, checked against what happened:
#
#   lan (10.1.0.1, fd01::1) ── rt: lan0 | ppp0 (veth) ── peer (10.2.0.1, fd02::1)
#
# tunshim runs in rt (tunnels ppp0 and tun9, which does not exist) with its stats server on
# rt's loopback and its control socket in this test's directory. A known set of connections
# crosses ppp0; then /metrics (promtool-checked) and /stats.json must show exactly those
# SYNs, the HTTP server must refuse what it should (404, 405, 400, 431), hold up against
# idle and surplus clients without slowing the data path, the control socket must serve
# root (table and JSON) and refuse others (file mode, and SO_PEERCRED for a non-root
# process that gets past the mode), `tunshim reapply` must repair hand-broken rules,
# SIGUSR1 must log the table, STATUS=/WATCHDOG=1 must reach a notify socket, a stale
# socket file is replaced, a live one left alone, and the file is removed at exit.
. "$(dirname "$0")/lib.sh"
require_root
require_cmd ip iptables-nft iptables-nft-save ip6tables-nft-save socat curl promtool setpriv "$PY"
[ -x "$TUNSHIM_BIN" ] || skip "no tunshim binary at $TUNSHIM_BIN"

MSS4=1300; MSS6=1280
QNUM=4772
PORT=9477

# ---- topology -----------------------------------------------------------------------------
mkns lan; mkns rt; mkns peer
ip -n "$(ns rt)" link add lan0 type veth peer name eth0 netns "$(ns lan)"
ip -n "$(ns rt)" link add ppp0 type veth peer name eth0 netns "$(ns peer)"
inns rt sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
inns rt ip addr add 10.1.0.254/24 dev lan0; inns rt ip addr add fd01::fe/64 dev lan0 nodad
inns rt ip addr add 10.2.0.254/24 dev ppp0; inns rt ip addr add fd02::fe/64 dev ppp0 nodad
inns lan ip addr add 10.1.0.1/24 dev eth0; inns lan ip addr add fd01::1/64 dev eth0 nodad
inns peer ip addr add 10.2.0.1/24 dev eth0; inns peer ip addr add fd02::1/64 dev eth0 nodad
for n in lan rt peer; do for l in $(inns "$n" ls /sys/class/net); do inns "$n" ip link set "$l" up; done; done
inns lan ip route add default via 10.1.0.254; inns lan ip -6 route add default via fd01::fe
inns peer ip route add default via 10.2.0.254; inns peer ip -6 route add default via fd02::fe
for n in lan peer; do
  inns "$n" socat TCP-LISTEN:7000,fork,reuseaddr SYSTEM:true 2>/dev/null &
  inns "$n" socat TCP6-LISTEN:7000,fork,reuseaddr,ipv6only=1 SYSTEM:true 2>/dev/null &
done
sleep 0.3
connect() {  # connect NS ADDR: one TCP connection to ADDR port 7000
  local a=$2 proto=TCP4
  case $a in *:*) proto=TCP6; a="[$a]";; esac
  inns "$1" socat -T2 /dev/null "$proto:$a:7000,connect-timeout=3" 2>/dev/null
}
# Paths work before tunshim starts (these SYNs are not counted: no rules yet).
wait_for 5 connect lan 10.2.0.1 || die "no IPv4 path lan -> peer"
wait_for 5 connect lan fd02::1 || die "no IPv6 path lan -> peer"

# The socket lives where a non-root user can reach the file, so the file mode is what
# refuses them (E2E_TMP itself is 0700).
chmod 711 "$E2E_TMP"
RUN=$E2E_TMP/run; mkdir -m 755 "$RUN"
SOCK=$RUN/ctl.sock
CONF=$E2E_TMP/tunshim.conf
cat >"$CONF" <<EOF
[global]
queue_num = $QNUM
queue_maxlen = 1024
stats_listen = "127.0.0.1:$PORT"
control_socket = "$SOCK"

[[tunnel]]
interface = "ppp0"
mss = $MSS4
mss6 = $MSS6
keepalive = "always"
keepalive_interval = "1s"
keepalive_target = "10.2.0.1"

[[tunnel]]
interface = "tun9"
mss = 1360
EOF

# A notify socket in rt (abstract sockets belong to a network namespace) records what the
# daemon tells systemd.
NOTIFY=tunshim-stats-$$
inns rt "$PY" -u - "$NOTIFY" >"$E2E_TMP/notify.log" 2>&1 <<'EOF' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + sys.argv[1])
print("listening", flush=True)
while True:
    msg = s.recv(4096).decode(errors="replace").replace("\n", " ").strip()
    print(f"{time.monotonic():.3f} {msg}", flush=True)
EOF
wait_for 5 grep -q listening "$E2E_TMP/notify.log" || die "notify listener did not start"

TS_PID=""; TS_LOG=""
start_tunshim() {  # start_tunshim LOGNAME: WATCHDOG_PID must be tunshim's pid, so sh execs into it
  TS_LOG=$E2E_TMP/$1.log
  ip netns exec "$(ns rt)" sh -c 'export NOTIFY_SOCKET=@'"$NOTIFY"' WATCHDOG_USEC=1000000 WATCHDOG_PID=$$; exec "$@"' \
    sh "$TUNSHIM_BIN" run -c "$CONF" >"$TS_LOG" 2>&1 &
  TS_PID=$!
  wait_for 10 grep -q "running:" "$TS_LOG" || { cat "$TS_LOG"; die "tunshim did not start"; }
}
stop_tunshim_quiet() { if [ -n "$TS_PID" ]; then kill -TERM "$TS_PID"; wait "$TS_PID"; fi; TS_PID=""; }
on_exit stop_tunshim_quiet

# A stale socket file, as a crashed run leaves it: a socket nobody listens on.
"$PY" -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$SOCK"
start_tunshim first
grep -q "replaced a stale $SOCK" "$TS_LOG" && pass "stale socket file from a crashed run replaced" || fail "no 'replaced a stale' in the log"
grep -q "stats: http://127.0.0.1:$PORT/metrics" "$TS_LOG" && pass "startup log names the stats URL" || fail "startup log lacks the stats URL"
perm=$(stat -c '%a %U %F' "$SOCK")
[ "$perm" = "600 root socket" ] && pass "control socket is mode 600, owned by root" || fail "control socket: $perm"

# ---- traffic with a known outcome ---------------------------------------------------------
# lan->peer: SYN out + SYN-ACK in; peer->lan: SYN in + SYN-ACK out. Every one is clamped
# (1460/1440 > 1300/1280).
N4=3; N6=2; NR=1
for _ in $(seq $N4); do connect lan 10.2.0.1 || fail "lan -> peer IPv4"; done
for _ in $(seq $N6); do connect lan fd02::1 || fail "lan -> peer IPv6"; done
for _ in $(seq $NR); do connect peer 10.1.0.1 || fail "peer -> lan IPv4"; done
WANT=$((N4 + N6 + NR))   # clamped per direction

http() { inns rt curl -sS --max-time 5 "$@"; }
metric() {  # metric FILE 'name{labels}': the sample's value
  awk -v k="$2" '$1 == k { print $2 }' "$1"
}
M=$E2E_TMP/metrics.txt
http -D "$E2E_TMP/headers.txt" -o "$M" "http://127.0.0.1:$PORT/metrics" || fail "GET /metrics failed"
grep -qi '^content-type: text/plain; version=0.0.4' "$E2E_TMP/headers.txt" && pass "/metrics: Content-Type text/plain; version=0.0.4" ||
  fail "/metrics headers: $(tr '\r\n' '  ' <"$E2E_TMP/headers.txt")"
if out=$(promtool check metrics <"$M" 2>&1); then pass "promtool check metrics accepts the exposition"
else fail "promtool check metrics: $out"; fi

check_syn() {  # check_syn FILE: exact SYN counters for ppp0
  local f=$1 dir act v want
  for dir in out in; do
    for act in clamped inserted unchanged malformed other truncated; do
      want=0; [ $act = clamped ] && want=$WANT
      v=$(metric "$f" "tunshim_syn_total{tunnel=\"ppp0\",direction=\"$dir\",action=\"$act\"}")
      [ "$v" = "$want" ] || { fail "syn_total $dir/$act = '${v:-missing}', want $want"; return; }
    done
  done
  pass "syn_total: clamped out=$WANT in=$WANT, every other action 0 (what the connections did)"
}
check_syn "$M"
v=$(metric "$M" 'tunshim_queue_packets_total')
[ "$v" = $((2 * WANT)) ] && pass "queue_packets_total = $v (a SYN and a SYN-ACK per connection)" || fail "queue_packets_total = '$v', want $((2 * WANT))"
[ "$(metric "$M" 'tunshim_mss_clamp_bytes{tunnel="ppp0",family="ipv4"}')" = $MSS4 ] &&
  [ "$(metric "$M" 'tunshim_mss_clamp_bytes{tunnel="ppp0",family="ipv6"}')" = $MSS6 ] &&
  pass "mss_clamp_bytes ipv4 $MSS4, ipv6 $MSS6" || fail "mss_clamp_bytes: $(grep mss_clamp "$M" | tr '\n' ';')"
[ "$(metric "$M" 'tunshim_interface_present{tunnel="ppp0"}')" = 1 ] && [ "$(metric "$M" 'tunshim_interface_present{tunnel="tun9"}')" = 0 ] &&
  pass "interface_present: ppp0 1, tun9 0" || fail "interface_present: $(grep interface_present "$M" | tr '\n' ';')"
[ "$(metric "$M" 'tunshim_syn_total{tunnel="tun9",direction="out",action="clamped"}')" = 0 ] && pass "tun9 (absent) counted nothing" || fail "tun9 counters"
ver=$("$TUNSHIM_BIN" --version | awk '{print $2}')
[ "$(metric "$M" "tunshim_build_info{version=\"$ver\"}")" = 1 ] && pass "build_info version=\"$ver\"" || fail "build_info: $(grep build_info "$M")"
[ "$(metric "$M" 'tunshim_config_reloads_total{result="ok"}')" = 0 ] && pass "config_reloads_total ok 0 before any reload" || fail "reloads: $(grep reloads "$M")"

# /stats.json: valid JSON with the same numbers.
J=$E2E_TMP/stats.json
http -D "$E2E_TMP/jheaders.txt" -o "$J" "http://127.0.0.1:$PORT/stats.json" || fail "GET /stats.json failed"
grep -qi '^content-type: application/json' "$E2E_TMP/jheaders.txt" && pass "/stats.json: Content-Type application/json" || fail "/stats.json content type"
"$PY" -m json.tool "$J" >/dev/null && pass "/stats.json parses (python3 -m json.tool)" || fail "/stats.json is not JSON: $(head -c 300 "$J")"
jq_py() { "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }
got=$(jq_py "$J" '[(t["metrics"]["syn_total"]["out"]["clamped"], t["metrics"]["syn_total"]["in"]["clamped"], t["state"]) for t in d["tunnels"] if t["interface"] == "ppp0"][0]')
[ "$got" = "($WANT, $WANT, 'up')" ] && pass "/stats.json: ppp0 clamped out/in $WANT/$WANT, state up (keepalives answered)" || fail "/stats.json ppp0: $got"
got=$(jq_py "$J" 'd["global"]["queue_packets_total"]')
[ "$got" = $((2 * WANT)) ] && pass "/stats.json: queue_packets_total $got" || fail "/stats.json queue_packets_total $got"

# ---- what the HTTP server refuses -----------------------------------------------------------
code() { inns rt curl -s --max-time 5 -o /dev/null -w '%{http_code}' "$@"; }
c=$(code "http://127.0.0.1:$PORT/nope"); [ "$c" = 404 ] && pass "unknown path: 404" || fail "unknown path: $c"
c=$(code -X POST -d x=1 "http://127.0.0.1:$PORT/metrics"); [ "$c" = 405 ] && pass "POST: 405" || fail "POST: $c"
inns rt curl -s --max-time 5 -D "$E2E_TMP/delete.txt" -o /dev/null -X DELETE "http://127.0.0.1:$PORT/metrics" || true
grep -qi '^allow: GET' "$E2E_TMP/delete.txt" &&
  pass "405 names Allow: GET" || fail "no Allow header on 405"
cat >"$E2E_TMP/raw.py" <<'EOF'
# raw.py PORT MODE: one connection to 127.0.0.1:PORT; prints the status line (or what happened).
import socket, sys, time
port, mode = int(sys.argv[1]), sys.argv[2]
s = socket.create_connection(("127.0.0.1", port), timeout=10)
if mode == "garbage":
    s.sendall(b"\x16\x03\x01\x02\x00hello garbage\r\n\r\n")
elif mode == "big":
    s.sendall(b"GET /metrics HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 9000 + b"\r\n\r\n")
elif mode == "http09":
    s.sendall(b"GET /metrics\r\n\r\n")
elif mode == "slow":
    # Sends nothing; reports how long until the server hangs up.
    t0 = time.monotonic()
    data = s.recv(100)
    print(f"closed after {time.monotonic() - t0:.1f} s, {len(data)} bytes")
    sys.exit(0)
data = b""
while True:
    try:
        b = s.recv(65536)
    except ConnectionResetError:
        break
    if not b:
        break
    data += b
print(data.split(b"\r\n")[0].decode(errors="replace"))
EOF
raw() { inns rt "$PY" "$E2E_TMP/raw.py" "$PORT" "$1"; }
r=$(raw garbage); [ "$r" = "HTTP/1.1 400 Bad Request" ] && pass "garbage request: 400" || fail "garbage request: '$r'"
r=$(raw http09); [ "$r" = "HTTP/1.1 400 Bad Request" ] && pass "request line without a version: 400" || fail "HTTP/0.9-style: '$r'"
r=$(raw big); [ "$r" = "HTTP/1.1 431 Request Header Fields Too Large" ] && pass "9 KB of headers: 431" || fail "big headers: '$r'"

# ---- slow and surplus clients ----------------------------------------------------------------
# One client that sends nothing: a second request is answered at once, and the silent one
# is dropped after the 5 s header timeout.
raw slow >"$E2E_TMP/slow.out" &
slow_pid=$!
sleep 0.3
t0=$(date +%s%N)
c=$(code "http://127.0.0.1:$PORT/metrics")
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$c" = 200 ] && [ $ms -lt 1000 ] && pass "a silent client does not block another request (200 in $ms ms)" || fail "with a silent client: $c in $ms ms"
wait $slow_pid
s=$(cat "$E2E_TMP/slow.out")
secs=$(sed -E 's/closed after ([0-9.]+) s.*/\1/' <<<"$s")
awk -v s="$secs" 'BEGIN { exit !(s >= 4.5 && s <= 7) }' && pass "the silent client was dropped after the header timeout ($s)" || fail "silent client: $s"

# 40 idle connections: 32 are held, 8 are closed at once; meanwhile SYNs are still clamped.
cat >"$E2E_TMP/flood.py" <<'EOF'
import socket, sys, time, select
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
time.sleep(0.5)
r, _, _ = select.select(socks, [], [], 0.5)
closed = sum(1 for s in r if s.recv(1) == b"")
print(closed, flush=True)
sys.stdin.readline()   # hold the others until told
EOF
mkfifo "$E2E_TMP/flood.in"
inns rt "$PY" "$E2E_TMP/flood.py" "$PORT" 40 <"$E2E_TMP/flood.in" >"$E2E_TMP/flood.out" 2>&1 &
flood_pid=$!
exec 7>"$E2E_TMP/flood.in"
on_exit 'exec 7>&-'
wait_for 5 test -s "$E2E_TMP/flood.out" || fail "flood client printed nothing"
closed=$(cat "$E2E_TMP/flood.out")
[ "$closed" = 8 ] && pass "40 idle clients: 32 held, 8 closed at once (the limit)" || fail "40 idle clients: $closed closed at once, want 8"
connect lan 10.2.0.1 || fail "connect while the stats server is full"
WANT=$((WANT + 1))
echo >&7; exec 7>&-
wait $flood_pid 2>/dev/null || true
wait_for 3 sh -c "[ \$(ip netns exec $(ns rt) ss -Htn state established '( sport = :$PORT )' | wc -l) = 0 ]" || true
http -o "$M" "http://127.0.0.1:$PORT/metrics" || fail "GET /metrics after the flood"
check_syn "$M"
# Keepalives every second to the peer since the start (over 5 s ago by now): sent, answered,
# an RTT, the tunnel up; tun9 (absent) sends none.
ka_sent=$(metric "$M" 'tunshim_keepalive_sent_total{tunnel="ppp0"}')
ka_replies=$(metric "$M" 'tunshim_keepalive_replies_total{tunnel="ppp0"}')
rtt=$(metric "$M" 'tunshim_rtt_seconds{tunnel="ppp0"}')
if [ "${ka_sent:-0}" -ge 1 ] && [ "${ka_replies:-0}" -ge 1 ] && [ "$ka_replies" -le "$ka_sent" ] &&
   awk -v r="${rtt:-x}" 'BEGIN { exit !(r != "x" && r + 0 >= 0 && r + 0 < 0.5) }' &&
   [ "$(metric "$M" 'tunshim_tunnel_up{tunnel="ppp0"}')" = 1 ] && [ "$(metric "$M" 'tunshim_tunnel_up{tunnel="tun9"}')" = 0 ] &&
   [ "$(metric "$M" 'tunshim_keepalive_sent_total{tunnel="tun9"}')" = 0 ]; then
  pass "keepalives: ppp0 sent $ka_sent, answered $ka_replies, rtt ${rtt}s, up; tun9 down-or-absent, none sent"
else fail "keepalive metrics: $(grep -E 'keepalive|rtt_seconds|tunnel_up' "$M" | grep -v '^#' | tr '\n' ';')"; fi

# ---- control socket ---------------------------------------------------------------------------
inns rt "$TUNSHIM_BIN" stats --socket "$SOCK" >"$E2E_TMP/table.txt" 2>&1 && pass "tunshim stats as root: exit 0" || fail "tunshim stats: $(cat "$E2E_TMP/table.txt")"
grep -Eq "^SYN out clamped/inserted +$WANT / 0 +0 / 0$" "$E2E_TMP/table.txt" &&
  grep -Eq "^SYN in clamped/inserted +$WANT / 0 +0 / 0$" "$E2E_TMP/table.txt" &&
  grep -Eq "^tunnel +ppp0 +tun9$" "$E2E_TMP/table.txt" &&
  grep -Eq "^state +up +absent$" "$E2E_TMP/table.txt" &&
  grep -Eq "^MSS target v4/v6 +$MSS4 / $MSS6 +1360 / 1340$" "$E2E_TMP/table.txt" &&
  pass "table: a column per tunnel, SYNs clamped $WANT each way, state, MSS targets" || { fail "table:"; cat "$E2E_TMP/table.txt"; }
inns rt "$TUNSHIM_BIN" stats --json --socket "$SOCK" >"$E2E_TMP/ctl.json" 2>&1 || fail "tunshim stats --json"
got=$(jq_py "$E2E_TMP/ctl.json" '[t["metrics"]["syn_total"]["in"]["clamped"] for t in d["tunnels"] if t["interface"] == "ppp0"][0]' 2>&1)
[ "$got" = $WANT ] && pass "tunshim stats --json: JSON with the same numbers (in clamped $got)" || fail "stats --json: $got"

# Non-root: the file mode refuses nobody; a nobody with CAP_DAC_OVERRIDE gets past the mode,
# and the daemon's SO_PEERCRED check refuses it.
rc=0; setpriv --reuid=65534 --regid=65534 --clear-groups "$TUNSHIM_BIN" stats --socket "$SOCK" >"$E2E_TMP/nobody.txt" 2>&1 || rc=$?
[ $rc = 1 ] && grep -q "cannot connect to $SOCK: Permission denied" "$E2E_TMP/nobody.txt" &&
  pass "uid 65534 refused by the socket's mode: $(cat "$E2E_TMP/nobody.txt")" || fail "uid 65534: exit $rc, $(cat "$E2E_TMP/nobody.txt")"
rc=0; setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=+dac_override --ambient-caps=+dac_override \
  "$TUNSHIM_BIN" stats --socket "$SOCK" >"$E2E_TMP/nobody2.txt" 2>&1 || rc=$?
[ $rc = 1 ] && grep -q "root only (uid 65534)" "$E2E_TMP/nobody2.txt" && grep -q "refused pid [0-9]* uid 65534" "$TS_LOG" &&
  pass "uid 65534 with CAP_DAC_OVERRIDE refused by SO_PEERCRED: $(cat "$E2E_TMP/nobody2.txt")" || fail "uid 65534 + dac_override: exit $rc, $(cat "$E2E_TMP/nobody2.txt")"
rc=0; inns rt "$TUNSHIM_BIN" stats --socket "$RUN/none.sock" >"$E2E_TMP/nosock.txt" 2>&1 || rc=$?
[ $rc = 1 ] && grep -q "cannot connect to $RUN/none.sock: No such file or directory — is tunshim running?" "$E2E_TMP/nosock.txt" &&
  pass "no daemon: one clear line ($(cat "$E2E_TMP/nosock.txt"))" || fail "no daemon: exit $rc, $(cat "$E2E_TMP/nosock.txt")"

# ---- reapply ------------------------------------------------------------------------------------
rule_count() {  # rule_count FAMILY-CMD CHAIN DIRFLAG: copies of ppp0's rule
  inns rt "$1" -t mangle | grep -c -- "^-A $2 $3 ppp0 -p tcp -m tcp --tcp-flags SYN,RST SYN -j NFQUEUE --queue-num $QNUM --queue-bypass$" || true
}
rules_state() {
  echo "v4pre=$(rule_count iptables-nft-save TUNSHIM-PRE -i) v4post=$(rule_count iptables-nft-save TUNSHIM-POST -o)" \
       "v6pre=$(rule_count ip6tables-nft-save TUNSHIM-PRE -i) v6post=$(rule_count ip6tables-nft-save TUNSHIM-POST -o)"
}
GOOD="v4pre=1 v4post=1 v6pre=1 v6post=1"
[ "$(rules_state)" = "$GOOD" ] && pass "rules before breaking them: $GOOD" || fail "rules at start: $(rules_state)"
# Break them: IPv4 out rule deleted, IPv4 in rule doubled, IPv6 out rule deleted.
inns rt iptables-nft -t mangle -D TUNSHIM-POST -o ppp0 -p tcp -m tcp --tcp-flags SYN,RST SYN -j NFQUEUE --queue-num $QNUM --queue-bypass
inns rt iptables-nft -t mangle -A TUNSHIM-PRE -i ppp0 -p tcp -m tcp --tcp-flags SYN,RST SYN -j NFQUEUE --queue-num $QNUM --queue-bypass
inns rt ip6tables-nft -t mangle -D TUNSHIM-POST -o ppp0 -p tcp -m tcp --tcp-flags SYN,RST SYN -j NFQUEUE --queue-num $QNUM --queue-bypass
log "broken: $(rules_state)"
tun9_before=$(inns rt iptables-nft-save -t mangle | grep -c ' tun9 ' || true)
if inns rt "$TUNSHIM_BIN" reapply ppp0 --socket "$SOCK" >"$E2E_TMP/reapply.txt" 2>&1; then pass "tunshim reapply ppp0: $(cat "$E2E_TMP/reapply.txt")"
else fail "tunshim reapply ppp0: $(cat "$E2E_TMP/reapply.txt")"; fi
[ "$(rules_state)" = "$GOOD" ] && pass "reapply restored exactly one rule per hook and family" || fail "after reapply: $(rules_state)"
[ "$(inns rt iptables-nft-save -t mangle | grep -c ' tun9 ' || true)" = "$tun9_before" ] && pass "reapply left tun9's rules alone" || fail "tun9 rules changed"
connect lan 10.2.0.1 || fail "connect after reapply"
WANT=$((WANT + 1))
rc=0; inns rt "$TUNSHIM_BIN" reapply eth7 --socket "$SOCK" >"$E2E_TMP/reapply2.txt" 2>&1 || rc=$?
[ $rc = 1 ] && grep -q "eth7 is not a configured tunnel (configured: ppp0, tun9)" "$E2E_TMP/reapply2.txt" &&
  pass "reapply of an unknown interface: exit 1, $(cat "$E2E_TMP/reapply2.txt")" || fail "reapply eth7: exit $rc, $(cat "$E2E_TMP/reapply2.txt")"

# ---- SIGUSR1, STATUS=, WATCHDOG=1 ---------------------------------------------------------------
kill -USR1 "$TS_PID"
if wait_for 5 grep -Eq "stats: SYN out clamped/inserted +$WANT / 0" "$TS_LOG"; then
  pass "SIGUSR1 logs the stats table ($(grep -E 'stats: SYN out clamped' "$TS_LOG" | tail -1 | sed 's/.*stats: //'))"
else fail "SIGUSR1: no stats table with $WANT clamped in the log"; fi
grep -q "^[0-9.]* READY=1" "$E2E_TMP/notify.log" && pass "READY=1 sent" || fail "no READY=1"
# STATUS= every 10 s: wait for one that has the latest counts.
want_status="STATUS=ppp0: up, $((2 * WANT)) clamped; tun9: absent"
if wait_for 12 grep -q "$want_status\$" "$E2E_TMP/notify.log"; then pass "periodic $want_status"
else fail "no '$want_status'; last: $(grep STATUS= "$E2E_TMP/notify.log" | tail -1)"; fi
n_wd=$(grep -c ' WATCHDOG=1$' "$E2E_TMP/notify.log" || true)
# WATCHDOG_USEC=1 s: a ping every 0.5 s since the start (well over 10 s ago).
[ "$n_wd" -ge 15 ] && pass "WATCHDOG=1 at half the watchdog interval ($n_wd pings)" || fail "WATCHDOG=1 sent $n_wd times"
n_reload=$(grep -c "reload applied" "$TS_LOG" || true)
n_status=$(grep -c ' STATUS=' "$E2E_TMP/notify.log" || true)
kill -HUP "$TS_PID"
wait_for 5 sh -c "[ \$(grep -c 'reload applied' $TS_LOG) -gt $n_reload ]" || fail "reload not applied"
wait_for 2 sh -c "[ \$(grep -c ' STATUS=' $E2E_TMP/notify.log) -gt $n_status ]" && pass "STATUS= sent on reload" || fail "no STATUS= after the reload"
http -o "$M" "http://127.0.0.1:$PORT/metrics"
[ "$(metric "$M" 'tunshim_config_reloads_total{result="ok"}')" = 1 ] && pass "config_reloads_total{result=\"ok\"} 1 after SIGHUP" || fail "reloads after SIGHUP: $(grep reloads_total "$M" | tr '\n' ';')"

# ---- a second daemon (another namespace) leaves the live socket alone --------------------------
mkns rt2
rc=0; ip netns exec "$(ns rt2)" "$TUNSHIM_BIN" run -c "$CONF" >"$E2E_TMP/second.log" 2>&1 &  # $! is tunshim
p2=$!
wait_for 10 grep -q "running:" "$E2E_TMP/second.log" || fail "second daemon did not start: $(tail -3 "$E2E_TMP/second.log")"
grep -q "control socket: $SOCK is in use by another process" "$E2E_TMP/second.log" && pass "a second daemon leaves the live socket alone (and says so)" || fail "second daemon: $(grep -i 'control socket' "$E2E_TMP/second.log")"
kill -TERM $p2; wait $p2 || rc=$?
[ "$rc" = 0 ] || fail "second daemon exit $rc: $(grep -E "error|warn" "$E2E_TMP/second.log" | head -5)"
inns rt "$TUNSHIM_BIN" stats --socket "$SOCK" >/dev/null 2>&1 && pass "the first daemon's socket still answers after the second exited" || fail "first daemon's socket gone"

# ---- exit: socket file removed ---------------------------------------------------------------------
kill -TERM "$TS_PID"; rc=0; wait "$TS_PID" || rc=$?; TS_PID=""
[ $rc = 0 ] && [ ! -e "$SOCK" ] && pass "SIGTERM: exit 0, socket file removed" || fail "SIGTERM: exit $rc, socket $(ls -l "$SOCK" 2>&1)"
grep -q ' STOPPING=1$' "$E2E_TMP/notify.log" && pass "STOPPING=1 sent" || fail "no STOPPING=1"

finish
