# shellcheck shell=bash
# The path-MTU knobs on top of lab.sh's tunnel lab. Source after lib.sh and lab.sh:
#   . "$(dirname "$0")/lib.sh"; . "$(dirname "$0")/lab.sh"; . "$(dirname "$0")/pmtu_lab.sh"
#   pmtu_lab_up; pmtu_lab_underlay 1400; pmtu_lab_loss 10
#
# lab.sh's narrow hop is a locked route MTU on the router (both directions) whose
# "fragmentation needed" is dropped by nft: a black hole for the outer UDP packets of the
# socat tunnel. Inner packets of N bytes travel as N + 28 outer bytes (IPv4 + UDP, TUN
# without packet-information header), so the tunnel's real inner path MTU is X - 28 for an
# underlay path MTU X, in both directions. These helpers change X and add random loss.

# shellcheck disable=SC2034  # used by the tests that source this file
PMTU_OUTER_OVERHEAD=28   # IPv4 header 20 + UDP header 8; socat TUN runs with iff-no-pi

# pmtu_lab_up: lab_up, then ppp0 configured like pppd does it (local address with a peer,
# IFF_POINTOPOINT), so `tunshim probe ppp0` finds its target without --target.
pmtu_lab_up() {
  require_cmd ping tracepath
  lab_up
  ip -n "$(ns client)" addr del "$LAB_C_TUN/30" dev ppp0
  ip -n "$(ns client)" addr add "$LAB_C_TUN" peer "$LAB_S_TUN" dev ppp0
  wait_for 5 lab_reach client "$LAB_S_TUN" 9 || die "tunnel carries nothing after re-addressing ppp0"
}

# pmtu_lab_underlay X: the router's forwarding path carries X bytes (both directions).
pmtu_lab_underlay() {
  ip -n "$(ns router)" route replace 10.77.1.0/24 dev r0 src "$LAB_R_CSIDE" mtu lock "$1"
  ip -n "$(ns router)" route replace 10.77.2.0/24 dev r1 src "$LAB_R_SSIDE" mtu lock "$1"
  ip -n "$(ns router)" route flush cache 2>/dev/null || true
}

# pmtu_lab_loss PERCENT: drops PERCENT % of the tunnel's UDP packets (either direction) at
# random in the router; 0 removes the rule. Only whole tens (nft numgen modulus 10).
pmtu_lab_loss() {
  inns router nft delete table inet pmtu_loss 2>/dev/null || true
  [ "$1" -gt 0 ] || return 0
  inns router nft -f - <<EOF
table inet pmtu_loss {
  chain forward {
    type filter hook forward priority -10; policy accept;
    meta l4proto udp numgen random mod 10 < $(($1 / 10)) counter drop
  }
}
EOF
}

# pmtu_lab_loss_dropped: packets the loss rule dropped so far.
pmtu_lab_loss_dropped() {
  inns router nft list table inet pmtu_loss 2>/dev/null |
    sed -n 's/.*counter packets \([0-9]*\) .*/\1/p' | head -1
}

# pmtu_ping_passes SIZE [ADDR]: true if a DF echo of total IPv4 size SIZE (or IPv6 when
# ADDR has a colon) crosses the tunnel and its reply comes back. One echo every 0.2 s until
# the first reply, for 2 s (10 tries), so a lost packet under loss does not decide; without
# loss the first try decides, and a size that does not pass costs 2 s.
pmtu_ping_passes() {
  local size=$1 addr=${2:-$LAB_S_TUN} hdr=28
  case $addr in *:*) hdr=48 ;; esac
  inns client ping -n -q -M "do" -s $((size - hdr)) -c 1 -i 0.2 -w 2 "$addr" >/dev/null 2>&1
}

# pmtu_truth_check SIZE [ADDR]: the independent truth, without tunshim: a DF ping of total
# size SIZE crosses the tunnel and is answered, and one of SIZE + 1 is not (10 tries each,
# so one lost packet does not decide either way). True if SIZE is exactly the largest size
# that passes.
pmtu_truth_check() {
  pmtu_ping_passes "$1" "${2:-$LAB_S_TUN}" && ! pmtu_ping_passes $(($1 + 1)) "${2:-$LAB_S_TUN}"
}
