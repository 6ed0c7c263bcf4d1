#!/usr/bin/env bash
# The daemon's black-hole trigger (docs/DOCTOR.md, "In the daemon") on the black-hole tunnel
# lab (lab.sh + pmtu_lab.sh), eBPF data path, mss = "auto", no test timers:
#  1. the search completes (underlay 1400: path MTU 1372); a paced upload runs across the
#     tunnel without a single re-check (a healthy transfer is no burst);
#  2. mid-upload the underlay shrinks to 1333 and ICMP errors stay dropped: the upload's
#     full-size segments vanish and the kernel sends them again. The eBPF program counts
#     those retransmissions; their burst makes the daemon re-check the path MTU at once:
#     the trigger fires and the re-search (fallback in effect) starts within 2 s of the
#     shrink, not at the next re-confirmation 30 s after the search; it then finds 1305;
#  3. the upload completes (the guard answers curl's too-large segments once the path MTU
#     is lowered), and /metrics-style stats count the retransmissions and one re-check.
# Prints one figures line (docs/PERFORMANCE.md, "The trigger's timing").
export TUNSHIM_DATAPATH=bpf   # this test is about the eBPF path (lib.sh reads it)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lab.sh"
. "$(dirname "$0")/pmtu_lab.sh"
. "$(dirname "$0")/live_lab.sh"
require_root
require_cmd curl tc "$PY"
[ -x "$TUNSHIM_BIN" ] || die "TUNSHIM_BIN=$TUNSHIM_BIN is not executable"
unset TUNSHIM_TEST_TIMERS
SOCK="$E2E_TMP/ctl.sock"
UPLOAD=4000000
RATE=400k   # curl's pace: the upload lasts about 10 s

cat >"$LAB_TUNSHIM_CONF" <<CONF
[global]
log_level = "debug"   # the trigger's own line is a debug line
stats_listen = "off"
control_socket = "$SOCK"
datapath = "bpf"
[[tunnel]]
interface = "ppp0"
mss = "auto"
keepalive = "off"
CONF

# stat KEY: from ppp0's entry in `tunshim stats --json`: pmtu, pmtu_state, retransmits,
# icmp, rechecks.
stat() {
  local e
  case $1 in
    pmtu_state) e="t['pmtu_state']" ;;
    pmtu) e="m.get('pmtu_bytes')" ;;
    retransmits) e="s.get('full_size_retransmit')" ;;
    icmp) e="s.get('icmp_too_big')" ;;
    rechecks) e="m.get('pmtu_symptom_rechecks_total')" ;;
  esac
  e2e_tunnel_json client "$SOCK" "$e"
}
confirmed_at() { [ "$(stat pmtu_state)" = complete ] && [ "$(stat pmtu)" = "$1" ]; }
# log_ms REGEX: the time (unix ms) of the current run's first log line matching REGEX.
log_ms() {
  local line
  line=$(tail -n "+$((LAB_TUNSHIM_LOGPOS + 1))" "$LAB_TUNSHIM_LOG" | grep -E -- "$1" | head -1)
  [ -n "$line" ] || return 1
  date -d "$(cut -c1-23 <<<"$line")" +%s%3N
}

pmtu_lab_up
lab_server_start
pmtu_lab_underlay 1400; N=$((1400 - PMTU_OUTER_OVERHEAD))
log "lab up: ppp0 $LAB_C_TUN peer $LAB_S_TUN, underlay 1400 (path MTU $N), ICMP frag-needed dropped in the router"

# ---- 1. a completed search, a healthy upload ------------------------------------------------
lab_tunshim_start
wait_for 30 confirmed_at "$N" || die "no path MTU $N after start (got $(stat pmtu), state $(stat pmtu_state))"
done_ms=$(live_now_ms)   # the next periodic re-confirmation is 30 s from about now
head -c "$UPLOAD" /dev/urandom >"$E2E_TMP/upload.bin"
inns client curl -sS -g --max-time 60 --limit-rate "$RATE" -H 'Expect:' \
  --data-binary "@$E2E_TMP/upload.bin" "http://$(lab_hostport "$LAB_S_TUN")/sink" \
  >"$E2E_TMP/upload.out" 2>"$E2E_TMP/upload.err" &
up_pid=$!
lab_bg "$up_pid"
sleep 2
[ "$(stat rechecks)" = 0 ] && pass "2 s of a healthy upload: no re-check (full-size retransmissions so far: $(stat retransmits))" ||
  fail "re-checks during a healthy upload: $(stat rechecks)"

# ---- 2. the path shrinks mid-upload ----------------------------------------------------------
N2=$((1333 - PMTU_OUTER_OVERHEAD))
t0=$(live_now_ms)
pmtu_lab_underlay 1333
wait_for 10 lab_tunshim_logged 'black-hole symptoms' || fail "no trigger within 10 s of the shrink (retransmissions counted: $(stat retransmits))"
wait_for 10 lab_tunshim_logged 'black hole: probes of 1372 bytes .*symptoms started' ||
  fail "the re-check did not find the black hole (or its warning does not say the symptoms started it)"
if trig=$(log_ms 'black-hole symptoms') && hole=$(log_ms 'black hole: probes of'); then
  trig_ms=$((trig - t0)); hole_ms=$((hole - t0))
  log "shrink at +$((t0 - done_ms)) ms after the search; trigger +$trig_ms ms, fallback in effect (re-search) +$hole_ms ms"
  [ "$trig_ms" -le 2000 ] && pass "the symptoms' burst triggered a re-check $trig_ms ms after the shrink" ||
    fail "trigger $trig_ms ms after the shrink (want <= 2000)"
  [ "$hole_ms" -le 2000 ] && pass "the re-search started $hole_ms ms after the shrink (the periodic re-confirmation was $(( 30000 - (t0 - done_ms) )) ms away)" ||
    fail "re-search $hole_ms ms after the shrink (want <= 2000)"
fi
if wait_for 20 confirmed_at "$N2"; then
  found_ms=$(( $(live_now_ms) - t0 ))
  pass "path MTU $N2 found, $found_ms ms after the shrink"
else
  fail "after the shrink: path MTU $(stat pmtu) (state $(stat pmtu_state)), want $N2"
fi

# ---- 3. the upload completes; the counters say why ---------------------------------------------
wait_for 60 lab_gone "$up_pid" || fail "the upload still runs 60 s on"
got=$(cat "$E2E_TMP/upload.out" 2>/dev/null)
[ "$got" = "$UPLOAD" ] && pass "the upload that was running when the path shrank completed ($got bytes)" ||
  fail "upload: ${got:-nothing} of $UPLOAD bytes ($(head -c 200 "$E2E_TMP/upload.err"))"
retx=$(stat retransmits); rechecks=$(stat rechecks)
[ "${retx:-0}" -gt 0 ] && pass "tunshim_blackhole_symptoms_total{symptom=\"full_size_retransmit\"} = $retx" ||
  fail "no full-size retransmissions counted ($retx)"
[ "$rechecks" = 1 ] && pass "tunshim_pmtu_symptom_rechecks_total = 1 (the cooldown held back the rest)" ||
  fail "re-checks: $rechecks, want 1"
echo "figures: symptoms trigger ${trig_ms:-?} ms re-search ${hole_ms:-?} ms found $N2 ${found_ms:-?} ms retransmits $retx icmp $(stat icmp)"
lab_tunshim_stop
finish
