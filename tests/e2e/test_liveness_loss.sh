#!/bin/bash
# No false kill: a busy tunnel (5 pings/s inside it) with 20 % random loss of its UDP
# packets at the router, for 30 s, keepalive "always" every 2 s: tunshim must keep it up
# (lost echoes while traffic arrives are losses, not misses). Then the control: traffic
# stops and loss goes to 100 %: it must be declared down, so the first part could fail.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lab.sh"
. "$(dirname "$0")/live_lab.sh"

require_cmd ping
DURATION=30

lab_up
live_conf "keepalive = \"always\"
keepalive_interval = \"2s\"
keepalive_target = \"$LAB_S_TUN\"
down_after_misses = 3"
live_require_keys
lab_tunshim_start

set_loss() {  # set_loss TENTHS (0..10): drop that many tenths of the tunnel's UDP
  inns router nft delete table inet live_loss 2>/dev/null || true
  [ "$1" -gt 0 ] || return 0
  local match="numgen random mod 10 < $1"
  [ "$1" -lt 10 ] || match=""
  inns router nft -f - <<EOF
table inet live_loss {
  chain forward {
    type filter hook forward priority -10; policy accept;
    meta l4proto udp $match counter drop
  }
}
EOF
}
set_loss 2
inns client ping -n -q -i 0.2 -w "$DURATION" "$LAB_S_TUN" >"$E2E_TMP/ping.log" 2>&1 || true
dropped=$(inns router nft list table inet live_loss | sed -n 's/.*counter packets \([0-9]*\).*/\1/p')
loss_line=$(grep -o '[0-9.]*% packet loss' "$E2E_TMP/ping.log" || echo '?')
s=$(live_stats)
log "after ${DURATION}s at 20 % loss: router dropped $dropped packets, ping $loss_line; $s"
[ "${dropped:-0}" -gt 20 ] && pass "loss applied ($dropped packets dropped, ping: $loss_line)" || fail "loss rule dropped ${dropped:-0}"
downs=$(live_count 'tunnel ppp0: .* -> down')
suspects=$(live_count 'tunnel ppp0: .* -> suspect')
[ "$downs" = 0 ] && pass "busy tunnel under 20 % loss never declared down (suspect: $suspects)" \
  || fail "declared down $downs time(s) under 20 % loss"
printf '%s\n' "$s" | grep -q 'state up' && pass "state up at the end" || fail "state at the end: $s"
sent=$(live_field "$s" sent)
[ "${sent:-0}" -ge $((DURATION / 2 - 2)) ] && pass "keepalive always: $sent echoes in ${DURATION}s, loss $(live_field "$s" loss_permille) per mille" \
  || fail "too few echoes: $s"

# Control: silence + total loss must be detected.
set_loss 10
t0=$(live_now_ms)
wait_for 15 lab_tunshim_logged 'tunnel ppp0: .* -> down' \
  && pass "control: total loss declared down after $(( $(live_now_ms) - t0 )) ms" \
  || fail "control: total loss not detected in 15 s"
set_loss 0
wait_for 10 lab_tunshim_logged 'tunnel ppp0: down -> up' && pass "control: up again once packets pass" \
  || fail "control: not up again"
lab_tunshim_stop
finish
