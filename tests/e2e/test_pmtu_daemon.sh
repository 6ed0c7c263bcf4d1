#!/usr/bin/env bash
# The daemon's own path-MTU discovery on the black-hole tunnel lab (lab.sh + pmtu_lab.sh),
# with `mss = "auto"` and no number configured anywhere:
#  1. for five underlay path MTUs (odd ones included) the daemon's search, restarted by
#     `tunshim reapply`, finds exactly the largest size that crosses the tunnel (the truth
#     from DF pings without tunshim), with ICMP errors dropped; again with 10 % random loss
#     on the underlay; the clamp follows (PMTU - 40) and tracepath is printed beside.
#  2. the inline issue's transfers (2 MB down, 1 MB up) pass with "auto", and the server
#     sees SYNs clamped to the discovered value.
#  3. a black hole appearing mid-life (the underlay shrinks while the search is complete)
#     lowers the path MTU and the clamp on the next re-confirmation.
#  4. set_interface_mtu: ppp0's MTU becomes the path MTU; when ppp0 is deleted and comes
#     back (a VPN reconnect) it is searched again and written again.
#  5. with the guard on (the default with "auto"), the periodic upward search still finds a
#     path that grew: our own probes must not be stopped by our own guard rule.
#  6. a target that answers no echo at all: state "error", said in the log, the fallback
#     MSS kept (never a tiny MTU from silence); once it answers again the search completes.
# Prints one figures line per MTU (docs/PERFORMANCE.md, "Path-MTU discovery").
#
# The daemons run with the test-only TUNSHIM_TEST_TIMERS=10 (proxy/test_knobs.h): the 30 s
# re-confirmation that notices the black hole of 3., the 5 s retry of 6. and the
# reprobe_interval of 5. ("1m") run ten times faster; nothing else changes.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lab.sh"
. "$(dirname "$0")/pmtu_lab.sh"
. "$(dirname "$0")/live_lab.sh"

[ -x "$TUNSHIM_BIN" ] || die "TUNSHIM_BIN=$TUNSHIM_BIN is not executable"
UNDERLAYS=(1437 1400 1333 1251 1528)
TIMERS=10
export TUNSHIM_TEST_TIMERS=$TIMERS
SOCK="$E2E_TMP/ctl.sock"

# conf EXTRA-TUNNEL-LINES: the daemon's config, "auto" and nothing else about sizes.
conf() {
  cat >"$LAB_TUNSHIM_CONF" <<CONF
[global]
log_level = "info"
stats_listen = "off"
control_socket = "$SOCK"
[[tunnel]]
interface = "ppp0"
mss = "auto"
keepalive = "off"
$1
CONF
}
# stat KEY: one field of ppp0's entry in `tunshim stats --json` (pmtu_state, pmtu_confirmed,
# or a metric's value: pmtu, mss4, mss6, dropped, ptb).
stat() {
  local e
  case $1 in
    pmtu_state | pmtu_confirmed) e="t['$1']" ;;
    pmtu) e="m.get('pmtu_bytes')" ;;
    mss4) e="m['mss_clamp_bytes']['ipv4']" ;;
    mss6) e="m['mss_clamp_bytes']['ipv6']" ;;
    dropped) e="m.get('oversize_dropped_total')" ;;
    ptb) e="m.get('icmp_ptb_sent_total')" ;;
  esac
  e2e_tunnel_json client "$SOCK" "$e"
}
confirmed_at() { [ "$(stat pmtu_confirmed)" = true ] && [ "$(stat pmtu)" = "$1" ]; }
searched() { [ "$(stat pmtu_confirmed)" = true ] && [ "$(stat pmtu_state)" = complete ]; }
reapply() { inns client "$TUNSHIM_BIN" reapply ppp0 --socket "$SOCK" >/dev/null 2>&1; }

pmtu_lab_up
lab_server_start
log "lab up: ppp0 $LAB_C_TUN peer $LAB_S_TUN (MTU 1500), ICMP frag-needed dropped in the router"

# ---- 1. exact result per underlay, without and with loss -----------------------------------
# guard off here: the truth checks (DF pings larger than the last result) must reach the
# black hole, not the guard (test_guard.sh tests that).
conf 'guard = "off"'
lab_tunshim_start
lab_tunshim_logged "TUNSHIM_TEST_TIMERS=$TIMERS: TEST ONLY" && pass "the daemon says the test-only timer knob is set" ||
  fail "no warning about TUNSHIM_TEST_TIMERS in the daemon's log"
FIGURES=()
for X in "${UNDERLAYS[@]}"; do
  N=$((X - PMTU_OUTER_OVERHEAD))
  pmtu_lab_loss 0
  pmtu_lab_underlay "$X"
  # tracepath's opinion, asked while the truth is checked (it waits seconds for errors the
  # black hole eats; its UDP probes do not touch the pings' result).
  inns client timeout 8 tracepath -n -m 1 "$LAB_S_TUN" >"$E2E_TMP/tp$X" 2>&1 &
  tp_pid=$!
  truth=0; pmtu_truth_check "$N" && truth=1
  wait "$tp_pid" || true
  tp=$(sed -n 's/.*pmtu \([0-9]*\).*/\1/p' "$E2E_TMP/tp$X" | tail -1)
  if [ "$truth" != 1 ]; then fail "underlay $X: the truth is not $N (ping check); lab broken?"; continue; fi
  for loss in 0 10; do
    pmtu_lab_loss "$loss"
    pos=$(wc -l <"$LAB_TUNSHIM_LOG")
    t0=$(live_now_ms)
    reapply || fail "underlay $X: tunshim reapply failed"
    if wait_for 60 searched; then
      ms=$(( $(live_now_ms) - t0 ))
      got=$(stat pmtu); mss=$(stat mss4)
      line=$(tail -n "+$((pos + 1))" "$LAB_TUNSHIM_LOG" | grep -o 'path MTU [0-9]* to .*' | tail -1 || true)
      rounds=$(sed -n 's/.*: \([0-9]*\) probe rounds.*/\1/p' <<<"$line")
      probes=$(sed -n 's/.* \([0-9]*\) probes.*/\1/p' <<<"$line")
      log "underlay $X loss $loss %: truth $N | daemon $got (${rounds:-?} rounds, ${probes:-?} probes, $ms ms) | tracepath ${tp:-none} | clamp $mss"
      [ "$got" = "$N" ] && pass "underlay $X loss $loss %: the daemon found $got, exactly the truth" ||
        fail "underlay $X loss $loss %: the daemon found $got, truth $N"
      [ "$mss" = $((N - 40)) ] && pass "underlay $X loss $loss %: clamp follows: mss $mss" ||
        fail "underlay $X loss $loss %: clamp $mss, want $((N - 40))"
      FIGURES+=("figures: underlay $X loss $loss% truth $N daemon $got rounds ${rounds:-?} probes ${probes:-?} ms $ms tracepath ${tp:-none}")
    else
      fail "underlay $X loss $loss %: no completed search within 60 s (state $(stat pmtu_state))"
    fi
  done
done
pmtu_lab_loss 0
printf '%s\n' "${FIGURES[@]}"

# ---- 2. transfers with "auto" -----------------------------------------------------------------
pmtu_lab_underlay 1400; N=1372
reapply; wait_for 30 confirmed_at $N || fail "no path MTU $N after reapply (got $(stat pmtu))"
got=$(lab_download client "$LAB_S_TUN" 2000000 30)
[ "$got" = 2000000 ] && pass "2 MB download through the black hole with mss = \"auto\"" || fail "download: $got of 2000000 bytes"
got=$(lab_upload client "$LAB_S_TUN" 1000000 30)
[ "$got" = 1000000 ] && pass "1 MB upload through the black hole with mss = \"auto\"" || fail "upload: $got of 1000000 bytes"
read -r bytes syn_mss <<<"$(lab_request_syn_mss client "$LAB_S_TUN")"
[ "${syn_mss:-}" = $((N - 40)) ] && pass "the server sees the client's SYN with MSS $syn_mss (= $N - 40)" ||
  fail "SYN MSS on the server's side: ${syn_mss:-none} (bytes $bytes), want $((N - 40))"

# ---- 3. a black hole appearing mid-life ------------------------------------------------------
pmtu_lab_underlay 1333; N2=$((1333 - PMTU_OUTER_OVERHEAD))
t0=$(live_now_ms)
if wait_for 90 confirmed_at $N2; then
  pass "underlay shrank 1400 -> 1333 while complete: path MTU $(stat pmtu), clamp $(stat mss4) after $(( $(live_now_ms) - t0 )) ms"
else
  fail "after the underlay shrank: path MTU $(stat pmtu) (state $(stat pmtu_state)), want $N2"
fi
lab_tunshim_logged 'black hole|stopped passing' && pass "the daemon logged the black hole" || fail "no black-hole log line"
lab_tunshim_stop

# ---- 4. set_interface_mtu, and the interface coming back ----------------------------------------
pmtu_lab_underlay 1400
conf "set_interface_mtu = true
probe_target = \"$LAB_S_TUN\""
lab_tunshim_start
mtu_is() { [ "$(ip -n "$(ns client)" -o link show ppp0 2>/dev/null | sed -n 's/.* mtu \([0-9]*\) .*/\1/p')" = "$1" ]; }
wait_for 30 mtu_is $N && pass "set_interface_mtu: ppp0 MTU is now $N" ||
  fail "ppp0 MTU $(ip -n "$(ns client)" -o link show ppp0 | grep -o 'mtu [0-9]*'), want $N"
live_take_over_tunnel 5560   # kills the VPN (ppp0 goes) and starts it again: MTU 1500
wait_for 30 mtu_is $N && pass "ppp0 re-created: searched again and MTU $N written again" ||
  fail "after ppp0 came back: $(ip -n "$(ns client)" -o link show ppp0 | grep -o 'mtu [0-9]*'), want $N"
lab_tunshim_logged 'path-MTU search stopped \(interface gone\)' && pass "the daemon saw ppp0 go" || fail "no 'interface gone' line"
got=$(lab_download client "$LAB_S_TUN" 500000 30)
[ "$got" = 500000 ] && pass "transfer after the interface came back" || fail "transfer after re-creation: $got bytes"
# A reload that changes the tunnel's settings must not take the MTU tunshim wrote for the
# operator's: with set_interface_mtu kept, ppp0 stays at $N; turned off, it goes back to 1500.
conf "set_interface_mtu = true
reprobe_interval = \"5m\"
probe_target = \"$LAB_S_TUN\""
reload_mark=$(wc -l <"$LAB_TUNSHIM_LOG")
since_reload() { tail -n "+$((reload_mark + 1))" "$LAB_TUNSHIM_LOG" | grep -E -- "$1" >/dev/null; }
kill -HUP "$LAB_TUNSHIM_PID"
wait_for 10 since_reload 'reload applied' || fail "no 'reload applied' after the first SIGHUP"
# SIGUSR1's summary names the original: without the hand-over from the replaced search it
# would read $N (what tunshim wrote), not 1500.
if wait_for 30 searched && mtu_is $N && ! since_reload "interface MTU $N -> [0-9]+ \(not by tunshim\)" &&
   kill -USR1 "$LAB_TUNSHIM_PID" && wait_for 5 since_reload "interface MTU $N \(original 1500\)"; then
  pass "reload with changed settings: searched again, ppp0 MTU still $N, original still 1500"
else
  fail "after reload: ppp0 $(ip -n "$(ns client)" -o link show ppp0 | grep -o 'mtu [0-9]*'), state $(stat pmtu_state)"
fi
conf "probe_target = \"$LAB_S_TUN\""
kill -HUP "$LAB_TUNSHIM_PID"
wait_for 10 mtu_is 1500 && pass "reload with set_interface_mtu off: ppp0 MTU back to 1500 (the value before tunshim)" ||
  fail "set_interface_mtu turned off: ppp0 $(ip -n "$(ns client)" -o link show ppp0 | grep -o 'mtu [0-9]*'), want 1500"
wait_for 30 confirmed_at $N && pass "and the search still finds $N" || fail "after set_interface_mtu off: path MTU $(stat pmtu)"
lab_tunshim_stop

# ---- 5. the guard does not stop our own probes -------------------------------------------------
pmtu_lab_underlay 1400
ip -n "$(ns client)" link set ppp0 mtu 1500   # section 4's daemon left it at its path MTU
conf "reprobe_interval = \"1m\"
probe_target = \"$LAB_S_TUN\""  # ppp0 lost its peer address when section 4 re-created it
lab_tunshim_start
wait_for 30 confirmed_at $N || fail "guard on: no path MTU $N (got $(stat pmtu))"
guard_rule() { inns client iptables-save -t mangle | grep -q -- "--length $((N + 1)):65535"; }
wait_for 10 guard_rule && pass "guard rule installed for packets above $N" || fail "no guard rule above $N"
pmtu_lab_underlay 1437; N3=$((1437 - PMTU_OUTER_OVERHEAD))
t0=$(live_now_ms)
if wait_for 90 confirmed_at $N3; then
  pass "the path grew 1372 -> $N3: the periodic upward search found it with the guard on ($(( $(live_now_ms) - t0 )) ms, reprobe_interval 1m / $TIMERS)"
else
  fail "the path grew to $N3 but the daemon still says $(stat pmtu) (state $(stat pmtu_state)) after 90 s"
fi
lab_tunshim_stop

# ---- 6. a silent target ---------------------------------------------------------------------------
inns server nft -f - <<'NFT'
table inet silent {
  chain input {
    type filter hook input priority -10; policy accept;
    iifname "tun0" icmp type echo-request drop
  }
}
NFT
on_exit "ip netns exec $(ns server) nft delete table inet silent 2>/dev/null"
conf "probe_target = \"$LAB_S_TUN\""
lab_tunshim_start
is_error() { [ "$(stat pmtu_state)" = error ]; }
if wait_for 20 is_error; then
  pass "target silent: state error, path MTU kept at the fallback $(stat pmtu), clamp $(stat mss4)"
  [ "$(stat mss4)" = 1160 ] && [ "$(stat pmtu_confirmed)" = false ] && pass "fallback MSS 1160 in effect, nothing concluded from silence" ||
    fail "silent target: clamp $(stat mss4), confirmed $(stat pmtu_confirmed)"
else
  fail "target silent: state $(stat pmtu_state) after 20 s"
fi
lab_tunshim_logged 'answers no probes' && pass "the log says the target answers nothing" || fail "no log line for the silent target"
inns server nft delete table inet silent
if wait_for 20 searched; then pass "target answers again: search completed, path MTU $(stat pmtu)"
else fail "after the target answered again: state $(stat pmtu_state)"; fi
lab_tunshim_stop
finish
