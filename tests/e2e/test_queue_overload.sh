#!/usr/bin/env bash
# Queue overload: tunshim is frozen (SIGSTOP, the daemon and its stall watchdog both, so
# nobody reads the queue: the kernel's own fail-open is what is tested here; test_stall.sh
# covers the watchdog) while a bounded burst of SYNs, far more than queue_maxlen, leaves by ppp0. The kernel queue fills to maxlen; with fail-open every
# further SYN passes unclamped instead of being dropped, and so does a real connection made
# meanwhile. After SIGCONT the queued SYNs are clamped, clamping resumes for new
# connections, and the counters report the SYNs that went past unclamped.
#
#   cl (tunshim; ppp0 10.9.0.1) ── veth ── peer (eth0 10.9.0.2; tcpdump)
. "$(dirname "$0")/lib.sh"
require_root
require_cmd ip iptables-nft-save tcpdump socat "$PY"
[ -x "$TUNSHIM_BIN" ] || skip "no tunshim binary at $TUNSHIM_BIN"

MSS=1300
NATIVE=1460
MAXLEN=64      # the smallest queue the config accepts: easy to overfill
BURST=5000     # SYNs sent while tunshim is stopped
QNUM=4772

mkns cl; mkns peer
ip -n "$(ns cl)" link add ppp0 type veth peer name eth0 netns "$(ns peer)"
inns cl ip addr add 10.9.0.1/24 dev ppp0
inns peer ip addr add 10.9.0.2/24 dev eth0
inns cl ip link set ppp0 up; inns peer ip link set eth0 up
inns peer socat TCP-LISTEN:7000,fork,reuseaddr SYSTEM:true 2>/dev/null &

connect() { inns cl socat -T2 /dev/null TCP4:10.9.0.2:7000,connect-timeout=3 2>/dev/null; }
wait_for 5 connect || die "no path cl -> peer"

cat >"$E2E_TMP/tunshim.conf" <<EOF
[global]
queue_num = $QNUM
queue_maxlen = $MAXLEN
control_socket = "$E2E_TMP/ctl.sock"

[[tunnel]]
interface = "ppp0"
mss = $MSS
EOF

# The burst is counted at the peer by netfilter rule counters (exact, unlike a capture that
# may drop packets under a burst), split by the MSS the SYN arrived with.
for m in $MSS $NATIVE; do
  inns peer iptables-nft -A INPUT -p tcp --dport 9 --syn -m tcpmss --mss $m -m comment --comment burst-$m
done
inns peer iptables-nft -A INPUT -p tcp --dport 9 --syn -m comment --comment burst-all
burst_count() { inns peer iptables-nft-save -c | awk -v c="burst-$1" '$0 ~ c { gsub(/[][]/, "", $1); split($1, a, ":"); print a[1] }'; }

# The real connections' SYNs (port 7000) are captured on the peer; tcpdump itself is $! (ip netns exec execs).
ip netns exec "$(ns peer)" tcpdump -Z root -i eth0 -U --immediate-mode -B 16384 \
  -w "$E2E_TMP/peer.pcap" 'tcp dst port 7000 and tcp[tcpflags] & tcp-syn != 0' 2>"$E2E_TMP/tcpdump.err" &
CAP=$!
on_exit "kill -INT $CAP"
wait_for 5 grep -q "listening on" "$E2E_TMP/tcpdump.err" || die "tcpdump did not start"

LOG=$E2E_TMP/tunshim.log
ip netns exec "$(ns cl)" "$TUNSHIM_BIN" run -c "$E2E_TMP/tunshim.conf" >"$LOG" 2>&1 &
TS=$!
on_exit "kill -CONT $TS; kill -TERM $TS; wait $TS"
wait_for 10 grep -q "running:" "$LOG" || { cat "$LOG"; die "tunshim did not start"; }
WD=$(pgrep -P $TS -x tunshim-wd || true)   # the stall watchdog: frozen with the daemon
[ -n "$WD" ] && on_exit "kill -CONT $WD"
grep -q "fail-open on" "$LOG" && pass "queue bound with fail-open" || fail "fail-open not confirmed: $(grep nfqueue "$LOG")"

cat >"$E2E_TMP/burst.py" <<'EOF'
# Sends N TCP SYNs (MSS [4th arg, 1460], ports 20000+i -> [5th arg, 9]) from SRC to DST
# through a raw socket, so they cross netfilter's OUTPUT and POSTROUTING like any local SYN.
# Prints how many went out.
import socket, struct, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
mss = int(sys.argv[4]) if len(sys.argv) > 4 else 1460
dport = int(sys.argv[5]) if len(sys.argv) > 5 else 9
sa, da = socket.inet_aton(src), socket.inet_aton(dst)
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
sent = 0
for i in range(n):
    tcp = struct.pack("!HHIIBBHHHBBH", 20000 + i, dport, i, 0, 6 << 4, 0x02, 64240, 0, 0, 2, 4, mss)
    c = csum(sa + da + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), i & 0xFFFF, 0x4000, 64, 6, 0, sa, da)
    s.sendto(ip + tcp, (dst, 0))
    sent += 1
print(sent)
EOF

last_syn_mss() {  # MSS of the most recent SYN to port 7000 seen by the peer
  sleep 0.3
  "$PY" - "$E2E_TMP/peer.pcap" <<'EOF' 2>/dev/null
import sys
from scapy.all import rdpcap, TCP
m = None
for p in rdpcap(sys.argv[1]):
    if TCP in p and p[TCP].dport == 7000 and p[TCP].flags & 0x12 == 0x02:
        m = dict((k, v) for k, v in p[TCP].options if isinstance(k, str)).get("MSS")
print(m)
EOF
}
queue_total() { inns cl awk -v q=$QNUM '$1 == q { print $3 }' /proc/net/netfilter/nfnetlink_queue; }

# ---- before: clamping works -------------------------------------------------------------
connect || fail "connect before the burst"
m=$(last_syn_mss)
[ "$m" = $MSS ] && pass "before the burst: SYN clamped to $m" || fail "before the burst: SYN MSS $m, want $MSS"

# ---- overload ------------------------------------------------------------------------------
kill -STOP $TS $WD
t0=$(date +%s%N)
sent=$(inns cl timeout 60 "$PY" "$E2E_TMP/burst.py" 10.9.0.1 10.9.0.2 $BURST)
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
log "burst: $sent SYNs in $ms ms with tunshim stopped"
[ "$sent" = $BURST ] || fail "burst sent $sent of $BURST"
qt=$(queue_total)
[ "$qt" = $MAXLEN ] && pass "the kernel queue is full: $qt of $MAXLEN packets waiting" ||
  fail "queue_total $qt after the burst (want $MAXLEN)"
# A real connection while the queue is full: fail-open lets its SYN through unclamped.
if connect; then pass "a connection made while the queue is full succeeds (fail-open)"
else fail "a connection made while the queue is full failed: its SYN was dropped"; fi
m=$(last_syn_mss)
[ "$m" = $NATIVE ] && pass "its SYN passed unclamped (MSS $m)" || fail "SYN during overload: MSS $m, want $NATIVE"

# ---- recovery ------------------------------------------------------------------------------
kill -CONT $TS $WD
queue_empty() { [ "$(queue_total)" = 0 ]; }
wait_for 5 queue_empty && pass "after SIGCONT tunshim drained the queue" || fail "queue not drained: $(queue_total)"
ok=0
for i in 1 2 3 4 5; do
  connect || fail "connect $i after the burst"
  m=$(last_syn_mss)
  [ "$m" = $MSS ] && ok=$((ok + 1)) || log "connection $i after the burst: SYN MSS $m"
done
[ $ok = 5 ] && pass "clamping resumed: 5 of 5 connections after the burst clamped to $MSS" ||
  fail "after the burst only $ok of 5 connections clamped"

# ---- counters ------------------------------------------------------------------------------
kill -USR1 $TS
wait_for 5 grep -q "tunnel ppp0: out" "$LOG" || fail "SIGUSR1 logged no counters"
line=$(grep "tunnel ppp0: out" "$LOG" | tail -1)
log "counters: ${line#*: }"
bypassed=$(sed -E 's/.*out clamped=[0-9]+ .* bypassed=([0-9]+) \|.*/\1/' <<<"$line")
clamped=$(sed -E 's/.*out clamped=([0-9]+) .*/\1/' <<<"$line")
expect_bypassed=$((BURST - MAXLEN + 1))   # the burst beyond the queue, plus the real connection
if [ "$bypassed" -ge $((expect_bypassed * 9 / 10)) ] && [ "$bypassed" -le "$expect_bypassed" ]; then
  pass "overrun counter: bypassed=$bypassed (expected about $expect_bypassed)"
else fail "overrun counter bypassed=${bypassed:-?}, expected about $expect_bypassed"; fi
want_clamped=$((1 + MAXLEN + 5))
[ "$clamped" = $want_clamped ] && pass "clamped=$clamped: 1 before + $MAXLEN queued during the burst + 5 after" ||
  fail "clamped=$clamped, want $want_clamped"
grep -q "passed unclamped" "$LOG" && pass "overrun logged: $(grep -m1 'passed unclamped' "$LOG" | sed 's/.*: tunnel/tunnel/')" ||
  fail "no overrun warning in the log"

# ---- batched verdicts: a run of SYNs that need no change is answered in one message -------
SMALL=1200   # already below the target: left unchanged
RUN=40       # fits in the queue (64)
inns peer iptables-nft -A INPUT -p tcp --dport 10 --syn -m tcpmss --mss $SMALL -m comment --comment run-$SMALL
qline() { grep "queue $QNUM: packets=" "$LOG" | tail -1; }
qfield() { sed -E "s/.* $1=([0-9]+).*/\1/" <<<"$(qline)"; }
b0=$(qfield batches); v0=$(qfield verdicts)
kill -STOP $TS $WD
inns cl "$PY" "$E2E_TMP/burst.py" 10.9.0.1 10.9.0.2 $RUN $SMALL 10 >/dev/null
queue_is() { [ "$(queue_total)" = "$1" ]; }
wait_for 5 queue_is $RUN || true
qt=$(queue_total)
kill -CONT $TS $WD
wait_for 5 queue_empty || fail "run of $RUN not drained"
n_before=$(grep -c "queue $QNUM: packets=" "$LOG" || true)
kill -USR1 $TS
qlines_more() { [ "$(grep -c "queue $QNUM: packets=" "$LOG" || true)" -gt "$1" ]; }
wait_for 5 qlines_more "$n_before" || fail "SIGUSR1 logged no queue line"
b1=$(qfield batches); v1=$(qfield verdicts)
log "run of $RUN unchanged SYNs ($qt queued at SIGCONT): batches $b0 -> $b1, single verdicts $v0 -> $v1"
if [ "$qt" = $RUN ] && [ $((b1 - b0)) -ge 1 ] && [ $((b1 - b0 + v1 - v0)) -lt $RUN ]; then
  pass "$RUN queued unchanged SYNs answered with $((b1 - b0)) batch + $((v1 - v0)) single verdict(s)"
else fail "batching: $qt queued, batches +$((b1 - b0)), singles +$((v1 - v0))"; fi
got=$(inns peer iptables-nft-save -c | awk -v c="run-$SMALL" '$0 ~ c { gsub(/[][]/, "", $1); split($1, a, ":"); print a[1] }')
[ "$got" = $RUN ] && pass "all $RUN reached the peer unchanged (MSS $SMALL)" || fail "$got of $RUN reached the peer with MSS $SMALL"
connect || fail "connect after the batch"
m=$(last_syn_mss)
[ "$m" = $MSS ] && pass "after the batch the next SYN is clamped ($m)" || fail "after the batch: SYN MSS $m"

# ---- the wire agrees -------------------------------------------------------------------------
set -- "$(burst_count $MSS)" "$(burst_count $NATIVE)" "$(burst_count all)"
log "burst SYNs at the peer: $1 with MSS $MSS, $2 with MSS $NATIVE, $3 in all"
if [ "$3" = $BURST ] && [ $(($1 + $2)) = $BURST ]; then pass "all $BURST burst SYNs reached the peer: none dropped"
else fail "burst SYNs at the peer: $1 + $2 (all: $3) of $BURST"; fi
[ "$1" = $MAXLEN ] && pass "exactly the $MAXLEN queued SYNs were clamped late, the rest passed unclamped" ||
  fail "$1 burst SYNs clamped, want $MAXLEN"

# ---- exit -----------------------------------------------------------------------------------
kill -TERM $TS; rc=0; wait $TS || rc=$?
[ $rc = 0 ] && pass "SIGTERM: exit 0" || fail "SIGTERM: exit $rc"
n=$({ inns cl iptables-nft-save; inns cl ip6tables-nft-save; } | grep -c TUNSHIM || true)
[ "$n" = 0 ] && pass "no TUNSHIM rules left" || fail "$n TUNSHIM lines left"

finish
