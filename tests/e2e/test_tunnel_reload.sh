#!/usr/bin/env bash
# SIGHUP on the tunnel lab (tests/e2e/lab.sh). A broken config is refused as a whole: the
# daemon keeps running and keeps clamping with the old MSS. A valid config with a new MSS
# takes effect for the next connection, in both families, with no duplicated rules.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lab.sh"

MSS=1300; NEW=1250   # mss6 follows as mss - 20 (never below 1220)

lab_up
lab_server_start
lab_tunshim_conf "$MSS"
lab_tunshim_start
pid=$LAB_TUNSHIM_PID

set -- $(lab_request_syn_mss client "$LAB_S_TUN")
[ "${1:-0}" = 1000 ] && [ "${2:-}" = "$MSS" ] && [ $# -eq 2 ] \
  && pass "before any reload: SYN clamped to $MSS" || fail "before reload: bytes/SYN MSS '$*' (want 1000 $MSS)"

# Broken: a string where a number belongs, and a TOML syntax error further down.
printf '[global]\nlog_level = "info"\n[[tunnel]]\ninterface = "ppp0"\nmss = "lots"\n[[tunnel\n' \
  >"$LAB_TUNSHIM_CONF"
kill -HUP "$pid"
# Its "reload refused" line tells when it has looked; the clamp check below does not rely on
# the wording, it only keeps the test from racing the reload.
wait_for 5 lab_tunshim_logged 'refused' || log "no 'refused' line in tunshim's log within 5 s"
sleep 0.5
if lab_gone "$pid"; then fail "SIGHUP with a broken config killed tunshim"
else pass "SIGHUP with a broken config: tunshim still running"; fi
set -- $(lab_request_syn_mss client "$LAB_S_TUN")
[ "${1:-0}" = 1000 ] && [ "${2:-}" = "$MSS" ] && [ $# -eq 2 ] \
  && pass "after the refused reload: still clamping to $MSS" \
  || fail "after the refused reload: bytes/SYN MSS '$*' (want 1000 $MSS)"
n=$(lab_download client "$LAB_S_TUN" 2000000 8)
[ "$n" = 2000000 ] && pass "after the refused reload a 2 MB download completes" \
  || fail "after the refused reload: download got $n bytes"

# Valid, with a new MSS: the next connection uses it (IPv6 follows: mss6 defaults to mss-20).
lab_tunshim_conf "$NEW"
kill -HUP "$pid"
wait_for 5 lab_tunshim_logged 'reload applied' || fail "no 'reload applied' in tunshim's log within 5 s"
lab_gone "$pid" && fail "SIGHUP with a valid config killed tunshim"
set -- $(lab_request_syn_mss client "$LAB_S_TUN")
[ "${1:-0}" = 1000 ] && [ "${2:-}" = "$NEW" ] && [ $# -eq 2 ] \
  && pass "after reloading mss = $NEW: the next IPv4 SYN carries $NEW" \
  || fail "after reloading mss = $NEW: bytes/SYN MSS '$*' (want 1000 $NEW)"
set -- $(lab_request_syn_mss client "$LAB_S_TUN6")
[ "${1:-0}" = 1000 ] && [ "${2:-}" = $((NEW - 20)) ] && [ $# -eq 2 ] \
  && pass "after reloading: the next IPv6 SYN carries $((NEW - 20))" \
  || fail "after reloading: IPv6 bytes/SYN MSS '$*' (want 1000 $((NEW - 20)))"
counts=$(lab_jump_counts)
[ "$counts" = "iptables:PREROUTING=1 iptables:POSTROUTING=1 ip6tables:PREROUTING=1 ip6tables:POSTROUTING=1" ] \
  && pass "after two reloads: one jump per hook ($counts)" || fail "after two reloads: $counts"

lab_tunshim_stop TERM
finish
