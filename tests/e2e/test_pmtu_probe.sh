#!/usr/bin/env bash
# `tunshim probe` on the black-hole tunnel lab: for several underlay path MTUs (odd ones
# included) the discovered path MTU must equal, exactly, the largest size that really
# crosses the tunnel, with every ICMP "fragmentation needed" dropped, and again, for one of
# them, with 10 % random loss on the underlay (that the real path and sockets cope with loss;
# the many lossy searches over these same paths run on simulated time in
# tests/unit/keepalive/test_pmtu_search.cpp, lab_paths_under_loss_exact). The truth is
# established without tunshim: a DF ping of that size passes and one byte more does not.
# tracepath's answer is printed beside ours. The lossless searches must meet the goal (at
# most 12 rounds, under 3 s), so this test runs alone; the command's other cases (IPv6,
# below the base, errors, --max, too-big hints) are in test_pmtu_probe_cases.sh.
# Prints one figures line per MTU (docs/PERFORMANCE.md, "Path-MTU discovery").
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lab.sh"
. "$(dirname "$0")/pmtu_lab.sh"

[ -x "$TUNSHIM_BIN" ] || die "TUNSHIM_BIN=$TUNSHIM_BIN is not executable"
require_cmd timeout

# Underlay path MTUs; the tunnel's inner path MTU is each minus 28. 1528 carries the whole
# 1500 of ppp0 (every probe passes: the search must still end, at the interface MTU).
UNDERLAYS=(1528 1437 1400 1333 1251)
LOSS_PERCENT=10
LOSS_UNDERLAY=1333   # the one underlay also searched under loss (odd, with a boundary to find)
# Lossless goal from the issue: at most 12 probe rounds and under 3 s.
GOAL_ROUNDS=12
GOAL_MS=3000
# A sanitizer build runs several times slower: there the rounds are the goal, the time a
# figure (the plain build's run asserts both).
e2e_sanitized && GOAL_MS=15000

# probe_json OUT [ARGS…]: runs `tunshim probe ppp0 --json ARGS…` in the client (bounded),
# stores stdout in OUT.json, stderr in OUT.err; returns its exit status.
probe_json() {
  local out=$1; shift
  local rc=0
  inns client timeout 60 "$TUNSHIM_BIN" probe ppp0 --json "$@" >"$out.json" 2>"$out.err" || rc=$?
  return "$rc"
}
# jget FILE KEY: one field of the probe's JSON line.
jget() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
ms_of() { "$PY" -c 'import sys; print(round(float(sys.argv[1]) * 1000))' "$1"; }

pmtu_lab_up
log "lab up: ppp0 $LAB_C_TUN peer $LAB_S_TUN, ICMP frag-needed dropped in the router"

FIGURES=()
for X in "${UNDERLAYS[@]}"; do
  N=$((X - PMTU_OUTER_OVERHEAD))
  pmtu_lab_loss 0
  pmtu_lab_underlay "$X"
  # tracepath's opinion, asked while the truth is checked: it spends seconds waiting for
  # the errors the black hole eats, and its UDP probes do not touch the pings' result.
  inns client timeout 8 tracepath -n -m 1 "$LAB_S_TUN" >"$E2E_TMP/tp$X" 2>&1 &
  tp_pid=$!
  truth=0; pmtu_truth_check "$N" && truth=1
  wait "$tp_pid" || true
  tp=$(sed -n 's/.*pmtu \([0-9]*\).*/\1/p' "$E2E_TMP/tp$X" | tail -1)
  if [ "$truth" = 1 ]; then
    pass "underlay $X: ping -M do passes at $N and not at $((N + 1)) (truth $N)"
  else
    fail "underlay $X: the truth is not $N (ping check); lab broken?"
    continue
  fi

  f="$E2E_TMP/p$X"
  if probe_json "$f"; then
    got=$(jget "$f.json" pmtu); rounds=$(jget "$f.json" rounds); probes=$(jget "$f.json" probes)
    ms=$(ms_of "$(jget "$f.json" seconds)")
    log "underlay $X: truth $N | tunshim $got ($rounds rounds, $probes probes, $ms ms) | tracepath pmtu ${tp:-none}"
    if [ "$got" -eq "$N" ]; then pass "underlay $X: tunshim found $got, exactly the truth"
    else fail "underlay $X: tunshim found $got, truth is $N"; fi
    if [ "$rounds" -le "$GOAL_ROUNDS" ] && [ "$ms" -lt "$GOAL_MS" ]; then
      pass "underlay $X: $rounds rounds <= $GOAL_ROUNDS and $ms ms < $GOAL_MS ms"
    else
      fail "underlay $X: $rounds rounds, $ms ms (goal <= $GOAL_ROUNDS rounds, < $GOAL_MS ms)"
    fi
  else
    fail "underlay $X: tunshim probe failed: $(cat "$f.err")"
    got=-; rounds=-; probes=-; ms=-
  fi

  # Under loss, one search on the real path: it must be exact.
  lgot=-; lrounds=-; lprobes=-; lms=-
  if [ "$X" = "$LOSS_UNDERLAY" ]; then
    pmtu_lab_loss "$LOSS_PERCENT"   # a fresh table: its counter is this run's drops
    fl="$E2E_TMP/l$X"
    if probe_json "$fl"; then
      g=$(jget "$fl.json" pmtu); lrounds=$(jget "$fl.json" rounds); lprobes=$(jget "$fl.json" probes)
      lms=$(ms_of "$(jget "$fl.json" seconds)")
      log "underlay $X, ${LOSS_PERCENT} % loss: tunshim $g ($lrounds rounds, $lprobes probes, $lms ms; router dropped $(pmtu_lab_loss_dropped) packets)"
      if [ "$g" -eq "$N" ]; then
        lgot=$N
        pass "underlay $X with ${LOSS_PERCENT} % loss: tunshim found exactly $N"
      else
        fail "underlay $X with ${LOSS_PERCENT} % loss: tunshim found $g, truth is $N"
      fi
    else
      fail "underlay $X with ${LOSS_PERCENT} % loss: tunshim probe failed: $(cat "$fl.err")"
    fi
  fi
  FIGURES+=("$(printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |' \
    "$X" "$N" "${tp:-none}" "$got" "$rounds / $probes" "$ms" "$lgot" "$lrounds / $lprobes" "$lms")")
done
pmtu_lab_loss 0

log "figures (underlay | truth | tracepath | lossless: pmtu | rounds / probes | ms | ${LOSS_PERCENT} % loss (underlay $LOSS_UNDERLAY only): pmtu | rounds / probes | ms):"
for l in "${FIGURES[@]}"; do log "  $l"; done
finish
