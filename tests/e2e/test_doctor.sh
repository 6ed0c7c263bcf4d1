#!/usr/bin/env bash
# `tunshim doctor` on the black-hole lab (tests/e2e/lab.sh + pmtu_lab.sh: the path carries
# 1400 outer bytes, so 1372 inner; "fragmentation needed" is dropped by the router).
#   1. Without tunshim, a download and an upload stall while `doctor ppp0` runs: it names
#      the black hole with the path MTU the independent ping check finds, says the ICMP
#      errors are filtered, flags the upload's retransmitted full-size segments, the
#      oversize DF packets from the client and the stalled download, and exits 1.
#   2. Its suggested [[tunnel]] block passes check-config; the daemon run with it makes the
#      same download and upload complete.
#   3. With that daemon running, `doctor ppp0` (traffic flowing) says the tunnel is healthy,
#      sees tunshim on the interface, and exits 0.
#   4. `doctor --read` of a capture taken during the stall finds the same symptoms without
#      root tools; missing interface and unreadable file are one clear line each.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lab.sh"
. "$(dirname "$0")/pmtu_lab.sh"

[ -x "$TUNSHIM_BIN" ] || die "TUNSHIM_BIN=$TUNSHIM_BIN is not executable"
SOCK="$E2E_TMP/ctl.sock"
INNER=$((LAB_PATH_MTU - PMTU_OUTER_OVERHEAD))   # 1372
DL=2000000; UL=1000000

pmtu_lab_up
lab_server_start
pmtu_truth_check "$INNER" || die "the lab's path MTU is not $INNER (ping check)"
pass "independent check: DF pings of $INNER bytes cross the tunnel, $((INNER + 1)) do not"

# field FILE EXPR: a Python expression over the doctor's JSON (d), printed.
field() { "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }
check() {   # LABEL FILE EXPR WANT
  local got
  got=$(field "$2" "$3" 2>&1) || got="error: $got"
  if [ "$got" = "$4" ]; then pass "$1 ($3 = $got)"; else fail "$1: $3 = $got, want $4"; fi
}

# --- 1. without tunshim ---------------------------------------------------------------------
# doctor first (its capture opens at once), then the transfers, so the capture holds the
# upload's first transmissions and their retransmissions.
J1="$E2E_TMP/doctor1.json"
lab_capture_start client ppp0 "$E2E_TMP/stall.pcap" "ip or ip6"
ip netns exec "$(ns client)" "$TUNSHIM_BIN" doctor ppp0 --seconds 4 --json --socket "$SOCK" \
  >"$J1" 2>"$E2E_TMP/doctor1.err" &
doc=$!
sleep 0.5
lab_download client "$LAB_S_TUN" "$DL" 12 >"$E2E_TMP/dl1" &
dl=$!
lab_upload client "$LAB_S_TUN" "$UL" 12 >"$E2E_TMP/ul1" &
ul=$!
rc=0; wait "$doc" || rc=$?
lab_capture_stop
sed 's/^/  doctor: /' "$E2E_TMP/doctor1.err"
if [ "$rc" -eq 1 ]; then pass "doctor exits 1 on the black hole (risks found)"
else fail "doctor exit code $rc on the black hole (want 1)"; cat "$J1"; fi
check "measured the path MTU the ping check found" "$J1" 'd["probe"]["pmtu"]' "$INNER"
check "no too-big error came back for the larger probes" "$J1" 'd["probe"]["too_big_hints"]' 0
check "says ICMP errors are filtered" "$J1" 'd["probe"]["icmp_filtered"]' True
check "the most severe risk is the black hole" "$J1" \
  '(d["risks"][0]["severity"], "black hole" in d["risks"][0]["title"])' "('critical', True)"
check "the verdict names it in plain words" "$J1" \
  '"black hole" in d["verdict"] and "1372" in d["verdict"] and "filtered" in d["verdict"]' True
check "flags full-size retransmissions (the stalled upload)" "$J1" \
  'd["full_size_retransmissions_repeated"] > 0 and d["full_size_retransmissions_oversize"] > 0' True
check "flags oversize DF packets from the client" "$J1" \
  '[s["source"] for s in d["oversize_df"]["sources"]] == ["172.30.0.1"] and d["oversize_df"]["sources"][0]["max_len"] == 1500' True
check "flags SYN/SYN-ACK MSS above the path" "$J1" 'd["mss_above_path"] >= 2' True
check "flags the stalled download (open, silent, nothing retransmitted in view)" "$J1" \
  'any(c["b_port"] == 8080 and not c["closed"] and c["full_retrans"] == [0, 0] and c["payload"][1] < 2000000 for c in d["connections"])' True
check "not healthy" "$J1" 'd["healthy"]' False
check "tunshim is not running there" "$J1" 'd["daemon"]["running_on_interface"]' False
check "RTT/loss from echoes" "$J1" 'd["echo"]["sent"] > 0 and d["echo"]["answered"] == d["echo"]["sent"]' True
wait "$dl" "$ul" || true
n=$(cat "$E2E_TMP/dl1"); [ "$n" -lt "$DL" ] && pass "the download stalled meanwhile ($n of $DL bytes)" ||
  fail "the download completed without tunshim: no black hole"

# --- 4 (on the same capture). --read, no root needed -------------------------------------------
J4="$E2E_TMP/doctor4.json"
rc=0; "$TUNSHIM_BIN" doctor --read "$E2E_TMP/stall.pcap" --pmtu "$INNER" --json >"$J4" 2>/dev/null || rc=$?
[ "$rc" -eq 1 ] && pass "--read of the stall capture: exit 1" || fail "--read exit code $rc (want 1)"
check "--read: retransmissions seen" "$J4" 'd["full_size_retransmissions"] > 0' True
check "--read: oversize DF seen" "$J4" 'd["oversize_df"]["packets"] > 0' True
out=$("$TUNSHIM_BIN" doctor --read /etc/hostname 2>&1 >/dev/null) && rc=0 || rc=$?
if [ "$rc" -eq 2 ] && [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ]; then pass "unreadable capture: one line, exit 2 ($out)"
else fail "unreadable capture: exit $rc, '$out'"; fi
head -c 300 "$E2E_TMP/stall.pcap" >"$E2E_TMP/cut.pcap"
out=$("$TUNSHIM_BIN" doctor --read "$E2E_TMP/cut.pcap" --json 2>&1 >/dev/null) && rc=0 || rc=$?
if [ "$rc" -le 2 ] && [[ "$out" == *"truncated"* ]]; then pass "truncated capture: says so ($out)"
else fail "truncated capture: exit $rc, '$out'"; fi
out=$(ip netns exec "$(ns client)" "$TUNSHIM_BIN" doctor nosuch0 2>&1 >/dev/null) && rc=0 || rc=$?
if [ "$rc" -eq 2 ] && [[ "$out" == *"no such interface"* ]]; then pass "missing interface: $out"
else fail "missing interface: exit $rc, '$out'"; fi

# --- 2. the suggested config, installed ------------------------------------------------------
field "$J1" 'd["config"]' >"$E2E_TMP/block.toml"
sed 's/^/  suggested: /' "$E2E_TMP/block.toml"
{
  printf '[global]\nlog_level = "info"\nstats_listen = "off"\ncontrol_socket = "%s"\n\n' "$SOCK"
  cat "$E2E_TMP/block.toml"
} >"$LAB_TUNSHIM_CONF"
if "$TUNSHIM_BIN" check-config -c "$LAB_TUNSHIM_CONF" >/dev/null; then pass "the suggested block passes check-config"
else fail "check-config refuses the suggested block"; fi
lab_tunshim_start
searched() {
  inns client "$TUNSHIM_BIN" stats --json --socket "$SOCK" 2>/dev/null |
    "$PY" -c 'import json,sys; t=json.load(sys.stdin)["tunnels"][0]; sys.exit(0 if t["pmtu_confirmed"] and t["pmtu_state"] == "complete" else 1)'
}
wait_for 30 searched || fail "the daemon's path-MTU search did not complete"
n=$(lab_download client "$LAB_S_TUN" "$DL" 10)
[ "$n" -eq "$DL" ] && pass "with the suggested config: the download completes ($n bytes)" ||
  fail "with the suggested config: download got $n of $DL"
n=$(lab_upload client "$LAB_S_TUN" "$UL" 10)
[ "$n" -eq "$UL" ] && pass "with the suggested config: the upload completes ($n bytes)" ||
  fail "with the suggested config: upload got $n of $UL"

# --- 3. doctor with tunshim running ----------------------------------------------------------
J3="$E2E_TMP/doctor3.json"
ip netns exec "$(ns client)" "$TUNSHIM_BIN" doctor ppp0 --seconds 3 --json --socket "$SOCK" \
  >"$J3" 2>"$E2E_TMP/doctor3.err" &
doc=$!
sleep 0.5
lab_download client "$LAB_S_TUN" "$DL" 10 >"$E2E_TMP/dl3"
lab_upload client "$LAB_S_TUN" "$UL" 10 >"$E2E_TMP/ul3"
rc=0; wait "$doc" || rc=$?
sed 's/^/  doctor: /' "$E2E_TMP/doctor3.err"
[ "$(cat "$E2E_TMP/dl3")" -eq "$DL" ] && [ "$(cat "$E2E_TMP/ul3")" -eq "$UL" ] &&
  pass "traffic during the second run completed" || fail "traffic during the second run did not complete"
if [ "$rc" -eq 0 ]; then pass "doctor exits 0 with tunshim running"
else fail "doctor exit code $rc with tunshim running (want 0)"; cat "$J3"; fi
check "reports the tunnel healthy" "$J3" 'd["healthy"]' True
check "sees tunshim clamping on ppp0" "$J3" \
  '(d["daemon"]["running_on_interface"], d["daemon"]["mss4"])' "(True, $((INNER - 40)))"
check "no segment retransmitted again and again, none above the path" "$J3" \
  '(d["full_size_retransmissions_repeated"], d["full_size_retransmissions_oversize"])' "(0, 0)"
check "no oversize DF packet" "$J3" 'd["oversize_df"]["packets"]' 0
check "the verdict says so" "$J3" '"healthy" in d["verdict"] and "tunshim clamps" in d["verdict"]' True

lab_tunshim_stop TERM
finish
