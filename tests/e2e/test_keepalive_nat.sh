#!/bin/bash
# Keepalive against a NAT idle timeout. The router masquerades the tunnel's UDP, forgets a
# mapping after 3 s without packets (per-namespace conntrack UDP timeouts) and drops
# unsolicited inbound packets. Inside the tunnel the server sends a message down an open
# TCP connection after an 8 s idle gap: without tunshim it never arrives (the mapping is
# gone, the server's packets are dropped at the router); with tunshim (keepalive idle,
# 2 s) the echoes keep the mapping alive and it does.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lab.sh"
. "$(dirname "$0")/live_lab.sh"

GAP=8; NAT_TIMEOUT=3

lab_up
inns router nft -f - <<'EOF'
table ip live_nat {
  chain post {
    type nat hook postrouting priority 100; policy accept;
    oifname "r1" masquerade
  }
  chain live_forward {
    type filter hook forward priority 0; policy accept;
    ct state established,related accept
    iifname "r1" counter drop
  }
  # After the mapping expired, the server's packets are addressed to the router itself.
  chain live_input {
    type filter hook input priority 0; policy accept;
    iifname "r1" udp dport 5555-5600 counter drop
  }
}
EOF
inns router sysctl -qw net.netfilter.nf_conntrack_udp_timeout=$NAT_TIMEOUT \
  net.netfilter.nf_conntrack_udp_timeout_stream=$NAT_TIMEOUT
[ "$(inns router sysctl -n net.netfilter.nf_conntrack_udp_timeout_stream)" = $NAT_TIMEOUT ] \
  || die "could not set the router's conntrack UDP timeout"
# No IPv6 on the re-created tunnel devices: router solicitations and MLD reports from a
# fresh interface would refresh the mapping at random and hide the timeout.
for n in client server; do
  inns "$n" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
done
# The server now talks to the client's public (NATed) address: the router's.
LIVE_SERVER_PEER=$LAB_R_SSIDE
live_take_over_tunnel 5556
pass "tunnel through the NAT carries packets"

# late_message PORT: server accepts on PORT, waits GAP s, sends a line; the client connects,
# then prints what it received within GAP + 6 s ("nothing" if nothing).
late_message() {
  lab_spawn server "$E2E_TMP/late-server.$1.log" "$PY" -c '
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("'"$LAB_S_TUN"'", int(sys.argv[1]))); s.listen(1)
c, _ = s.accept(); time.sleep(float(sys.argv[2])); c.sendall(b"late-hello\n"); time.sleep(30)' "$1" "$GAP"
  wait_for 5 sh -c "ip netns exec $(ns server) ss -Hltn 'sport = :$1' | grep -q LISTEN" || die "late server not listening"
  inns client "$PY" -c '
import socket, sys
c = socket.create_connection(("'"$LAB_S_TUN"'", int(sys.argv[1])), timeout=5)
c.settimeout(float(sys.argv[2]))
try: print(c.recv(100).decode().strip() or "nothing")
except socket.timeout: print("nothing")' "$1" "$((GAP + 6))"
}

r=$(late_message 7000)
drops=$(inns router nft list table ip live_nat | sed -n 's/.*iifname "r1" .*counter packets \([0-9]*\).*/\1/p' | awk '{s+=$1} END {print s+0}')
if [ "$r" = nothing ] && [ "${drops:-0}" -gt 0 ]; then
  pass "without tunshim: the message after a ${GAP}s idle gap never arrives (router dropped $drops unsolicited packets)"
else
  fail "without tunshim: got '$r', router drops ${drops:-0} (the NAT timeout did not bite: the test proves nothing)"
fi

# The server still retransmits to the expired mapping, which now pins the router's port
# (a real VPN server would follow the client's new source port; socat does not): start a
# fresh session on the next port, as a reconnecting client would.
for p in $(ip netns pids "$(ns server)"); do
  [ "$(cat "/proc/$p/comm" 2>/dev/null)" = python3 ] && grep -q late-hello "/proc/$p/cmdline" 2>/dev/null && kill -9 "$p"
done
live_take_over_tunnel 5557
live_conf "keepalive = \"idle\"
keepalive_interval = \"2s\"
keepalive_target = \"$LAB_S_TUN\""
live_require_keys
lab_tunshim_start
sleep 1
r=$(late_message 7001)
[ "$r" = late-hello ] && pass "with tunshim (keepalive idle 2 s): the message arrives" \
  || fail "with tunshim: got '$r'"
s=$(live_stats)
log "counters: $s"
sent=$(live_field "$s" sent); replies=$(live_field "$s" replies)
[ "${sent:-0}" -ge 3 ] && [ "${replies:-0}" -ge 3 ] && pass "keepalives sent=$sent replies=$replies during the gap" \
  || fail "keepalive counters: $s"
[ "$(live_count 'tunnel ppp0: .* -> (suspect|down)')" = 0 ] && pass "no false suspect/down" \
  || fail "spurious transitions: $(live_count 'tunnel ppp0: .* -> (suspect|down)')"
lab_tunshim_stop
finish
