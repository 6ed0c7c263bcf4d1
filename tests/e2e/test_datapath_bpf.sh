#!/usr/bin/env bash
# The eBPF data path (datapath = "bpf") on the black-hole tunnel lab (lab.sh, with its LAN
# host): ppp0 is a TUN device (no link header), the path beyond it carries 1372 inner bytes.
#   (a) the programs sit on ppp0's clsact hooks, one filter per direction, and no NFQUEUE
#       rule exists; `tunshim stats` and /metrics say datapath bpf and why;
#   (b) SYNs are clamped both ways, IPv4 and IPv6, local and forwarded from the LAN host, a
#       download across the black hole completes;
#   (c) the guard: once the path-MTU search has completed, an oversize DF datagram from the
#       LAN host is dropped in the kernel and answered by the daemon (the sender's route
#       learns the PMTU), counted in /metrics;
#   (d) kill -9 during a download: the download completes, the clamp keeps its targets, the
#       guard stops dropping within a few seconds (oversize DF packets leave ppp0 again);
#   (e) a restarted tunshim adopts the dead one's programs: still one filter per direction,
#       a new program id, its log says so;
#   (f) a clean stop removes the filters and the clsact qdisc.
# TUNSHIM_DATAPATH is ignored here: this test is about the eBPF path alone.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lab.sh"
require_root
require_cmd ip tc tcpdump tshark curl "$PY"
[ -x "$TUNSHIM_BIN" ] || die "TUNSHIM_BIN=$TUNSHIM_BIN is not executable"

STATS=127.0.0.1:9477
PORT=9999
WANT_PMTU=$((LAB_PATH_MTU - 28))
MSS6=$((WANT_PMTU - 60))

lab_up --lan
lab_server_start

metric() {  # metric NAME: the sample of tunshim_NAME for ppp0 (or the unlabelled one)
  inns client curl -s "http://$STATS/metrics" |
    awk -v n="tunshim_$1" '!done && ($1 == n || index($1, n "{") == 1) && ($1 ~ /ppp0/ || $1 == n) { print $2; done = 1 }'
}  # awk reads to the end: leaving early made curl fail with a write error (23) under pipefail
# filters DIR: the tc filters of ppp0 in that direction (one line each: "id NAME").
filters() {
  inns client tc filter show dev ppp0 "$1" | sed -n 's/.* bpf .*id \([0-9]*\) *name \([^ ]*\).*/\1 \2/p;s/.*bpf name \([^ ]*\) .* id \([0-9]*\).*/\2 \1/p' | sort -u
}
count_filters() { inns client tc filter show dev ppp0 "$1" | grep -c 'tunshim_' || true; }
ready_bpf() {
  ! lab_gone "$LAB_TUNSHIM_PID" && lab_tunshim_logged 'tunshim .* running' &&
    [ "$(count_filters egress)" = 1 ] && [ "$(count_filters ingress)" = 1 ]
}
start_bpf() {
  LAB_TUNSHIM_LOGPOS=0
  [ ! -f "$LAB_TUNSHIM_LOG" ] || LAB_TUNSHIM_LOGPOS=$(wc -l <"$LAB_TUNSHIM_LOG")
  ip netns exec "$(ns client)" "$TUNSHIM_BIN" run -c "$LAB_TUNSHIM_CONF" >>"$LAB_TUNSHIM_LOG" 2>&1 &
  LAB_TUNSHIM_PID=$!
  lab_bg "$LAB_TUNSHIM_PID"
  if ! wait_for 40 ready_bpf; then
    sed 's/^/  tunshim: /' "$LAB_TUNSHIM_LOG" | tail -20
    die "tunshim (eBPF) did not become ready"
  fi
}
# send NS DST SIZE: one UDP datagram of SIZE IP bytes with DF from NS; prints IP_MTU after.
send_df() {
  inns "$1" "$PY" - "$2" "$3" "$PORT" <<'EOF'
import socket, sys, time
dst, size, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO
s.connect((dst, port))
try:
    s.send(b"x" * (size - 28))
except OSError:
    pass
time.sleep(0.5)
try:
    s.send(b"x" * (size - 28))
except OSError:
    pass
print(s.getsockopt(socket.IPPROTO_IP, 14))  # IP_MTU
EOF
}

cat >"$LAB_TUNSHIM_CONF" <<EOF
[global]
log_level = "info"
datapath = "bpf"
stats_listen = "$STATS"
control_socket = "$E2E_TMP/ctl.sock"

[[tunnel]]
interface = "ppp0"
mss = "auto"
mss6 = "auto"
guard = "icmp"
probe_target = "$LAB_S_TUN"
keepalive = "off"
EOF
start_bpf

# ---- (a) where the programs are ------------------------------------------------------------
[ "$(lab_tunshim_rules)" = 0 ] && pass "(a) no NFQUEUE rule installed" ||
  fail "(a) $(lab_tunshim_rules) NFQUEUE rule(s) with datapath = bpf"
pass "(a) one tunshim filter on ppp0 egress and one on ingress"
lab_tunshim_logged 'eBPF programs attached \(ifindex [0-9]+, link header 0 bytes' &&
  pass "(a) attached to the TUN device with no link header" || fail "(a) no attach line in the log"
info=$(inns client curl -s "http://$STATS/metrics" | grep '^tunshim_datapath_info')
echo "$info" | grep -q 'datapath="bpf"' && pass "(a) /metrics: $info" || fail "(a) /metrics: '$info'"
st=$(inns client "$TUNSHIM_BIN" stats --socket "$E2E_TMP/ctl.sock" 2>&1 | grep '^datapath' || true)
echo "$st" | grep -q '^datapath bpf: configured' && pass "(a) tunshim stats: $st" ||
  fail "(a) tunshim stats has no datapath line: '$st'"

# ---- (b) clamping ----------------------------------------------------------------------------
pmtu_done() { lab_tunshim_logged 'path MTU .*(1372|confirmed|found)' || [ "$(metric pmtu_bytes)" = "$WANT_PMTU" ]; }
wait_for 30 pmtu_done || log "no completed search in 30 s (the clamp uses the fallback)"
for who in client lan; do
  read -r n syn <<<"$(lab_request_syn_mss "$who" "$LAB_S_TUN")"
  if [ "$n" = 1000 ] && [ -n "$syn" ] && [ "$syn" != none ] && [ "$syn" -le $((WANT_PMTU - 40)) ]; then
    pass "(b) $who -> server IPv4: SYN arrives with MSS $syn, request completes"
  else
    fail "(b) $who -> server IPv4: $n bytes, SYN MSS '$syn' (want <= $((WANT_PMTU - 40)))"
  fi
done
read -r n syn <<<"$(lab_request_syn_mss client "$LAB_S_TUN6")"
if [ "$n" = 1000 ] && [ "$syn" != none ] && [ -n "$syn" ] && [ "$syn" -le "$MSS6" ]; then
  pass "(b) client -> server IPv6: SYN MSS $syn"
else
  fail "(b) client -> server IPv6: $n bytes, SYN MSS '$syn' (want <= $MSS6)"
fi
f="$E2E_TMP/synack.pcap"
lab_capture_start client ppp0 "$f" tcp
got=$(lab_download client "$LAB_S_TUN" 3000000 20)
lab_capture_stop
[ "$got" = 3000000 ] && pass "(b) 3 MB download across the black hole completes" ||
  fail "(b) download across the black hole: $got of 3000000 bytes"
sa=$(lab_syn_mss "$f" 0x012 | head -1)
# ppp0's capture sees arriving packets before tc ingress, so the SYN-ACK's MSS there is
# the server's; the client socket's MSS (after ingress) is what the clamp set.
log "SYN-ACK MSS on the wire ${sa:-?}"
c=$(inns client curl -s "http://$STATS/metrics" | grep '^tunshim_syn_total\|^tunshim_mss_' | grep 'direction="in"' | grep -c 'clamped' || true)
[ "$c" -ge 1 ] && pass "(b) inbound SYN-ACKs counted as clamped" ||
  fail "(b) no inbound clamp counter in /metrics: $(inns client curl -s "http://$STATS/metrics" | grep -i 'direction="in"' | head -5 | tr '\n' ' ')"

# ---- (c) the guard ---------------------------------------------------------------------------
BIG=$((WANT_PMTU + 56))
guard_on() { [ -n "$(metric pmtu_bytes)" ] && lab_tunshim_logged 'guard above [0-9]+'; }
drop0=$(metric oversize_dropped_total); drop0=${drop0:-0}
mtu=$(send_df lan "$LAB_S_TUN" "$BIG")
drop1=$(metric oversize_dropped_total); sent1=$(metric icmp_ptb_sent_total)
if [ "$mtu" = "$WANT_PMTU" ]; then
  pass "(c) LAN host's oversize DF datagram: dropped in the kernel, answered; its IP_MTU is now $mtu"
else
  fail "(c) LAN host's IP_MTU after an oversize DF datagram: '$mtu' (want $WANT_PMTU)"
fi
[ "${drop1:-0}" -gt "$drop0" ] && [ "${sent1:-0}" -ge 1 ] &&
  pass "(c) counted: oversize dropped $drop0 -> $drop1, ICMP sent $sent1" ||
  fail "(c) counters: dropped $drop0 -> '$drop1', ICMP sent '$sent1'"

# ---- (d) kill -9 during traffic ------------------------------------------------------------
id_eg=$(inns client tc filter show dev ppp0 egress | sed -n 's/.* id \([0-9]*\).*/\1/p' | head -1)
( lab_download client "$LAB_S_TUN" 20000000 60 >"$E2E_TMP/dl.out" ) &
DL=$!
sleep 1
kill -9 "$LAB_TUNSHIM_PID"
wait_for 5 lab_gone "$LAB_TUNSHIM_PID" || die "tunshim survived kill -9"
LAB_TUNSHIM_PID=""
killed_at=$(date +%s.%N)
[ "$(count_filters egress)" = 1 ] && [ "$(count_filters ingress)" = 1 ] &&
  pass "(d) after kill -9 the programs stay (the clamp keeps its last targets)" ||
  fail "(d) filters after kill -9: egress $(count_filters egress), ingress $(count_filters ingress)"
read -r n syn <<<"$(lab_request_syn_mss client "$LAB_S_TUN")"
[ "$n" = 1000 ] && [ "$syn" != none ] && [ "$syn" -le $((WANT_PMTU - 40)) ] &&
  pass "(d) with the daemon dead, SYNs are still clamped (MSS $syn)" ||
  fail "(d) with the daemon dead: $n bytes, SYN MSS '$syn'"
# The guard opens once the heartbeat is older than 3 s: oversize DF datagrams then leave ppp0.
lab_capture_start client ppp0 "$E2E_TMP/open.pcap" "udp port $PORT"
opened=""
for i in $(seq 1 20); do
  inns client "$PY" -c 'import socket,sys
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.setsockopt(socket.IPPROTO_IP,10,3)
s.connect((sys.argv[1],int(sys.argv[2]))); s.send(b"y"*int(sys.argv[3]))' "$LAB_S_TUN" "$PORT" $((BIG - 28)) 2>/dev/null || true
  sleep 0.5
  if [ "$(tcpdump -r "$E2E_TMP/open.pcap" -n 2>/dev/null | grep -c "length $((BIG - 28))")" -gt 0 ]; then
    opened=$(echo "$(date +%s.%N) - $killed_at" | bc)
    break
  fi
done
lab_capture_stop
[ -n "$opened" ] && pass "(d) the guard opened ${opened%????????} s after kill -9 (oversize DF datagram left ppp0)" ||
  fail "(d) the guard still drops 10 s after kill -9"
wait "$DL" || true
[ "$(cat "$E2E_TMP/dl.out")" = 20000000 ] && pass "(d) the 20 MB download across the kill -9 completed" ||
  fail "(d) download across the kill -9: $(cat "$E2E_TMP/dl.out") of 20000000 bytes"

# ---- (e) restart adopts -------------------------------------------------------------------
start_bpf
pass "(e) after the restart: one tunshim filter per direction (no second set)"
inns client tc filter show dev ppp0 egress | sed 's/^/    /'
id_eg2=$(inns client tc filter show dev ppp0 egress | sed -n 's/.* id \([0-9]*\).*/\1/p' | head -1)
[ -n "$id_eg2" ] && [ "$id_eg2" != "$id_eg" ] && pass "(e) the egress program was replaced (id $id_eg -> $id_eg2)" ||
  fail "(e) egress program id $id_eg -> '$id_eg2'"
lab_tunshim_logged "replacing a dead tunshim's" && pass "(e) the log says it adopted the dead run's programs" ||
  fail "(e) no adoption line in the log"
read -r n syn <<<"$(lab_request_syn_mss lan "$LAB_S_TUN")"
[ "$n" = 1000 ] && [ "$syn" != none ] && pass "(e) clamping after the restart (MSS $syn)" || fail "(e) after restart: $n bytes, MSS '$syn'"
# A second daemon must not take a live one's programs.
LAB_TUNSHIM_CONF2="$E2E_TMP/second.conf"
sed -e "s|^stats_listen.*|stats_listen = \"off\"|" -e "s|^control_socket.*|control_socket = \"off\"|" "$LAB_TUNSHIM_CONF" >"$LAB_TUNSHIM_CONF2"
timeout 60 ip netns exec "$(ns client)" "$TUNSHIM_BIN" run -c "$LAB_TUNSHIM_CONF2" >"$E2E_TMP/second.log" 2>&1 &
SECOND=$!
# Loading (verifying) the programs takes seconds on a busy host.
wait_for 40 grep -q "another tunshim is running" "$E2E_TMP/second.log" &&
  pass "(e) a second tunshim refuses the live one's programs" ||
  fail "(e) second tunshim: $(tail -3 "$E2E_TMP/second.log" | tr '\n' ' ')"
kill "$SECOND" 2>/dev/null || true
wait "$SECOND" 2>/dev/null || true
id_eg3=$(inns client tc filter show dev ppp0 egress | sed -n 's/.* id \([0-9]*\).*/\1/p' | head -1)
[ "$id_eg3" = "$id_eg2" ] && pass "(e) the live daemon's programs stayed (id $id_eg3)" ||
  fail "(e) programs changed under the live daemon: $id_eg2 -> $id_eg3"

# ---- (f) clean stop ---------------------------------------------------------------------------
lab_tunshim_stop TERM
[ "$(count_filters egress)" = 0 ] && [ "$(count_filters ingress)" = 0 ] &&
  pass "(f) SIGTERM removed both filters" ||
  fail "(f) after SIGTERM: egress $(count_filters egress), ingress $(count_filters ingress)"
if inns client tc qdisc show dev ppp0 | grep -q clsact; then
  fail "(f) the clsact qdisc is still on ppp0"
else
  pass "(f) no clsact qdisc left on ppp0"
fi
finish
