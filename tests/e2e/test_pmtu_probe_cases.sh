#!/usr/bin/env bash
# `tunshim probe` on the black-hole tunnel lab (the cases beside the per-MTU search of
# test_pmtu_probe.sh, which alone measures time and so runs alone): IPv6 through the tunnel,
# a path narrower than the base size (a clear error without --min, the exact value with
# --min 576), the text output and the probes as they leave ppp0 (all DF, as many as
# reported), the command's error paths, --max above the interface MTU, and ICMP too-big
# errors that do arrive used as hints (faithful, RFC 792-short, forged). Every result must
# equal the truth established without tunshim (a DF ping of that size passes and one byte
# more does not).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lab.sh"
. "$(dirname "$0")/pmtu_lab.sh"

[ -x "$TUNSHIM_BIN" ] || die "TUNSHIM_BIN=$TUNSHIM_BIN is not executable"
require_cmd timeout tshark

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

# IPv6 through the same tunnel: the inner IPv6 path MTU is the same X - 28.
pmtu_lab_underlay 1400
N6=$((1400 - PMTU_OUTER_OVERHEAD))
if pmtu_truth_check "$N6" "$LAB_S_TUN6"; then
  if probe_json "$E2E_TMP/v6" --target "$LAB_S_TUN6"; then
    got6=$(jget "$E2E_TMP/v6.json" pmtu)
    log "IPv6 underlay 1400: truth $N6 | tunshim $got6 ($(jget "$E2E_TMP/v6.json" rounds) rounds, $(jget "$E2E_TMP/v6.json" probes) probes, $(jget "$E2E_TMP/v6.json" seconds) s)"
    if [ "$got6" -eq "$N6" ] && [ "$(jget "$E2E_TMP/v6.json" mss)" -eq $((N6 - 60)) ]; then
      pass "IPv6: tunshim found $got6 (MSS $((N6 - 60))), exactly the truth"
    else
      fail "IPv6: tunshim found $got6, truth is $N6"
    fi
  else
    fail "IPv6: tunshim probe failed: $(cat "$E2E_TMP/v6.err")"
  fi
else
  fail "IPv6: the truth is not $N6 (ping check)"
fi

# A path narrower than the base size (1200): no size can be confirmed. Without --min the
# probe must say so and fail (exit 1, one line naming the target and --target); with
# --min 576 it must find the exact value.
pmtu_lab_underlay 1100
N=$((1100 - PMTU_OUTER_OVERHEAD))
rc=0; probe_json "$E2E_TMP/small" || rc=$?
if [ "$rc" -eq 1 ] && [ "$(jget "$E2E_TMP/small.json" result)" = error ] &&
   [ "$(wc -l <"$E2E_TMP/small.err")" -eq 1 ] && grep -q -- "did not answer even base-size probes.*--target" "$E2E_TMP/small.err"; then
  pass "path $N below the base: exit 1 and one clear line: $(cat "$E2E_TMP/small.err")"
else
  fail "path $N below the base: rc $rc, stderr: $(cat "$E2E_TMP/small.err")"
fi
if pmtu_truth_check "$N" && probe_json "$E2E_TMP/min" --min 576 &&
   [ "$(jget "$E2E_TMP/min.json" pmtu)" -eq "$N" ]; then
  pass "path $N with --min 576: tunshim found $N ($(jget "$E2E_TMP/min.json" rounds) rounds, $(jget "$E2E_TMP/min.json" seconds) s)"
  log "figures: $(printf '| %s | %s | – | %s (--min 576) | %s / %s | %s | – | – | – |' 1100 "$N" "$N" \
    "$(jget "$E2E_TMP/min.json" rounds)" "$(jget "$E2E_TMP/min.json" probes)" "$(ms_of "$(jget "$E2E_TMP/min.json" seconds)")")"
else
  fail "path $N with --min 576: $(cat "$E2E_TMP/min.json" "$E2E_TMP/min.err" 2>/dev/null)"
fi

# The plain-text line and the command's other error paths; the probes as they left ppp0
# (every one an echo request with DF set, of the sizes the search chose).
pmtu_lab_underlay 1400
cap="$E2E_TMP/probes.pcap"
lab_capture_start client ppp0 "$cap" icmp
out=$(inns client timeout 60 "$TUNSHIM_BIN" probe ppp0 2>&1) || true
lab_capture_stop
n_req=$(tshark -r "$cap" -Y "icmp.type == 8" 2>/dev/null | wc -l)
n_nodf=$(tshark -r "$cap" -Y "icmp.type == 8 && ip.flags.df == 0" 2>/dev/null | wc -l)
sizes=$(tshark -r "$cap" -Y "icmp.type == 8" -T fields -e ip.len 2>/dev/null | sort -un | tr '\n' ' ')
said=$(sed -n 's/.* rounds, \([0-9]*\) probes,.*/\1/p' <<<"$out")
if [ "$n_req" -gt 0 ] && [ "$n_req" = "$said" ] && [ "$n_nodf" -eq 0 ]; then
  pass "$n_req probes left ppp0 (as many as reported), all with DF set; sizes: $sizes"
else
  fail "probes leaving ppp0: $n_req (reported: ${said:-?}), $n_nodf without DF"
fi
if [[ $out =~ ^ppp0:\ path\ MTU\ 1372\ \(MSS\ 1332\ IPv4\),\ [0-9]+\ probe\ rounds,\ [0-9]+\ probes,\ [0-9.]+\ s\;\ target\ 172\.30\.0\.2 ]]; then
  pass "text output: $out"
else
  fail "text output: $out"
fi
rc=0; out=$(inns client "$TUNSHIM_BIN" probe nosuch0 2>&1) || rc=$?
if [ "$rc" -eq 1 ] && [[ $out == "tunshim probe: nosuch0: no such interface"* ]]; then pass "missing interface: $out"
else fail "missing interface: rc $rc: $out"; fi
rc=0; out=$(inns server "$TUNSHIM_BIN" probe tun0 2>&1) || rc=$?
if [ "$rc" -eq 1 ] && [[ $out == *"no point-to-point peer address; give --target"* ]]; then pass "no peer: $out"
else fail "no peer: rc $rc: $out"; fi

# --max above the interface MTU: the kernel refuses probes larger than ppp0's 1500
# (EMSGSIZE, counted as send errors, judged too big like lost probes), so the answer is
# still exact and never above what the interface can send.
pmtu_lab_underlay 1528
if probe_json "$E2E_TMP/max" --max 1600 && [ "$(jget "$E2E_TMP/max.json" pmtu)" -eq 1500 ] &&
   [ "$(jget "$E2E_TMP/max.json" upper_bound)" -eq 1600 ] && [ "$(jget "$E2E_TMP/max.json" send_errors)" -gt 0 ]; then
  pass "--max 1600 over a 1500 interface: 1500, $(jget "$E2E_TMP/max.json" send_errors) probes refused by the kernel, $(jget "$E2E_TMP/max.json" rounds) rounds"
else
  fail "--max 1600: $(cat "$E2E_TMP/max.json" "$E2E_TMP/max.err" 2>/dev/null)"
fi

# ICMP too-big errors that do arrive are hints. Here the tunnel carries 1500, but the server
# drops echo requests above 1300 and a responder there answers each with "fragmentation
# needed, MTU 1300" quoting it. A faithful quote (or the RFC 792 minimum, without the nonce)
# must be used; a quote whose nonce is wrong must be ignored. The result is exact every
# time: a hint narrows the search but is re-checked by probes. Last, because the client's
# kernel caches the 1300 these errors announce (tunshim's PROBE sockets ignore that cache,
# ping does not).
PTB_MTU=1300
pmtu_lab_underlay 1528
inns server nft -f - <<EOF
table inet pmtu_ptb {
  chain input {
    type filter hook input priority 0; policy accept;
    icmp type echo-request ip length > $PTB_MTU counter drop
  }
}
EOF
if pmtu_truth_check "$PTB_MTU"; then
  pass "server drops echo above $PTB_MTU: ping passes at $PTB_MTU and not at $((PTB_MTU + 1))"
else
  fail "server drop rule: the truth is not $PTB_MTU"
fi
for mode in none good short badnonce; do
  rlog="$E2E_TMP/ptb-$mode.log"
  rpid=""
  if [ "$mode" != none ]; then
    lab_spawn server "$rlog" "$PY" "$LAB_DIR/pmtu_ptb_responder.py" tun0 "$PTB_MTU" "$mode"
    rpid=$LAB_PID
    wait_for 5 grep -q ready "$rlog" || die "PTB responder did not start: $(cat "$rlog")"
  fi
  f="$E2E_TMP/ptb-$mode"
  rc=0; probe_json "$f" -v || rc=$?
  if [ -n "$rpid" ]; then kill "$rpid"; wait_for 5 lab_gone "$rpid" || true; fi
  if [ "$rc" -ne 0 ]; then
    fail "PTB $mode: tunshim probe failed: $(tail -3 "$f.err")"
    continue
  fi
  got=$(jget "$f.json" pmtu); hints=$(jget "$f.json" ptb_hints); ignored=$(jget "$f.json" ignored)
  sent=0; [ "$mode" = none ] || sent=$(grep -c '^frag-needed' "$rlog" || true)
  log "PTB $mode: tunshim $got, $(jget "$f.json" rounds) rounds, $(jget "$f.json" probes) probes, $(jget "$f.json" seconds) s; errors sent $sent, used as hints $hints, datagrams ignored $ignored"
  if [ "$got" -eq "$PTB_MTU" ]; then pass "PTB $mode: exact ($got)"; else fail "PTB $mode: found $got, truth $PTB_MTU"; fi
  case $mode in
    none)
      if [ "$hints" -eq 0 ]; then pass "PTB none: no hint without errors"; else fail "PTB none: $hints hints from nowhere"; fi ;;
    good|short)
      if [ "$sent" -gt 0 ] && [ "$hints" -gt 0 ] && grep -q "too-big hint: MTU $PTB_MTU" "$f.err"; then
        pass "PTB $mode: $hints of $sent errors used as hints (MTU $PTB_MTU)"
      else
        fail "PTB $mode: $hints hints from $sent errors"
      fi ;;
    badnonce)
      if [ "$sent" -gt 0 ] && [ "$hints" -eq 0 ] && [ "$ignored" -ge "$sent" ]; then
        pass "PTB badnonce: all $sent forged errors ignored"
      else
        fail "PTB badnonce: $hints hints, $ignored ignored, from $sent forged errors"
      fi ;;
  esac
done
inns server nft delete table inet pmtu_ptb

finish
