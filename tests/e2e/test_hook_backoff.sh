#!/bin/bash
# Issue 5's recovery rules on the real daemon in the tunnel lab (tests/e2e/lab.sh):
#  1. The tunnel dies silently (the router drops its UDP; ppp0 stays up) and STAYS dead:
#     on_down runs at once, then again 1 s, 2 s, 4 s … after the previous run finished,
#     each delay shortened by at most 25 % of jitter (backoff.h: [0.75 d, d]), capped at
#     backoff_max (4 s here: two capped delays show the cap, uncapped they would be 8 and
#     16 s). Run 3 hangs and ignores SIGTERM: at hook_timeout it gets SIGTERM, 2 s later
#     SIGKILL (with its child), is counted as a timeout, and run 4 still follows.
#     No two runs overlap (timestamps, and a lock each run takes without waiting).
#  2. Run 6 heals the path (removes the drop, exits 0): tunshim declares the tunnel up,
#     cancels the run it had scheduled, and runs on_up exactly once, after on_down ended.
#  3. A flap: the tunnel goes down again after being up only a few seconds (less than
#     backoff.h's reset_after, 5 min, which is not configurable): the backoff keeps
#     growing, so the first run of the new outage waits the capped delay instead of
#     starting at once.
#  4. Only with TUNSHIM_E2E_SLOW=1 (adds ~40 s): up for more than reset_after, then down
#     again: the backoff has reset, so on_down runs at once and then after ~1 s. That run's
#     daemon has the test-only TUNSHIM_TEST_TIMERS=10 (proxy/test_knobs.h): reset_after is
#     30 s instead of 5 min, still far above the flap of 3. (a few seconds up).
# Every run checks the hooks' environment (TUNSHIM_INTERFACE/EVENT/PEER/PMTU, DOWN_SECONDS
# growing with the outage), and tunshim's counters (stats --json, /metrics, SIGUSR1 line)
# against what the hook log shows. Prints the measured delays (docs/PERFORMANCE.md figures).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lab.sh"
. "$(dirname "$0")/live_lab.sh"

CAP_S=4            # backoff_max
TIMEOUT_S=2        # hook_timeout; SIGKILL follows SIGTERM after 2 s (hooks.h kill_grace_ms)
GRACE_S=2
INITIAL_S=1        # tunnel.cpp: the daemon's first backoff delay
JITTER_PCT=25      # backoff.h: jitter takes away at most 25 % of a delay
TOL_LO=50          # ms: log and hook clocks are read at slightly different moments
TOL_HI=${TUNSHIM_E2E_SCHED_TOL_MS:-400}  # ms: timer, fork/exec of the hook, a busy shared box
STATS_PORT=9481
SLOW=${TUNSHIM_E2E_SLOW:-0}
RESET_S=300        # backoff.h: reset_after
if [ "$SLOW" = 1 ]; then export TUNSHIM_TEST_TIMERS=10; RESET_S=30; fi

require_cmd flock date
lab_up
lab_server_start
DOWN="$E2E_TMP/on_down.sh"; UP="$E2E_TMP/on_up.sh"
HLOG="$E2E_TMP/hooks.log"; PLAN="$E2E_TMP/plan"; LOCK="$E2E_TMP/hook.lock"
SOCK="$E2E_TMP/ctl.sock"
: >"$HLOG"

# What on_down run N does is line N of the plan: fail (exit 1 at once: the tunnel is still
# dead), hang (ignore SIGTERM until SIGKILL), heal (the path carries again; exit 0).
PLAN_FAST=(fail fail hang fail fail heal heal)
PLAN_SLOW=(fail heal)
printf '%s\n' "${PLAN_FAST[@]}" >"$PLAN"
[ "$SLOW" != 1 ] || printf '%s\n' "${PLAN_SLOW[@]}" >>"$PLAN"

# Both hooks take the same lock without waiting: "overlap=1" in the log would mean two
# hook runs of this tunnel at the same time. The lock dies with the process (even SIGKILL).
cat >"$DOWN" <<EOF
#!/bin/bash
set -u
exec 9>>"$LOCK"
overlap=0; flock -n 9 || overlap=1
n=\$((\$(grep -c '^start ' "$HLOG") + 1))
act=\$(sed -n "\${n}p" "$PLAN"); act=\${act:-fail}
echo "start n=\$n t=\$(date +%s%3N) pid=\$\$ act=\$act overlap=\$overlap event=\${TUNSHIM_EVENT-unset} iface=\${TUNSHIM_INTERFACE-unset} peer=\${TUNSHIM_PEER-unset} pmtu=\${TUNSHIM_PMTU-unset} down=\${TUNSHIM_DOWN_SECONDS-unset}" >>"$HLOG"
case \$act in
  hang)
    echo "run \$n: hanging (ignores SIGTERM)"
    trap 'echo "term n=\$n t=\$(date +%s%3N)" >>"$HLOG"' TERM
    while :; do
      sleep 30 &
      echo "child n=\$n pid=\$!" >>"$HLOG"
      wait \$!
    done ;;
  heal)
    ip netns exec "$(ns router)" nft delete table inet live_drop 2>/dev/null
    echo "run \$n: tunnel restarted"
    echo "end n=\$n t=\$(date +%s%3N) rc=0" >>"$HLOG"
    exit 0 ;;
  *)
    echo "run \$n: tunnel still dead"
    echo "end n=\$n t=\$(date +%s%3N) rc=1" >>"$HLOG"
    exit 1 ;;
esac
EOF
cat >"$UP" <<EOF
#!/bin/bash
set -u
exec 9>>"$LOCK"
overlap=0; flock -n 9 || overlap=1
echo "up t=\$(date +%s%3N) overlap=\$overlap event=\${TUNSHIM_EVENT-unset} iface=\${TUNSHIM_INTERFACE-unset} peer=\${TUNSHIM_PEER-unset} pmtu=\${TUNSHIM_PMTU-unset} down=\${TUNSHIM_DOWN_SECONDS-unset}" >>"$HLOG"
sleep 0.2
echo "upend t=\$(date +%s%3N)" >>"$HLOG"
EOF
chmod +x "$DOWN" "$UP"

cat >"$LAB_TUNSHIM_CONF" <<EOF
[global]
log_level = "info"
stats_listen = "127.0.0.1:$STATS_PORT"
control_socket = "$SOCK"

[[tunnel]]
interface = "ppp0"
mss = 1300
keepalive = "idle"
keepalive_interval = "1s"
keepalive_target = "$LAB_S_TUN"
down_after_misses = 3
on_down = [["$DOWN"]]
on_up = [["$UP"]]
hook_timeout = "${TIMEOUT_S}s"
backoff_max = "${CAP_S}s"
EOF
live_require_keys
lab_tunshim_start

# --- helpers over the hook log and tunshim's log -------------------------------------------
# hfield KIND N FIELD: FIELD of the line "KIND n=N …" in the hook log.
# Empty when there is no such line (a run that never started or never ended).
hfield() { awk -v k="$1" -v n="n=$2" -v f="$3=" '$1 == k && $2 == n { for (i = 3; i <= NF; i++) if (index($i, f) == 1) { print substr($i, length(f) + 1); exit } }' "$HLOG"; }
starts() { grep -c '^start ' "$HLOG" || true; }
# tlog_ms REGEX K: epoch ms of the K-th line of this run's tunshim log matching REGEX.
tlog_ms() {
  local line
  line=$(tail -n "+$((LAB_TUNSHIM_LOGPOS + 1))" "$LAB_TUNSHIM_LOG" | grep -E -- "$1" | sed -n "${2}p")
  [ -n "$line" ] || return 1
  date -d "$(printf '%s' "$line" | cut -c1-23)" +%s%3N
}
DOWN_RE='tunnel ppp0: (up|suspect) -> down'
UP_RE='tunnel ppp0: up again after'
FIN_RE="hook ppp0 on_down: $DOWN finished"
# nominal N: the backoff delay (ms) before on_down run N since the last reset (run 1: 0).
nominal() {
  local n=$1 d=$((INITIAL_S * 1000)) i
  [ "$n" -gt 1 ] || { echo 0; return; }
  for ((i = 2; i < n; i++)); do d=$((d * 2)); [ $d -lt $((CAP_S * 1000)) ] || { d=$((CAP_S * 1000)); break; }; done
  [ $d -le $((CAP_S * 1000)) ] || d=$((CAP_S * 1000))
  echo $d
}
# dump: what the hooks and tunshim logged, for a failed run (the directory is removed at exit).
dump() {
  sed 's/^/  hooks: /' "$HLOG"
  tail -n "+$((LAB_TUNSHIM_LOGPOS + 1))" "$LAB_TUNSHIM_LOG" | grep -E 'ppp0' | tail -40 | sed 's/^/  tunshim: /'
}
# bail: the rest of the scenario depends on what did not happen; stop with the summary.
bail() { dump; lab_tunshim_stop; finish; exit 1; }
in_bounds() { [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }
FIGURES=(); DELAYS=()
# check_run N ATTEMPT: run N (the ATTEMPT-th since the last reset) waited its backoff delay
# after the previous run's end (for the first run of an outage: after the down).
check_run() {
  local n=$1 a=$2 ref what d lo hi start got
  start=$(hfield start "$n" t)
  [ -n "$start" ] || { fail "on_down run $n never started"; return; }
  d=$(nominal "$a")
  lo=$((d - d * JITTER_PCT / 100 - TOL_LO)); hi=$((d + TOL_HI))
  if [ "$4" = down ]; then
    ref=$(tlog_ms "$DOWN_RE" "$3") || { fail "run $n: no down line #$3"; return; }; what="after the down"
  else
    ref=$(tlog_ms "$FIN_RE" $((n - 1))) || { fail "run $n: run $((n - 1)) has no 'finished' line"; return; }
    what="after run $((n - 1)) ended"
  fi
  got=$((start - ref)); DELAYS+=("$got")
  local prev_start; prev_start=$(hfield start $((n - 1)) t)
  FIGURES+=("run $n (attempt $a, $(hfield start "$n" act)): ${got} ms $what, nominal $d ms, bounds [$((d - d * JITTER_PCT / 100)), $d] ms${prev_start:+; start-to-start $((start - prev_start)) ms}")
  local capped=""
  [ "$a" -lt 2 ] || [ $((INITIAL_S * 1000 << (a - 2))) -le "$d" ] || capped=", capped: uncapped $((INITIAL_S * 1000 << (a - 2))) ms"
  in_bounds "$got" "$lo" "$hi" && pass "on_down run $n started $got ms $what (attempt $a: delay in [$((d - d * JITTER_PCT / 100)), $d] ms$capped; tolerance -$TOL_LO/+$TOL_HI)" \
    || fail "on_down run $n started $got ms $what; expected [$lo, $hi] (attempt $a, nominal $d ms)"
}

# Keepalives answered before anything fails.
wait_for 8 sh -c "kill -USR1 $LAB_TUNSHIM_PID; sleep 0.3; tail -n +$((LAB_TUNSHIM_LOGPOS + 1)) $LAB_TUNSHIM_LOG | grep 'tunnel ppp0: state up' | tail -1 | grep -q 'replies=[1-9]'" \
  && pass "idle tunnel up, keepalive echoes answered" || fail "no keepalive reply before the failure: $(live_stats)"
T_START=$(live_now_ms)

# ---- 1. dead and staying dead --------------------------------------------------------------
t_drop=$(live_now_ms)
live_drop_port 5555
log "router drops the tunnel's UDP from now on; ppp0 stays up"
wait_for 15 lab_tunshim_logged "$DOWN_RE" && pass "declared down after $(( $(live_now_ms) - t_drop )) ms" \
  || fail "not declared down within 15 s"
# Runs 1..6: 0 + 1 + 2 + (hang 2+2) + 4 + 4 + 4 s ≈ 19 s after the down, plus tolerance.
if ! wait_for 30 grep -q '^end n=6 ' "$HLOG"; then
  fail "on_down run 6 (heal) did not finish within 30 s; $(starts) run(s)"
  check_run 1 1 1 down
  for n in $(seq 2 "$(starts)"); do check_run "$n" "$n" x prev; done
  bail
fi
check_run 1 1 1 down
for n in 2 3 4 5 6; do check_run "$n" "$n" x prev; done

# Run 3: SIGTERM at hook_timeout, SIGKILL after the grace, its child gone too; timeout counted.
s3=$(hfield start 3 t); term3=$(hfield term 3 t)
if [ -n "$term3" ] && in_bounds $((term3 - s3)) $((TIMEOUT_S * 1000 - TOL_LO)) $((TIMEOUT_S * 1000 + TOL_HI)); then
  pass "hanging run 3 got SIGTERM $((term3 - s3)) ms after it started (hook_timeout ${TIMEOUT_S} s)"
else
  fail "hanging run 3: SIGTERM at ${term3:-never} (start $s3)"
fi
fin3=$(tlog_ms "$FIN_RE: timeout" 1 || echo "")
if [ -n "$fin3" ] && in_bounds $((fin3 - s3)) $(((TIMEOUT_S + GRACE_S) * 1000 - TOL_LO)) $(((TIMEOUT_S + GRACE_S) * 1000 + TOL_HI)); then
  pass "run 3 ignored SIGTERM and was killed: finished as timeout $((fin3 - s3)) ms after its start (timeout + ${GRACE_S} s grace)"
else
  fail "run 3 not reported as timeout after ${TIMEOUT_S}+${GRACE_S} s (finish ${fin3:-none}, start $s3)"
fi
lab_tunshim_logged "hook ppp0 on_down: .* ignored SIGTERM; killing it" && lab_tunshim_logged "$FIN_RE: timeout \(exit status 0, signal 9" \
  && pass "tunshim logged SIGTERM ignored, then SIGKILL (signal 9)" || fail "no SIGKILL of run 3 in tunshim's log"
alive=""
for p in $(hfield start 3 pid) $(grep '^child n=3 ' "$HLOG" | grep -o 'pid=[0-9]*' | cut -d= -f2); do
  [ -d "/proc/$p" ] && ! lab_gone "$p" && alive+=" $p"
done
[ -z "$alive" ] && pass "run 3 and its children ($(grep -c '^child n=3 ' "$HLOG") sleep) are gone" || fail "run 3 left processes:$alive"
[ -z "$(hfield end 3 t)" ] && pass "run 3 never finished by itself (killed)" || fail "run 3 ended by itself"

# No overlap: every run started after the previous one ended (or was killed), and none
# found the lock held.
ok=1
for n in 2 3 4 5 6; do
  prev_end=$(hfield end $((n - 1)) t); [ -n "$prev_end" ] || prev_end=$(tlog_ms "$FIN_RE" $((n - 1)) || echo 0)
  [ "$(hfield start "$n" t)" -ge "$prev_end" ] || { ok=0; fail "run $n started before run $((n - 1)) ended"; }
done
grep -q 'overlap=1' "$HLOG" && { ok=0; fail "a hook found another one running: $(grep 'overlap=1' "$HLOG")"; }
[ $ok = 1 ] && pass "on_down runs never overlapped (6 runs, each after the previous ended; lock never held)"

# Environment of every on_down run, and DOWN_SECONDS growing with the outage.
ok=1; prev=-1; downs=""
for n in 1 2 3 4 5 6; do
  l=$(grep -m1 "^start n=$n " "$HLOG" || true)
  printf '%s\n' "$l" | grep -q "event=down iface=ppp0 peer=$LAB_S_TUN pmtu=$LAB_TUN_MTU down=[0-9]" || { ok=0; fail "run $n environment: $l"; }
  d=$(hfield start "$n" down); downs+=" $d"
  el=$(( ($(hfield start "$n" t) - t_drop) / 1000 ))
  # Silent since the last sign of life: at most ~1 s before the drop (idle echoes 1 s apart).
  in_bounds "${d:-x}" $((el - 1)) $((el + 2)) 2>/dev/null || { ok=0; fail "run $n: TUNSHIM_DOWN_SECONDS=$d, ${el} s after the drop"; }
  [ "${d:-0}" -ge "$prev" ] || { ok=0; fail "TUNSHIM_DOWN_SECONDS went back: $prev -> $d"; }
  prev=${d:-0}
done
[ "$(hfield start 6 down)" -gt "$(hfield start 1 down)" ] || { ok=0; fail "TUNSHIM_DOWN_SECONDS did not grow:$downs"; }
[ $ok = 1 ] && pass "on_down environment: event=down iface=ppp0 peer=$LAB_S_TUN pmtu=$LAB_TUN_MTU, DOWN_SECONDS$downs"
lab_tunshim_logged "hook ppp0 on_down: run 5: tunnel still dead" && pass "hook output in tunshim's log" || fail "hook output not logged"

# ---- 2. healed: up, on_up once, the scheduled run cancelled ----------------------------------
wait_for 10 lab_tunshim_logged "$UP_RE" && pass "up again after run 6 healed the path" || fail "not up after the heal"
wait_for 5 grep -q '^upend ' "$HLOG" || fail "on_up did not run"
t_up=$(tlog_ms "$UP_RE" 1 || echo 0)
sleep $((CAP_S + 1))    # past the run the backoff had scheduled when run 6 ended
[ "$(starts)" = 6 ] && pass "no on_down run after the tunnel came up (scheduled run cancelled)" || fail "$(starts) on_down runs, expected 6"
[ "$(grep -c '^up ' "$HLOG")" = 1 ] && pass "on_up ran exactly once" || fail "on_up ran $(grep -c '^up ' "$HLOG") times"
u=$(grep -m1 '^up ' "$HLOG" || true)
upd=$(printf '%s\n' "$u" | grep -o 'down=[0-9]*' | cut -d= -f2 || true)
outage=$(( (t_up - t_drop) / 1000 ))
printf '%s\n' "$u" | grep -q "event=up iface=ppp0 peer=$LAB_S_TUN pmtu=$LAB_TUN_MTU down=[0-9]" && in_bounds "${upd:-x}" $((outage - 1)) $((outage + 2)) 2>/dev/null \
  && pass "on_up environment: event=up iface=ppp0 peer=$LAB_S_TUN pmtu=$LAB_TUN_MTU down=$upd (outage ${outage} s after the drop)" \
  || fail "on_up environment: $u (outage ${outage} s)"
[ "$(printf '%s\n' "$u" | grep -o 't=[0-9]*' | cut -d= -f2)" -ge "$(hfield end 6 t)" ] && pass "on_up started after on_down run 6 ended" \
  || fail "on_up overlapped on_down run 6"
n=$(lab_download client "$LAB_S_TUN" 100000 5)
[ "$n" = 100000 ] && pass "transfer after the recovery: $n bytes" || fail "transfer after the recovery: $n bytes"

# ---- 3. a flap: down again after a short up, the backoff keeps growing ----------------------
up_for=$(( $(live_now_ms) - t_up ))
live_drop_port 5555
log "dropped again after ${up_for} ms up (reset_after is $RESET_S s)"
wait_for 15 sh -c "[ \$(tail -n +$((LAB_TUNSHIM_LOGPOS + 1)) $LAB_TUNSHIM_LOG | grep -Ec '$DOWN_RE') -ge 2 ]" \
  && pass "declared down again" || fail "second outage not detected"
wait_for $((CAP_S + 5)) grep -q '^end n=7 ' "$HLOG" || { fail "on_down run 7 did not run"; bail; }
check_run 7 7 2 down
wait_for 10 sh -c "[ \$(grep -c '^upend ' $HLOG) -ge 2 ]" && pass "up again after run 7, on_up ran again" || fail "no second recovery"
EXP_UP=2

# ---- 4. (slow) up for longer than reset_after: the backoff starts over ----------------------
if [ "$SLOW" = 1 ]; then
  t_up2=$(tlog_ms "$UP_RE" 2 || echo 0)
  wait_s=$(( RESET_S + 2 - ($(live_now_ms) - t_up2) / 1000 ))
  log "slow mode: staying up for another ${wait_s} s (reset_after $RESET_S s)"
  sleep "$wait_s"
  live_drop_port 5555
  wait_for 15 sh -c "[ \$(tail -n +$((LAB_TUNSHIM_LOGPOS + 1)) $LAB_TUNSHIM_LOG | grep -Ec '$DOWN_RE') -ge 3 ]" \
    && pass "declared down after $(( ($(live_now_ms) - t_up2) / 1000 )) s up" || fail "third outage not detected"
  wait_for 15 grep -q '^end n=9 ' "$HLOG" || { fail "on_down run 9 did not run"; bail; }
  check_run 8 1 3 down
  check_run 9 2 x prev
  wait_for 10 sh -c "[ \$(grep -c '^upend ' $HLOG) -ge 3 ]" && pass "up again after run 9" || fail "no third recovery"
  EXP_UP=3
else
  log "NOTE: the reset after 300 s up (backoff.h reset_after) is checked only with TUNSHIM_E2E_SLOW=1 (30 s up there, at TUNSHIM_TEST_TIMERS=10)"
fi

# ---- counters against the hook log ---------------------------------------------------------
sleep 0.5
runs=$(starts)
h_ok=$(grep -c '^end n=[0-9]* t=[0-9]* rc=0' "$HLOG" || true)
h_failed=$(grep -c '^end n=[0-9]* t=[0-9]* rc=1' "$HLOG" || true)
h_killed=$(for n in $(seq 1 "$runs"); do [ -n "$(hfield end "$n" t)" ] || echo "$n"; done | wc -l)
h_up=$(grep -c '^upend ' "$HLOG" || true)
n_down=$(live_count "$DOWN_RE")
log "hook log: $runs on_down runs (ok $h_ok, failed $h_failed, killed $h_killed), on_up $h_up; $n_down downs"
[ "$h_up" = "$EXP_UP" ] && [ "$n_down" = "$EXP_UP" ] && pass "$n_down outages, $h_up on_up runs (one per recovery)" \
  || fail "outages $n_down, on_up runs $h_up, expected $EXP_UP each"
"$TUNSHIM_BIN" stats --json --socket "$SOCK" >"$E2E_TMP/stats.json" 2>&1 || fail "tunshim stats --json: $(cat "$E2E_TMP/stats.json")"
want="$h_ok $h_failed $h_killed 0 $h_up 0 0 0 $n_down $h_up"
got=$("$PY" - "$E2E_TMP/stats.json" <<'EOF' 2>&1
import json, sys
t = [t for t in json.load(open(sys.argv[1]))["tunnels"] if t["interface"] == "ppp0"][0]["metrics"]
h = t["hook_runs_total"]
r = [h[k][x] for k in ("on_down", "on_up") for x in ("ok", "failed", "timeout", "spawn_error")]
print(*[int(v) for v in r + [t["tunnel_state_transitions_total"]["down"], t["reconnects_total"]]])
EOF
) || true
[ "$got" = "$want" ] && pass "stats --json: on_down ok/failed/timeout/spawn_error, on_up ok/failed/timeout/spawn_error, downs, reconnects = $got" \
  || fail "stats --json: $got, the hook log says $want"
inns client curl -sS --max-time 3 "http://127.0.0.1:$STATS_PORT/metrics" >"$E2E_TMP/metrics.txt" 2>&1 || true
mwant="$h_ok $h_failed $h_killed 0 $h_up"
mgot=$(for k in 'hook="on_down",result="ok"' 'hook="on_down",result="failed"' 'hook="on_down",result="timeout"' \
                'hook="on_down",result="spawn_error"' 'hook="on_up",result="ok"'; do
  grep -F "tunshim_hook_runs_total{tunnel=\"ppp0\",$k}" "$E2E_TMP/metrics.txt" | awk '{print $2}' | head -1
done | tr '\n' ' ' || true)
[ "${mgot% }" = "$mwant" ] && pass "/metrics tunshim_hook_runs_total matches: $mwant" \
  || fail "/metrics hook runs: '${mgot% }', the hook log says $mwant ($(grep -c hook_runs "$E2E_TMP/metrics.txt") lines)"
s=$(live_stats || true)
[ "$(live_field "$s" 'on_down ok')" = "$h_ok" ] && printf '%s\n' "$s" | grep -q "on_down ok=$h_ok failed=$h_failed timeout=$h_killed spawn_error=0 on_up ok=$h_up failed=0" \
  && pass "SIGUSR1 line agrees" || fail "SIGUSR1 line: $s"

log "measured on_down delays (lab, keepalive 1 s, backoff_max ${CAP_S} s, hook_timeout ${TIMEOUT_S} s):"
for f in "${FIGURES[@]}"; do log "  $f"; done
echo "RESULT hook_backoff delays_ms=$(IFS=,; echo "${DELAYS[*]}") backoff_max_s=$CAP_S elapsed_s=$(( ($(live_now_ms) - T_START) / 1000 ))"

[ "$E2E_FAILS" = 0 ] || dump
lab_tunshim_stop
[ "$(lab_tunshim_rules)" = 0 ] && pass "rules removed at exit" || fail "rules left behind"
finish
