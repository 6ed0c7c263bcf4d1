#!/usr/bin/env bash
# The oversize-DF guard (guard = "icmp") on the black-hole tunnel lab (lab.sh, with its LAN
# host and, added here, IPv6 on that LAN):
#
#   lan (10.77.9.2, fd77:9::2) ── client: l1 | ppp0 (MTU 1500) ══ black hole 1400 ══ server
#
# The path beyond ppp0 carries 1400 - 28 = 1372 inner bytes and every "fragmentation needed"
# dies in the router. tunshim runs in the client with mss = "auto" and guard = "icmp"; once
# its path-MTU search has completed, packets leaving ppp0 longer than the PMTU with DF (all
# IPv6) must be dropped and answered by tunshim, so that a UDP sender learns the size:
#   (a) a local IPv4 sender with DF: our ICMP error on the wire, its socket's path MTU
#       (IP_MTU, `ip route get`) drops to the discovered value, its datagrams of exactly that
#       size then reach the server, and the oversize one never left ppp0;
#   (b) the same for the LAN host (forwarded traffic), the error coming from its gateway;
#   (c) IPv6, local and LAN;
#   (d) oversize IPv4 without DF is not queued or dropped: it leaves ppp0;
#   (e) counters in /metrics match what was sent and seen on the wire, and a sender that
#       ignores the errors is answered at its per-source rate only;
#   (f) after kill -9 the guard rule stays and fails open: oversize DF packets leave ppp0;
#   (g) the daemon's own periodic search is not blocked by its guard: when the path grows
#       to the full interface MTU, the next search (reprobe_interval = 1 min) finds it and
#       the guard rules go. Its probes above the PMTU match the guard rule like any other
#       oversize packet; dropped there, the PMTU could never grow again. That daemon runs
#       with the test-only TUNSHIM_TEST_TIMERS=10 (proxy/test_knobs.h), so its 1-minute
#       reprobe_interval takes 6 s; (a)-(f) run with the production timers.
# With TUNSHIM_DATAPATH=bpf the guard is the egress program on ppp0: where the queue path is
# checked through its rules (their length bound, their packet counters, --queue-bypass after
# kill -9) this checks the program's map (guard_mtu, its per-outcome counters) and, after
# kill -9, that the guard opens once the daemon's heartbeat is older than 3 s.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lab.sh"
require_root
require_cmd ip iptables-nft-save ip6tables-nft-save tcpdump tshark curl "$PY"
[ -x "$TUNSHIM_BIN" ] || die "TUNSHIM_BIN=$TUNSHIM_BIN is not executable"

PORT=9999            # the UDP test service on the server
STATS=127.0.0.1:9477 # in the client namespace
LAN6_GW=fd77:9::1; LAN6_HOST=fd77:9::2
WANT_PMTU=$((LAB_PATH_MTU - 28))   # inner IPv4 + UDP of the socat tunnel

lab_up --lan
# IPv6 on the LAN too, routed (not NATed) through the tunnel like the IPv4 LAN.
ip -n "$(ns client)" addr add "$LAN6_GW/64" dev l1 nodad
ip -n "$(ns lan)" addr add "$LAN6_HOST/64" dev l0 nodad
ip -n "$(ns lan)" -6 route add default via "$LAN6_GW"
inns client sysctl -qw net.ipv6.conf.all.forwarding=1
ip -n "$(ns server)" -6 route add fd77:9::/64 dev tun0
wait_for 5 lab_reach lan "$LAB_S_TUN6" 9 || die "no IPv6 path lan -> server"

# ---- helpers -----------------------------------------------------------------------------
# The UDP service: one line per datagram, "SRC SIZE TAG KIND".
cat >"$E2E_TMP/sink.py" <<'EOF'
import select, socket, sys
port = int(sys.argv[1])
s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s4.bind(("0.0.0.0", port))
s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1); s6.bind(("::", port))
print("listening", flush=True)
while True:
    for s in select.select([s4, s6], [], [])[0]:
        d, a = s.recvfrom(65535)
        w = d.split(b" ")
        print(a[0], len(d), w[0].decode(errors="replace"), w[1].decode(errors="replace") if len(w) > 1 else "-", flush=True)
EOF
# The sender: sender.py DST TOTAL MODE TAG [COUNT]. Sends COUNT (default 1) datagrams of TOTAL
# IP bytes with path-MTU discovery MODE (do: DF, obeys the PMTU; dont: no DF; probe: DF,
# ignores the PMTU, from an unconnected socket so that no error reported by an ICMP message
# fails a later send), then, in mode "do", waits up to 3 s for the socket's path MTU to drop
# and sends 3 datagrams of exactly the new path MTU. Prints "before N" (connected modes),
# "sent N", "after N", "small N".
cat >"$E2E_TMP/sender.py" <<'EOF'
import errno, socket, sys, time
dst, total, mode, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
count = int(sys.argv[5]) if len(sys.argv) > 5 else 1
v6 = ":" in dst
hdr = 48 if v6 else 28
modes = {"dont": 0, "do": 2, "probe": 3}  # IP(V6)_PMTUDISC_*
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
if v6:
    s.setsockopt(socket.IPPROTO_IPV6, 23, modes[mode])  # IPV6_MTU_DISCOVER
    mtu_opt = (socket.IPPROTO_IPV6, 24)                 # IPV6_MTU
else:
    s.setsockopt(socket.IPPROTO_IP, 10, modes[mode])    # IP_MTU_DISCOVER
    mtu_opt = (socket.IPPROTO_IP, 14)                   # IP_MTU
if mode != "probe":
    s.connect((dst, 9999))
    before = s.getsockopt(*mtu_opt)
    print("before", before, flush=True)
sent = 0
for i in range(count):
    try:
        s.sendto(f"{tag} big {i} ".encode().ljust(total - hdr, b"x"), (dst, 9999))
        sent += 1
    except OSError as e:
        print("send_error", e.errno, flush=True)
print("sent", sent, flush=True)
if mode != "do":
    sys.exit(0 if sent == count else 1)
mtu, end = before, time.monotonic() + 3
while mtu >= before and time.monotonic() < end:
    time.sleep(0.05)
    mtu = s.getsockopt(*mtu_opt)
print("after", mtu, flush=True)
if mtu >= before:
    sys.exit(1)
s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # consume the EMSGSIZE the error raised
for i in range(3):
    s.send(f"{tag} small {i} ".encode().ljust(mtu - hdr, b"y"))
print("small", mtu, flush=True)
EOF
send() {  # send NS OUT DST TOTAL MODE TAG [COUNT]: false if the sender failed
  local n=$1 out=$2; shift 2
  inns "$n" "$PY" "$E2E_TMP/sender.py" "$@" >"$out" 2>&1
}
field() { awk -v k="$2" '$1 == k { print $2; exit }' "$1"; }  # field FILE KEY

# capture NS IF FILE FILTER: background tcpdump; its pid in CAP_PID.
capture() {
  lab_spawn "$1" "$3.log" tcpdump -i "$2" -n -s 256 -U --immediate-mode -w "$3" "$4"
  CAP_PID=$LAB_PID
  wait_for 5 grep -q "listening on" "$3.log" || die "tcpdump on $1/$2 did not start"
}
capture_stop() { sleep 0.3; kill -INT "$@" 2>/dev/null || true; for p in "$@"; do wait_for 5 lab_gone "$p" || true; done; }

# ptb4 FILE: "SRC DST MTU QUOTED-DPORT" per ICMP frag-needed; ptb6: per ICMPv6 packet-too-big.
# (The quoted packet's addresses follow the outer ones in ip.src/ip.dst: keep the first.)
ptb4() {
  tshark -r "$1" -Y 'icmp.type == 3 && icmp.code == 4' -T fields -E separator=' ' -E aggregator=, \
    -e ip.src -e ip.dst -e icmp.mtu -e udp.dstport 2>/dev/null |
    awk '{ split($1, s, ","); split($2, d, ","); print s[1], d[1], $3, $4 }'
}
ptb6() {
  tshark -r "$1" -Y 'icmpv6.type == 2' -T fields -E separator=' ' -E aggregator=, \
    -e ipv6.src -e ipv6.dst -e icmpv6.mtu -e udp.dstport 2>/dev/null |
    awk '{ split($1, s, ","); split($2, d, ","); print s[1], d[1], $3, $4 }'
}
# left FILE TAG: sizes of the UDP datagrams (IP total length) tagged TAG that left ppp0.
left() {
  tshark -r "$1" -Y "udp.dstport == $PORT && data.data contains \"$2 \"" -T fields -E separator=, \
    -e ip.len -e ipv6.plen 2>/dev/null | awk -F, '{ print ($1 != "" ? $1 : $2 + 40) }'
}
# received TAG KIND: datagrams of that tag and kind the server got, as "SRC SIZE".
received() { awk -v t="$1" -v k="$2" '$3 == t && $4 == k { print $1, $2 }' "$E2E_TMP/sink.log"; }

metric() {  # metric NAME: the ppp0 sample of tunshim_NAME from /metrics ("" if absent)
  # Fetched whole first: a reader that stops at the first match would cut curl's pipe, and
  # under pipefail curl's write error would end the script.
  local page
  page=$(inns client curl -sS --max-time 5 "http://$STATS/metrics" 2>/dev/null) || true
  awk -v k="tunshim_$1{" 'index($1, k) == 1 && $1 ~ /tunnel="ppp0"/ && !found { print $2; found = 1 }' <<<"$page"
}
BPF=0; [ "$TUNSHIM_DATAPATH" = bpf ] && BPF=1
# guard_rule FAMILY(4|6): the guard rule's N+1 ("1373" for --length 1373:65535), "" if none.
# eBPF: the program's guard_mtu + 1 (one bound for both families), "" while it is 0 (off).
guard_rule() {
  if [ $BPF = 1 ]; then
    local m; m=$(e2e_bpf_state client ppp0 guard_mtu)
    [ -z "$m" ] || [ "$m" = 0 ] || echo $((m + 1))
    return 0
  fi
  local save=iptables-nft-save; [ "$1" = 4 ] || save=ip6tables-nft-save
  inns client "$save" -t mangle 2>/dev/null |
    sed -n 's/^-A TUNSHIM-POST -o ppp0 -m length --length \([0-9]*\):65535 .*-j NFQUEUE .*--queue-bypass$/\1/p' | head -1
}
# guard_rule_packets FAMILY: the rule's packet counter. eBPF: the oversize packets the program
# judged (dropped, or passed for want of a live daemon), both families.
guard_rule_packets() {
  if [ $BPF = 1 ]; then
    local st; st=$(e2e_bpf_state client ppp0)
    echo $(( $(tr ' ' '\n' <<<"$st" | sed -n 's/^guard_dropped=//p') + $(tr ' ' '\n' <<<"$st" | sed -n 's/^guard_stale=//p') ))
    return 0
  fi
  local save=iptables-nft-save; [ "$1" = 4 ] || save=ip6tables-nft-save
  inns client "$save" -c -t mangle 2>/dev/null |
    sed -n 's/^\[\([0-9]*\):[0-9]*\] -A TUNSHIM-POST -o ppp0 -m length .*$/\1/p' | head -1
}
guard_rules_ready() { [ "$(guard_rule 4)" = $((PMTU + 1)) ] && [ "$(guard_rule 6)" = $((PMTU + 1)) ]; }

# ---- start ---------------------------------------------------------------------------------
lab_spawn server "$E2E_TMP/sink.log" "$PY" -u "$E2E_TMP/sink.py" "$PORT"
wait_for 5 grep -q listening "$E2E_TMP/sink.log" || die "UDP sink did not start"

cat >"$LAB_TUNSHIM_CONF" <<EOF
[global]
log_level = "debug"
stats_listen = "$STATS"
control_socket = "$E2E_TMP/ctl.sock"

[[tunnel]]
interface = "ppp0"
mss = "auto"
guard = "icmp"
probe_target = "$LAB_S_TUN"
keepalive = "off"
reprobe_interval = "1m"
EOF
lab_tunshim_start
log "tunshim running; waiting for the path-MTU search"

# The guard acts only once a search has completed: its rule appears then (a fallback PMTU
# in /metrics before that is not a measurement, so wait for the rule, not the gauge).
guard4_present() { [ -n "$(guard_rule 4)" ]; }
if ! wait_for 30 guard4_present; then
  sed 's/^/  tunshim: /' "$LAB_TUNSHIM_LOG" | tail -30
  die "no IPv4 guard rule 30 s after start"
fi
PMTU=$(metric pmtu_bytes)
[ "$PMTU" = "$WANT_PMTU" ] && pass "discovered path MTU $PMTU (the lab passes $WANT_PMTU)" ||
  fail "discovered path MTU '$PMTU', the lab passes $WANT_PMTU"
[ -n "$PMTU" ] || die "no tunshim_pmtu_bytes in /metrics"
if wait_for 10 guard_rules_ready; then
  if [ $BPF = 1 ]; then pass "the guard follows the PMTU: the program's guard_mtu is $PMTU"
  else pass "guard rules follow the PMTU: --length $((PMTU + 1)):65535 in IPv4 (DF) and IPv6"; fi
else
  fail "guard rules: IPv4 '$(guard_rule 4)' IPv6 '$(guard_rule 6)', want $((PMTU + 1))"
  inns client iptables-nft-save -t mangle; inns client ip6tables-nft-save -t mangle; e2e_bpf_state client ppp0
  die "no guard rules to test"
fi
BIG4=$((PMTU + 56)); BIG6=$((PMTU + 56))   # oversize, and below ppp0's 1500
[ "$BIG4" -le "$LAB_TUN_MTU" ] || die "PMTU $PMTU leaves no room for an oversize packet under $LAB_TUN_MTU"

drop0=$(metric oversize_dropped_total); sent0=$(metric icmp_ptb_sent_total)
[ -n "$drop0" ] && [ -n "$sent0" ] && pass "guard counters exported (dropped $drop0, errors sent $sent0)" ||
  fail "tunshim_oversize_dropped_total '$drop0' / tunshim_icmp_ptb_sent_total '$sent0' missing from /metrics"
drop0=${drop0:-0}; sent0=${sent0:-0}

capture client ppp0 "$E2E_TMP/ppp0.pcap" "udp port $PORT"; CAP_PPP=$CAP_PID
capture client lo "$E2E_TMP/lo.pcap" "icmp or icmp6"; CAP_LO=$CAP_PID
capture lan l0 "$E2E_TMP/lan.pcap" "icmp or icmp6"; CAP_LAN=$CAP_PID
rule4_0=$(guard_rule_packets 4)

# ---- (d) IPv4 without DF: not queued, not dropped --------------------------------------------
# First, while no sender has a cached PMTU for the server (with one, the kernel would
# fragment locally and there would be nothing oversize to see).
send client "$E2E_TMP/d.out" "$LAB_S_TUN" "$BIG4" dont nodf || fail "(d) sender: $(cat "$E2E_TMP/d.out")"
sleep 0.5
rule4_1=$(guard_rule_packets 4)
[ "$rule4_1" = "$rule4_0" ] && pass "(d) oversize IPv4 without DF does not match the guard rule (counter stays $rule4_0)" ||
  fail "(d) guard rule counter $rule4_0 -> $rule4_1 for a packet without DF"
drop_d=$(metric oversize_dropped_total)
[ "$drop_d" = "$drop0" ] && pass "(d) nothing dropped" || fail "(d) dropped $drop0 -> $drop_d"

# ---- (a) local IPv4 sender with DF ----------------------------------------------------------
send client "$E2E_TMP/a.out" "$LAB_S_TUN" "$BIG4" do a4 || true  # judged below
after=$(field "$E2E_TMP/a.out" after); small=$(field "$E2E_TMP/a.out" small)
[ "$after" = "$PMTU" ] && pass "(a) local IPv4 socket's IP_MTU dropped $(field "$E2E_TMP/a.out" before) -> $after" ||
  fail "(a) local IPv4 socket's IP_MTU after the oversize datagram: '$after' (want $PMTU): $(tr '\n' ' ' <"$E2E_TMP/a.out")"
route=$(inns client ip route get "$LAB_S_TUN")
echo "$route" | grep -q " mtu $PMTU " && pass "(a) ip route get $LAB_S_TUN: mtu $PMTU" ||
  fail "(a) ip route get $LAB_S_TUN: $(echo "$route" | tr '\n' ' ')"

# ---- (b) the LAN host, forwarded -----------------------------------------------------------
send lan "$E2E_TMP/b.out" "$LAB_S_TUN" "$BIG4" do b4 || true
after=$(field "$E2E_TMP/b.out" after)
[ "$after" = "$PMTU" ] && pass "(b) LAN host's IPv4 socket's IP_MTU dropped to $after" ||
  fail "(b) LAN host's IP_MTU: '$after' (want $PMTU): $(tr '\n' ' ' <"$E2E_TMP/b.out")"
route=$(inns lan ip route get "$LAB_S_TUN")
echo "$route" | grep -q " mtu $PMTU " && pass "(b) LAN host: ip route get $LAB_S_TUN: mtu $PMTU" ||
  fail "(b) LAN host: ip route get $LAB_S_TUN: $(echo "$route" | tr '\n' ' ')"

# ---- (c) IPv6, local and LAN ---------------------------------------------------------------
send client "$E2E_TMP/c.out" "$LAB_S_TUN6" "$BIG6" do c6 || true
after=$(field "$E2E_TMP/c.out" after)
[ "$after" = "$PMTU" ] && pass "(c) local IPv6 socket's IPV6_MTU dropped to $after" ||
  fail "(c) local IPV6_MTU: '$after' (want $PMTU): $(tr '\n' ' ' <"$E2E_TMP/c.out")"
route=$(inns client ip -6 route get "$LAB_S_TUN6")
echo "$route" | grep -q " mtu $PMTU " && pass "(c) ip -6 route get $LAB_S_TUN6: mtu $PMTU" ||
  fail "(c) ip -6 route get $LAB_S_TUN6: $(echo "$route" | tr '\n' ' ')"
frag6() { inns client awk '$1 == "Ip6FragFails" { print $2 }' /proc/net/snmp6; }
fragfails0=$(frag6)
send lan "$E2E_TMP/c2.out" "$LAB_S_TUN6" "$BIG6" do l6 || true
fragfails1=$(frag6)
after=$(field "$E2E_TMP/c2.out" after)
[ "$after" = "$PMTU" ] && pass "(c) LAN host's IPv6 socket's IPV6_MTU dropped to $after" ||
  fail "(c) LAN host's IPV6_MTU: '$after' (want $PMTU): $(tr '\n' ' ' <"$E2E_TMP/c2.out")"

sleep 0.5
drop1=$(metric oversize_dropped_total); sent1=$(metric icmp_ptb_sent_total)
capture_stop "$CAP_PPP" "$CAP_LO" "$CAP_LAN"

# What crossed: the server got each sender's three datagrams of exactly the PMTU, and none
# of the oversize ones; ppp0 carried the non-DF oversize packet and no DF oversize one.
for spec in "a4 $LAB_C_TUN" "b4 $LAB_LAN_HOST" "c6 $LAB_C_TUN6" "l6 $LAN6_HOST"; do
  # shellcheck disable=SC2086  # two words: tag and sender address
  set -- $spec
  got=$(received "$1" small | grep -c "^$2 " || true)
  sizes=$(received "$1" small | awk '{ print $2 }' | sort -u | tr '\n' ' ')
  hdr=28; case $2 in *:*) hdr=48 ;; esac
  [ "$got" = 3 ] && [ "$sizes" = "$((PMTU - hdr)) " ] &&
    pass "($1) the server received 3 datagrams of exactly the path MTU ($PMTU bytes) from $2" ||
    fail "($1) the server received $got datagrams from $2, payload sizes '$sizes' (want 3 of $((PMTU - hdr)))"
  big=$(received "$1" big | wc -l)
  [ "$big" = 0 ] && pass "($1) the oversize datagram did not reach the server" || fail "($1) $big oversize datagrams arrived?!"
  out=$(left "$E2E_TMP/ppp0.pcap" "$1" | awk -v m="$PMTU" '$1 > m' | wc -l)
  [ "$out" = 0 ] && pass "($1) no oversize DF datagram left ppp0" || fail "($1) $out oversize DF datagrams left ppp0"
done
nodf=$(left "$E2E_TMP/ppp0.pcap" nodf | tr '\n' ' ')
[ "$nodf" = "$BIG4 " ] && pass "(d) the oversize non-DF datagram left ppp0 whole ($BIG4 bytes)" ||
  fail "(d) non-DF datagram sizes on ppp0: '$nodf' (want $BIG4)"

# The errors on the wire: to each sender, from the address it knows (its own for a local
# socket, its gateway for the LAN host), announcing the PMTU, quoting the datagram.
e_lo4=$(ptb4 "$E2E_TMP/lo.pcap"); e_lo6=$(ptb6 "$E2E_TMP/lo.pcap")
e_lan4=$(ptb4 "$E2E_TMP/lan.pcap"); e_lan6=$(ptb6 "$E2E_TMP/lan.pcap")
[ "$e_lo4" = "$LAB_C_TUN $LAB_C_TUN $PMTU $PORT" ] && pass "(a) on the wire: frag-needed $e_lo4 (src dst mtu quoted-port)" ||
  fail "(a) frag-needed to the local sender: '$e_lo4' (want '$LAB_C_TUN $LAB_C_TUN $PMTU $PORT')"
[ "$e_lan4" = "$LAB_LAN_GW $LAB_LAN_HOST $PMTU $PORT" ] && pass "(b) on the wire: frag-needed $e_lan4" ||
  fail "(b) frag-needed to the LAN host: '$e_lan4' (want '$LAB_LAN_GW $LAB_LAN_HOST $PMTU $PORT')"
[ "$e_lo6" = "$LAB_C_TUN6 $LAB_C_TUN6 $PMTU $PORT" ] && pass "(c) on the wire: packet-too-big $e_lo6" ||
  fail "(c) packet-too-big to the local sender: '$e_lo6' (want '$LAB_C_TUN6 $LAB_C_TUN6 $PMTU $PORT')"
[ "$e_lan6" = "$LAN6_GW $LAN6_HOST $PMTU $PORT" ] && pass "(c) on the wire: packet-too-big to the LAN host $e_lan6" ||
  fail "(c) packet-too-big to the LAN host: '$e_lan6' (want '$LAN6_GW $LAN6_HOST $PMTU $PORT')"

# ---- (e) counters --------------------------------------------------------------------------
# Four oversize DF datagrams were sent (a, b, c local, c LAN), each answered once.
want=4
if [ $BPF = 1 ]; then
  # On the eBPF path the guard sits at tc egress, after the kernel's own IPv6 output check:
  # (c)'s answer taught the client the server's PMTU, and a forwarded IPv6 packet above it
  # is answered "packet too big" by the kernel (ip6_fragment, counted Ip6FragFails) before
  # it reaches the program. The queue path's rule (mangle POSTROUTING) comes before that
  # check. The LAN host gets the same error from the same address either way (above).
  want=3
  [ "$((fragfails1 - fragfails0))" = 1 ] && pass "(e) the LAN host's IPv6 datagram was answered by the client's kernel (Ip6FragFails +1)" ||
    fail "(e) Ip6FragFails $fragfails0 -> $fragfails1 during the LAN host's IPv6 send (want +1)"
fi
[ "$((drop1 - drop0))" = $want ] && pass "(e) tunshim_oversize_dropped_total +$want" ||
  fail "(e) tunshim_oversize_dropped_total $drop0 -> $drop1 (want +$want)"
[ "$((sent1 - sent0))" = $want ] && pass "(e) tunshim_icmp_ptb_sent_total +$want ($want errors of tunshim's on the wire)" ||
  fail "(e) tunshim_icmp_ptb_sent_total $sent0 -> $sent1 (want +$want)"
if [ $BPF = 1 ]; then
  k=$(e2e_bpf_state client ppp0 guard_dropped)
  [ "$k" = "$drop1" ] && pass "(e) the program's own drop counter agrees ($k)" || fail "(e) program's guard_dropped $k, /metrics $drop1"
fi
# A sender that ignores the errors (IP_PMTUDISC_PROBE: DF, PMTU ignored) sending 30 at once
# is answered at its per-source rate: its burst of 10 (plus at most one more per 100 ms).
t0=$(date +%s%N)
send client "$E2E_TMP/e.out" "$LAB_S_TUN" "$BIG4" probe flood 30 || fail "(e) flood sender: $(cat "$E2E_TMP/e.out")"
ms=$((($(date +%s%N) - t0) / 1000000))
sleep 0.5
drop2=$(metric oversize_dropped_total); sent2=$(metric icmp_ptb_sent_total)
max_sent=$((10 + ms / 100 + 1))
[ "$((drop2 - drop1))" = 30 ] && pass "(e) flood: all 30 oversize datagrams dropped" ||
  fail "(e) flood: dropped $drop1 -> $drop2 (want +30)"
[ "$((sent2 - sent1))" -ge 10 ] && [ "$((sent2 - sent1))" -le "$max_sent" ] &&
  pass "(e) flood: $((sent2 - sent1)) errors for 30 packets in ${ms} ms (per-source burst 10, 10/s)" ||
  fail "(e) flood: $((sent2 - sent1)) errors for 30 packets in ${ms} ms (want 10..$max_sent)"

# ---- (f) kill -9: fail open ----------------------------------------------------------------
lab_tunshim_stop KILL
killed=$(date +%s%N)
[ "$(guard_rule 4)" = $((PMTU + 1)) ] && pass "(f) after kill -9 the IPv4 guard rule is still there" ||
  fail "(f) IPv4 guard rule after kill -9: '$(guard_rule 4)'"
if [ $BPF = 1 ]; then
  # The program stops dropping once the dead daemon's heartbeat is older than 3 s.
  stale() { [ "$(e2e_bpf_state client ppp0 hb_age_ms)" -gt 3100 ]; }
  wait_for 10 stale && pass "(f) the heartbeat went stale $((($(date +%s%N) - killed) / 1000000)) ms after kill -9 (age $(e2e_bpf_state client ppp0 hb_age_ms) ms)" ||
    fail "(f) heartbeat age 10 s after kill -9: $(e2e_bpf_state client ppp0 hb_age_ms) ms"
  stale0=$(e2e_bpf_state client ppp0 guard_stale); dropped0=$(e2e_bpf_state client ppp0 guard_dropped)
fi
capture client ppp0 "$E2E_TMP/dead.pcap" "udp port $PORT"; CAP_PPP=$CAP_PID
r0=$(guard_rule_packets 4)
send client "$E2E_TMP/f.out" "$LAB_S_TUN" "$BIG4" probe dead 3 || fail "(f) sender: $(cat "$E2E_TMP/f.out")"
send client "$E2E_TMP/f6.out" "$LAB_S_TUN6" "$BIG6" probe dead6 2 || fail "(f) sender: $(cat "$E2E_TMP/f6.out")"
capture_stop "$CAP_PPP"
r1=$(guard_rule_packets 4)
if [ $BPF = 1 ]; then
  stale1=$(e2e_bpf_state client ppp0 guard_stale); dropped1=$(e2e_bpf_state client ppp0 guard_dropped)
  [ "$((stale1 - stale0))" = 5 ] && [ "$dropped1" = "$dropped0" ] &&
    pass "(f) the program judged all 5 oversize and passed them for the stale heartbeat (+5), dropped none" ||
    fail "(f) passed-for-stale $stale0 -> $stale1 (want +5), dropped $dropped0 -> $dropped1"
else
  [ "$((r1 - r0))" = 3 ] && pass "(f) the rule still matched them (+3)" || fail "(f) guard rule counter $r0 -> $r1 (want +3)"
fi
n=$(left "$E2E_TMP/dead.pcap" dead | grep -c "^$BIG4\$" || true)
[ "$n" = 3 ] && pass "(f) with tunshim dead, oversize DF IPv4 packets pass ppp0 (queue bypass / stale heartbeat)" ||
  fail "(f) $n of 3 oversize DF IPv4 packets left ppp0 with tunshim dead"
n=$(left "$E2E_TMP/dead.pcap" dead6 | grep -c "^$BIG6\$" || true)
[ "$n" = 2 ] && pass "(f) ...and oversize IPv6 packets too" ||
  fail "(f) $n of 2 oversize IPv6 packets left ppp0 with tunshim dead"

# ---- (g) the daemon's upward search passes its own guard ---------------------------------------
TIMERS=10
TUNSHIM_TEST_TIMERS=$TIMERS lab_tunshim_start
lab_tunshim_logged "TUNSHIM_TEST_TIMERS=$TIMERS: TEST ONLY" || die "(g) the daemon does not say it runs with TUNSHIM_TEST_TIMERS=$TIMERS"
wait_for 30 guard_rules_ready || die "(g) no guard rules after restarting tunshim"
# The underlay now carries the tunnel's full 1500 (+ 28 outer bytes) in both directions.
for r in "10.77.1.0/24 dev r0 src $LAB_R_CSIDE" "10.77.2.0/24 dev r1 src $LAB_R_SSIDE"; do
  # shellcheck disable=SC2086  # a route spec
  ip -n "$(ns router)" route replace $r mtu lock $((LAB_TUN_MTU + 28))
done
log "(g) path widened to $LAB_TUN_MTU; waiting for the periodic search (reprobe_interval 1 min / $TIMERS)"
drop_g=$(metric oversize_dropped_total)
grown() { [ "$(metric pmtu_bytes)" = "$LAB_TUN_MTU" ]; }
if wait_for 90 grown; then
  pass "(g) the periodic search found the wider path: PMTU $LAB_TUN_MTU"
else
  fail "(g) PMTU still $(metric pmtu_bytes) 90 s after the path grew to $LAB_TUN_MTU (guard dropped $drop_g -> $(metric oversize_dropped_total): its own probes?)"
fi
no_rules() { [ -z "$(guard_rule 4)" ] && [ -z "$(guard_rule 6)" ]; }
wait_for 5 no_rules && pass "(g) no guard rules once the path carries the interface MTU" ||
  fail "(g) guard rules left: IPv4 '$(guard_rule 4)' IPv6 '$(guard_rule 6)'"
lab_tunshim_stop

finish
