#!/bin/bash
# Liveness and recovery hooks in the tunnel lab (tests/e2e/lab.sh):
#  1. silent death: the router starts dropping the tunnel's UDP while ppp0 stays up;
#     tunshim (keepalive 2 s, 3 misses) must declare it down within interval x misses +
#     one interval, run on_down (which restarts the VPN on a new port), see it come back,
#     run on_up, and a transfer must succeed afterwards. Prints failure -> transfer time.
#  2. interface deleted and re-created: the client end of the VPN is killed (ppp0 goes);
#     state absent, on_down restarts it, absent -> up, on_up, keepalive replies again.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lab.sh"
. "$(dirname "$0")/live_lab.sh"

INTERVAL=2; MISSES=3
BOUND_MS=$(( (INTERVAL * MISSES + INTERVAL) * 1000 ))

lab_up
lab_server_start
live_take_over_tunnel 5555
RESTART="$E2E_TMP/restart.sh"; ONUP="$E2E_TMP/onup.sh"
live_restart_script "$RESTART"
live_record_script "$ONUP"
live_conf "keepalive = \"idle\"
keepalive_interval = \"${INTERVAL}s\"
keepalive_target = \"$LAB_S_TUN\"
down_after_misses = $MISSES
on_down = [[\"$RESTART\"]]
on_up = [[\"$ONUP\"]]
hook_timeout = \"20s\"
backoff_max = \"10s\""
live_require_keys
lab_tunshim_start

# Keepalives answered before anything fails (idle tunnel: one echo per interval).
if wait_for 8 sh -c "kill -USR1 $LAB_TUNSHIM_PID; sleep 0.3; tail -n +$((LAB_TUNSHIM_LOGPOS + 1)) $LAB_TUNSHIM_LOG | grep 'tunnel ppp0: state up' | tail -1 | grep -q 'replies=[1-9]'"; then
  pass "idle tunnel: keepalive echoes answered ($(live_stats | grep -o 'keepalive sent=[0-9]* replies=[0-9]*'))"
else
  fail "no keepalive reply on an idle tunnel: $(live_stats)"
fi
n=$(lab_download client "$LAB_S_TUN" 100000 5)
[ "$n" = 100000 ] && pass "transfer before the failure: $n bytes" || fail "transfer before the failure: $n bytes"

# ---- 1. silent death ---------------------------------------------------------------------
t0=$(live_now_ms)
live_drop_port 5555
log "router drops the tunnel's UDP (port 5555) from now on; ppp0 stays up"
if wait_for 20 lab_tunshim_logged 'tunnel ppp0: (up|suspect) -> down'; then
  t_down=$(( $(live_now_ms) - t0 ))
  [ "$t_down" -le $((BOUND_MS + 500)) ] \
    && pass "declared down after ${t_down} ms (bound: interval x misses + interval = ${BOUND_MS} ms)" \
    || fail "declared down after ${t_down} ms, bound ${BOUND_MS} ms"
else
  fail "not declared down within 20 s"
fi
lab_tunshim_logged 'tunnel ppp0: up -> suspect \(echo unanswered' && pass "suspect first (echo unanswered)" \
  || fail "no up -> suspect transition logged"
wait_for 10 test -s "$RESTART.log" && pass "on_down ran: $(head -1 "$RESTART.log")" || fail "on_down did not run"
grep -q "event=down iface=ppp0 peer=$LAB_S_TUN pmtu=1500 down=[0-9]" "$RESTART.log" \
  && pass "on_down environment (TUNSHIM_EVENT/INTERFACE/PEER/PMTU/DOWN_SECONDS)" \
  || fail "on_down environment: $(cat "$RESTART.log")"
lab_tunshim_logged 'hook ppp0 on_down: restarting the tunnel' && pass "hook output in tunshim's log" \
  || fail "hook output not logged"
if wait_for 20 lab_tunshim_logged 'tunnel ppp0: up again after'; then
  pass "tunnel up again ($(tail -n +$((LAB_TUNSHIM_LOGPOS + 1)) "$LAB_TUNSHIM_LOG" | grep -o 'up again after [0-9.]* s' | head -1))"
else
  fail "tunnel did not come back up"
fi
wait_for 10 test -s "$ONUP.log" && pass "on_up ran: $(head -1 "$ONUP.log")" || fail "on_up did not run"
grep -q "event=up iface=ppp0" "$ONUP.log" || fail "on_up environment: $(cat "$ONUP.log" 2>/dev/null)"
ok=0
for _ in $(seq 1 60); do
  n=$(lab_download client "$LAB_S_TUN" 100000 2)
  if [ "$n" = 100000 ]; then ok=1; break; fi
  sleep 0.3
done
t_ok=$(( $(live_now_ms) - t0 ))
[ "$ok" = 1 ] && pass "first successful transfer ${t_ok} ms after the failure (detection ${t_down:-?} ms)" \
  || fail "no successful transfer within 60 tries after recovery"
lab_tunshim_logged 'hook ppp0 on_down: .* finished: ok \(exit status 0' && pass "on_down exit status logged (ok)" \
  || fail "on_down result not logged"
echo "RESULT silent_death detect_ms=${t_down:-NA} bound_ms=$BOUND_MS transfer_ms=$t_ok"

# ---- 2. interface deleted and re-created -------------------------------------------------
live_drop_clear
sleep 1
: >"$RESTART.log"; : >"$ONUP.log"
before=$(live_stats)
replies_before=$(live_field "$before" replies)
LAB_TUNSHIM_MARK=$(wc -l <"$LAB_TUNSHIM_LOG")
t0=$(live_now_ms)
for p in $(ip netns pids "$(ns client)"); do
  [ "$(cat "/proc/$p/comm" 2>/dev/null)" = socat ] && kill -9 "$p"
done
log "client end of the VPN killed: ppp0 is deleted"
since() { tail -n "+$((LAB_TUNSHIM_MARK + 1))" "$LAB_TUNSHIM_LOG" | grep -E -- "$1" >/dev/null; }
wait_for 5 since 'tunnel ppp0: (up|suspect|down) -> absent \(interface gone' \
  && pass "state absent after $(( $(live_now_ms) - t0 )) ms (rtnetlink, no polling)" || fail "absent not logged"
wait_for 10 test -s "$RESTART.log" && pass "on_down ran for the deleted interface" || fail "on_down did not run after deletion"
wait_for 15 since 'tunnel ppp0: absent -> up \(interface appeared' \
  && pass "re-created interface: absent -> up after $(( $(live_now_ms) - t0 )) ms" || fail "absent -> up not logged"
since 'tunnel ppp0: interface is back \(index [0-9]+' && pass "new ifindex picked up" || fail "interface return not logged"
wait_for 10 test -s "$ONUP.log" && pass "on_up ran after the re-creation" || fail "on_up did not run after re-creation"
if wait_for 10 sh -c "kill -USR1 $LAB_TUNSHIM_PID; sleep 0.3; tail -n +$((LAB_TUNSHIM_MARK + 1)) $LAB_TUNSHIM_LOG | grep 'tunnel ppp0: state up' | tail -1 | grep -Eq 'replies=([0-9]+)' && [ \$(tail -n +$((LAB_TUNSHIM_MARK + 1)) $LAB_TUNSHIM_LOG | grep 'tunnel ppp0: state up' | tail -1 | grep -o 'replies=[0-9]*' | cut -d= -f2) -gt $replies_before ]"; then
  pass "keepalive resumed on the new interface (replies $replies_before -> $(live_field "$(live_stats)" replies))"
else
  fail "no keepalive reply after the re-creation: $(live_stats)"
fi
n=$(lab_download client "$LAB_S_TUN" 100000 5)
[ "$n" = 100000 ] && pass "transfer after the re-creation: $n bytes" || fail "transfer after the re-creation: $n bytes"
s=$(live_stats)
log "counters: $s"
[ "$(live_field "$s" reconnects)" -ge 2 ] && pass "reconnects counted ($(live_field "$s" reconnects))" || fail "reconnects: $s"

lab_tunshim_stop
[ -z "$(lab_tunshim_rules | grep -v '^0$')" ] && pass "rules removed at exit" || fail "rules left behind"
finish
