#!/usr/bin/env bash
# Fail-open and restart on the tunnel lab (tests/e2e/lab.sh). `kill -9` of tunshim in the
# middle of a transfer: the transfer completes; a new connection is neither dropped nor
# delayed by the orphaned NFQUEUE rules (--queue-bypass: its SYN passes unclamped); a new
# start cleans the stale rules, leaving exactly one jump per hook and family, and clamps again.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lab.sh"

MSS=1300
BIG=12000000; RATE=3M   # about 4 s at 3 MB/s: long enough to kill the daemon mid-transfer

lab_up
lab_server_start
lab_tunshim_conf "$MSS"
lab_tunshim_start

# A transfer in flight...
inns client curl -sS --max-time 40 --limit-rate "$RATE" -o /dev/null -w '%{size_download}' \
  "http://$LAB_S_TUN:$LAB_HTTP_PORT/blob/$BIG" >"$E2E_TMP/big.n" 2>"$E2E_TMP/big.err" &
big=$!
sleep 1.5
got_before=$(inns client ss -Hti dst "$LAB_S_TUN" | grep -o 'bytes_received:[0-9]*' | head -1 | cut -d: -f2)
# ...and the daemon dies without a chance to clean up.
pid=$LAB_TUNSHIM_PID
kill -9 "$pid"
if wait_for 5 lab_gone "$pid"; then pass "tunshim (pid $pid) killed with SIGKILL mid-transfer (${got_before:-?} bytes in)"
else fail "tunshim survived SIGKILL"; fi
LAB_TUNSHIM_PID=""
stale=$(lab_tunshim_rules)
log "orphaned NFQUEUE rules after SIGKILL: $stale ($(lab_jump_counts))"

wait "$big" || true
n=$(cat "$E2E_TMP/big.n")
if [ "${got_before:-0}" -gt 0 ] && [ "${got_before:-0}" -lt "$BIG" ] && [ "$n" = "$BIG" ]; then
  pass "the transfer running across the kill completed ($n bytes)"
else fail "transfer across the kill: ${n:-0} of $BIG bytes (${got_before:-0} before the kill); $(cat "$E2E_TMP/big.err")"; fi

# A new connection while the rules point at a queue nobody reads.
# shellcheck disable=SC2046  # split on purpose: bytes, then one MSS per SYN
set -- $(lab_request_syn_mss client "$LAB_S_TUN")
if [ "${1:-0}" = 1000 ]; then
  pass "new connection with the daemon dead completes (SYN MSS at the server: ${*:2})"
else fail "new connection with the daemon dead failed (got ${1:-0} bytes): the SYN was dropped, not bypassed"; fi
if [ "$stale" -gt 0 ]; then
  if [ "${2:-}" = 1460 ]; then pass "its SYN passed the orphaned queue rule unclamped (--queue-bypass)"
  else fail "SYN MSS with the daemon dead: '${*:2}' (expected 1460: nobody is there to clamp)"; fi
fi

# Restart: stale rules cleaned, exactly one jump per hook, clamping again.
lab_tunshim_start
counts=$(lab_jump_counts)
if [ "$counts" = "iptables:PREROUTING=1 iptables:POSTROUTING=1 ip6tables:PREROUTING=1 ip6tables:POSTROUTING=1" ]; then
  pass "restart leaves exactly one jump per hook ($counts)"
else fail "after restart: $counts"; inns client iptables-save -t mangle | sed 's/^/  /'; fi
rules=$(lab_tunshim_rules)
if [ "$rules" -eq 4 ]; then pass "restart leaves 4 NFQUEUE rules (in/out x IPv4/IPv6), none duplicated"
else fail "after restart: $rules NFQUEUE rules (want 4)"; inns client iptables-save -t mangle | sed 's/^/  /'; fi
# shellcheck disable=SC2046
set -- $(lab_request_syn_mss client "$LAB_S_TUN")
if [ "${2:-}" = "$MSS" ] && [ $# -eq 2 ]; then pass "after restart the next SYN is clamped to $MSS"
else fail "after restart: bytes/SYN MSS '$*' (want 1000 $MSS)"; fi
n=$(lab_download client "$LAB_S_TUN" 2000000 8)
if [ "$n" = 2000000 ]; then pass "after restart a 2 MB download completes"
else fail "after restart: download got $n bytes"; fi

lab_tunshim_stop TERM
finish
