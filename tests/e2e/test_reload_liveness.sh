#!/bin/bash
# A reload while the tunnel is down (tests/e2e/lab.sh's tunnel lab, the tunnel silently
# dead): the tunnel stays down — no "-> up" in the log, `tunshim stats` keeps saying down —
# and on_down continues its backoff where it was (the next run is attempt N+1, not 1), even
# though the reload changed the tunnel's liveness and MSS settings. Healing the path then
# brings it up exactly as without the reload.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lab.sh"
. "$(dirname "$0")/live_lab.sh"

lab_up
lab_server_start
live_take_over_tunnel 5555
HOOK="$E2E_TMP/on_down.sh"
live_record_script "$HOOK"
conf() {
  live_conf "keepalive = \"idle\"
keepalive_interval = \"$1\"
keepalive_target = \"$LAB_S_TUN\"
down_after_misses = 2
on_down = [[\"$HOOK\"]]
hook_timeout = \"5s\"
backoff_max = \"8s\""
  printf '[global]\nlog_level = "info"\ncontrol_socket = "%s"\nstats_listen = "off"\n' "$E2E_TMP/ctl.sock" \
    >"$E2E_TMP/g" && sed '/^\[\[tunnel\]\]/,$!d' "$LAB_TUNSHIM_CONF" >>"$E2E_TMP/g" && mv "$E2E_TMP/g" "$LAB_TUNSHIM_CONF"
}
conf 1s
lab_tunshim_start
state() {
  "$TUNSHIM_BIN" stats --json --socket "$E2E_TMP/ctl.sock" 2>/dev/null |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)["tunnels"][0]["state"])' 2>/dev/null || true
}
runs() { [ -f "$HOOK.log" ] && wc -l <"$HOOK.log" || echo 0; }

wait_for 10 sh -c "[ \"\$($TUNSHIM_BIN stats --json --socket $E2E_TMP/ctl.sock 2>/dev/null | grep -c '\"up\"')\" -gt 0 ]" ||
  log "stats did not say up within 10 s: $(state)"
live_drop_port 5555
if wait_for 30 sh -c "[ \$(wc -l <'$HOOK.log' 2>/dev/null || echo 0) -ge 3 ]"; then
  pass "tunnel dead: on_down ran 3 times ($(lab_tunshim_logged 'running on_down \(attempt 3' && echo 'attempt 3 logged'))"
else
  fail "on_down ran $(runs) times within 30 s"
fi
before=$(state)
[ "$before" = down ] && pass "before the reload: stats say down" || fail "before the reload: stats say '$before'"

# Reload with changed liveness and clamp settings; count log lines from here.
pos=$(wc -l <"$LAB_TUNSHIM_LOG")
# The last attempt the daemon started before the reload (its own log, not the hook's, so a
# run starting right now is counted on the right side of the reload).
n_before=$(head -n "$pos" "$LAB_TUNSHIM_LOG" | grep -o 'running on_down (attempt [0-9]*' | tail -1 | grep -o '[0-9]*$')
conf 2s
sed -i 's/^mss = 1300/mss = 1280/' "$LAB_TUNSHIM_CONF"
kill -HUP "$LAB_TUNSHIM_PID"
wait_for 5 sh -c "tail -n +$((pos + 1)) '$LAB_TUNSHIM_LOG' | grep -q 'reload applied'" ||
  fail "no 'reload applied' within 5 s"
after=$(state)
[ "$after" = down ] && pass "right after the reload: stats still say down" || fail "right after the reload: stats say '$after'"
# The next on_down run continues the backoff: attempt n_before + 1.
want=$((n_before + 1))
if wait_for 20 sh -c "tail -n +$((pos + 1)) '$LAB_TUNSHIM_LOG' | grep -q 'running on_down (attempt'"; then
  got=$(tail -n "+$((pos + 1))" "$LAB_TUNSHIM_LOG" | grep -o 'running on_down (attempt [0-9]*' | head -1 | grep -o '[0-9]*$')
  [ "$got" = "$want" ] && pass "after the reload the next on_down run is attempt $got (backoff kept)" ||
    fail "after the reload the next on_down run is attempt $got, want $want"
else
  fail "no on_down run within 20 s after the reload"
fi
ups=$(tail -n "+$((pos + 1))" "$LAB_TUNSHIM_LOG" | grep -c 'tunnel ppp0: .* -> up' || true)
[ "$ups" = 0 ] && pass "the reload logged no transition to up" || fail "the reload logged $ups transition(s) to up"

# Heal: up again, as without a reload.
live_drop_clear
if wait_for 15 sh -c "[ \"\$($TUNSHIM_BIN stats --json --socket $E2E_TMP/ctl.sock 2>/dev/null | grep -o '\"state\": *\"[a-z]*\"' | head -1 | grep -o '[a-z]*\"\$' | tr -d '\"')\" = up ]"; then
  pass "path healed: up again"
else
  fail "path healed: state '$(state)' after 15 s"
fi
lab_tunshim_stop TERM
finish
