#!/usr/bin/env bash
# Fail-open and restart on the tunnel lab (tests/e2e/lab.sh). `kill -9` of tunshim in the
# middle of a transfer: the transfer completes; a new connection is neither dropped nor
# delayed by what the dead daemon left: on the queue path its orphaned NFQUEUE rules
# (--queue-bypass: the SYN passes unclamped), on the eBPF path its programs (they stay and
# keep clamping with the last targets). A new start cleans up, leaving exactly one jump per
# hook and family (eBPF: takes over the dead run's programs, one filter per direction), and
# clamps again.
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
# Mid-transfer: once bytes flow (a loaded host may take more than a moment to connect).
flowing() { inns client ss -Hti dst "$LAB_S_TUN" | grep -q 'bytes_received:[1-9]'; }
wait_for 10 flowing || log "no bytes received 10 s after the transfer started"
sleep 0.5
got_before=$(inns client ss -Hti dst "$LAB_S_TUN" | grep -o 'bytes_received:[0-9]*' | head -1 | cut -d: -f2 || true)
# ...and the daemon dies without a chance to clean up.
pid=$LAB_TUNSHIM_PID
kill -9 "$pid"
if wait_for 5 lab_gone "$pid"; then pass "tunshim (pid $pid) killed with SIGKILL mid-transfer (${got_before:-?} bytes in)"
else fail "tunshim survived SIGKILL"; fi
LAB_TUNSHIM_PID=""
stale=$(lab_tunshim_rules)
log "orphaned NFQUEUE rules after SIGKILL: $stale ($(lab_hook_counts))"
if [ "$TUNSHIM_DATAPATH" = bpf ]; then
  dead_prog=$(e2e_bpf_prog_id client ppp0 egress)
  [ "$(lab_hook_counts)" = "$LAB_HOOKS_ONE" ] && pass "after SIGKILL the programs stay on ppp0 ($(lab_hook_counts))" ||
    fail "after SIGKILL: $(lab_hook_counts) (want the programs left in place: $LAB_HOOKS_ONE)"
fi

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
if [ "$TUNSHIM_DATAPATH" = bpf ]; then
  if [ "${2:-}" = "$MSS" ] && [ $# -eq 2 ]; then pass "its SYN was still clamped to $MSS by the dead daemon's programs"
  else fail "SYN MSS with the daemon dead: '${*:2}' (want $MSS: the programs keep their last targets)"; fi
elif [ "$stale" -gt 0 ]; then
  if [ "${2:-}" = 1460 ]; then pass "its SYN passed the orphaned queue rule unclamped (--queue-bypass)"
  else fail "SYN MSS with the daemon dead: '${*:2}' (expected 1460: nobody is there to clamp)"; fi
fi

# Restart: stale rules cleaned, exactly one jump per hook, clamping again.
lab_tunshim_start
counts=$(lab_hook_counts)
if [ "$counts" = "$LAB_HOOKS_ONE" ]; then
  pass "restart leaves exactly one hook of each ($counts)"
else fail "after restart: $counts (want $LAB_HOOKS_ONE)"; inns client iptables-save -t mangle | sed 's/^/  /'; fi
if [ "$TUNSHIM_DATAPATH" = bpf ]; then
  new_prog=$(e2e_bpf_prog_id client ppp0 egress)
  [ -n "$new_prog" ] && [ "$new_prog" != "$dead_prog" ] && lab_tunshim_logged "replacing a dead tunshim's" &&
    pass "restart took over the dead run's programs (egress program $dead_prog -> $new_prog, logged)" ||
    fail "restart: egress program $dead_prog -> '$new_prog'; log: $(grep 'eBPF' "$LAB_TUNSHIM_LOG" | tail -2 | tr '\n' ' ')"
else
  rules=$(lab_tunshim_rules)
  if [ "$rules" -eq 4 ]; then pass "restart leaves 4 NFQUEUE rules (in/out x IPv4/IPv6), none duplicated"
  else fail "after restart: $rules NFQUEUE rules (want 4)"; inns client iptables-save -t mangle | sed 's/^/  /'; fi
fi
# shellcheck disable=SC2046
set -- $(lab_request_syn_mss client "$LAB_S_TUN")
if [ "${2:-}" = "$MSS" ] && [ $# -eq 2 ]; then pass "after restart the next SYN is clamped to $MSS"
else fail "after restart: bytes/SYN MSS '$*' (want 1000 $MSS)"; fi
n=$(lab_download client "$LAB_S_TUN" 2000000 8)
if [ "$n" = 2000000 ]; then pass "after restart a 2 MB download completes"
else fail "after restart: download got $n bytes"; fi

lab_tunshim_stop TERM
finish
