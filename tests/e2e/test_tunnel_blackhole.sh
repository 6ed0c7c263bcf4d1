#!/usr/bin/env bash
# The problem tunshim exists for, on a real userspace VPN (tests/e2e/lab.sh): the tunnel says
# MTU 1500, the path carries 1400, "fragmentation needed" is dropped. Without tunshim a 2 MB
# download and a 1 MB upload stall (bounded by a timeout); with `tunshim run` and mss = 1300
# both complete, from the client itself and from a LAN host routed through it (forwarding
# path), over IPv4 and IPv6 inside the tunnel. The wire shows the clamp in both directions:
# the SYN as the server receives it carries the clamped MSS, and the server's SYN-ACK (1460
# on the client's ppp0 before PREROUTING) reaches the client's TCP stack clamped, which the
# segment sizes of its upload prove.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lab.sh"

DL=2000000; UL=1000000; TMO=8
MSS=1300; MSS6=$((MSS - 20))   # mss6 left to its default: mss - 20 (same link MTU)

lab_up --lan
lab_server_start

# --- without tunshim: the black hole ------------------------------------------------------
# All four transfers at once: the timeout is paid once.
lab_download client "$LAB_S_TUN" "$DL" "$TMO" >"$E2E_TMP/n1" &
lab_upload client "$LAB_S_TUN" "$UL" "$TMO" >"$E2E_TMP/n2" &
lab_download lan "$LAB_S_TUN" "$DL" "$TMO" >"$E2E_TMP/n3" &
lab_download client "$LAB_S_TUN6" "$DL" "$TMO" >"$E2E_TMP/n4" &
wait
for x in "n1 client download" "n2 client upload" "n3 LAN-host download" "n4 client IPv6 download"; do
  # shellcheck disable=SC2086  # split on purpose: file, then the words of the label
  set -- $x
  n=$(cat "$E2E_TMP/$1"); shift
  want=$DL; [ "$2" = upload ] && want=$UL
  if [ "$n" -lt "$want" ]; then pass "without tunshim: $* stalls in the black hole ($n of $want bytes in ${TMO}s)"
  else fail "without tunshim: $* completed ($n bytes): the lab has no black hole"; fi
done
drops=$(lab_blackhole_drops)
if [ "$drops" -gt 0 ]; then pass "the router dropped $drops 'fragmentation needed' messages"
else fail "the router dropped no 'fragmentation needed': the black hole is not the cause"; fi

# --- with tunshim ---------------------------------------------------------------------------
lab_tunshim_conf "$MSS"
lab_tunshim_start
pass "tunshim installed its rules ($(lab_jump_counts))"

lab_capture_start server tun0 "$E2E_TMP/srv.pcap"
lab_spawn client "$E2E_TMP/cli.log" tcpdump -i ppp0 -n -s 128 -U --immediate-mode -w "$E2E_TMP/cli.pcap" tcp
cli_cap=$LAB_PID
wait_for 5 grep -q "listening on" "$E2E_TMP/cli.log" || die "tcpdump on the client's ppp0 did not start"

check_transfer() {   # WHAT GOT WANT
  if [ "$2" -eq "$3" ]; then pass "with tunshim: $1 completes ($2 bytes)"
  else fail "with tunshim: $1 got $2 of $3 bytes in ${TMO}s"; fi
}
check_transfer "client download" "$(lab_download client "$LAB_S_TUN" "$DL" "$TMO")" "$DL"
check_transfer "client upload" "$(lab_upload client "$LAB_S_TUN" "$UL" "$TMO")" "$UL"
check_transfer "LAN-host download" "$(lab_download lan "$LAB_S_TUN" "$DL" "$TMO")" "$DL"
check_transfer "LAN-host upload" "$(lab_upload lan "$LAB_S_TUN" "$UL" "$TMO")" "$UL"
check_transfer "client IPv6 download" "$(lab_download client "$LAB_S_TUN6" "$DL" "$TMO")" "$DL"
check_transfer "client IPv6 upload" "$(lab_upload client "$LAB_S_TUN6" "$UL" "$TMO")" "$UL"
lab_capture_stop
kill -INT "$cli_cap" 2>/dev/null; wait_for 5 lab_gone "$cli_cap" || true

# Outbound clamp: every SYN the server received, per source, carries exactly the target.
check_syns() {   # LABEL SRC-FILTER WANT
  local got
  got=$(tshark -r "$E2E_TMP/srv.pcap" -Y "tcp.flags == 0x002 and ($2)" -T fields \
        -e tcp.options.mss_val 2>/dev/null | sed 's/^$/none/' | sort | uniq -c | tr -s ' ' | xargs)
  if [ "$got" = "" ]; then fail "$1: the server saw no SYN"
  elif [[ "$got" =~ ^[0-9]+\ $3$ ]]; then pass "$1: SYN MSS at the server = $3 ($got)"
  else fail "$1: SYN MSS at the server: $got (want only $3)"; fi
}
check_syns "client IPv4" "ip.src == $LAB_C_TUN" "$MSS"
check_syns "LAN host IPv4" "ip.src == $LAB_LAN_HOST" "$MSS"
check_syns "client IPv6" "ipv6.src == $LAB_C_TUN6" "$MSS6"

# Inbound clamp: the server's SYN-ACKs arrive on ppp0 unclamped (1460/1440: the capture is
# before PREROUTING), yet the client's stacks send upload segments no larger than the
# clamped MSS, so PREROUTING lowered it before they saw it. The segments are read from the
# same ppp0 capture (outbound: what the stacks emitted), not at the server, where the black
# hole would hide the oversized ones.
sa=$(tshark -r "$E2E_TMP/cli.pcap" -Y 'tcp.flags == 0x012' -T fields -e tcp.options.mss_val 2>/dev/null |
     sort -u | xargs)
above=1
for v in $sa; do [ "$v" -gt "$MSS" ] || above=0; done
if [ -n "$sa" ] && [ "$above" -eq 1 ]; then
  pass "server SYN-ACKs on the client's ppp0 before PREROUTING carry MSS $sa (unclamped)"
else fail "server SYN-ACK MSS on ppp0: '$sa' (expected the server's own, above $MSS)"; fi
check_segments() {   # LABEL SRC WANT-MAX
  local m
  m=$(lab_max_payload "$E2E_TMP/cli.pcap" "$2")
  if [ -z "$m" ] || [ "$m" -eq 0 ]; then fail "$1: no data segments captured"
  elif [ "$m" -le "$3" ]; then pass "$1: largest upload segment $m <= $3 (the SYN-ACK was clamped inbound)"
  else fail "$1: upload segment of $m bytes > $3: the SYN-ACK reached the stack unclamped"; fi
}
check_segments "client IPv4" "$LAB_C_TUN" "$MSS"
check_segments "LAN host" "$LAB_LAN_HOST" "$MSS"
check_segments "client IPv6" "$LAB_C_TUN6" "$MSS6"

lab_tunshim_stop TERM
left=$(lab_jump_counts)
if [ "$(lab_tunshim_rules)" -eq 0 ] && [[ ! "$left" =~ =[1-9] ]]; then
  pass "SIGTERM: tunshim removed its rules ($left)"
else fail "SIGTERM: rules left behind: $left, $(lab_tunshim_rules) NFQUEUE rules"; fi

finish
