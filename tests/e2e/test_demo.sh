#!/bin/bash
# `tunshim demo` as a newcomer runs it (here not on a terminal), and the pieces around it:
#   1. without root it refuses with one line;
#   2. a demo killed outright (SIGKILL: no cleanup possible) leaves its lab; the next run
#      removes it first and says so. That run exits 0 and narrates, in order, what really happened: the download
#      stalled, tunshim started (and found the path MTU, with mss = "auto"), the download
#      completed, the stats table shows clamped SYNs, the line sent after an idle gap longer
#      than the NAT timeout arrived with keepalives sent; plain lines only (no terminal
#      codes); nothing left behind: namespaces tsdemo-PID-*, processes, temp files, rules;
#   3. interrupted (SIGINT while its tunshim runs, SIGTERM while the lab is being built) it
#      still removes everything and exits 130 / 143; when a step fails (its tunshim killed
#      under it) it says so in one line, exits 1 and removes everything; with --keep the
#      lab stays up, the commands it prints work, and Ctrl-C removes it;
#   4. conf/ppp/ip-up.d/tunshim, called with pppd's argv and environment against a daemon
#      in a namespace, makes the daemon reapply (it logs it, and a jump rule deleted behind
#      its back is back); it does nothing for an interface the daemon does not know or when
#      no daemon runs, and always exits 0;
#      (on the eBPF path, TUNSHIM_DATAPATH=bpf, "a jump rule deleted" is ppp0's clsact qdisc
#      deleted with both filters: the reapply puts them back);
#   5. the "last hook" row: a tunnel going down runs on_down [record, exit 3]; `tunshim
#      stats` and its JSON then show "on_down #2 exit 3, HH:MM:SS (N.N s)".
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lab.sh"
. "$(dirname "$0")/live_lab.sh"

require_root
require_cmd ip iptables socat setpriv pgrep
[ -x "$TUNSHIM_BIN" ] || die "TUNSHIM_BIN=$TUNSHIM_BIN is not executable"

# Root namespace rules mentioning tunshim or the demo, to compare before and after.
root_rules() { { iptables-save; ip6tables-save; } 2>/dev/null | grep -ci -e tunshim -e tsdemo || true; }
RULES_BEFORE=$(root_rules)

# leftovers PID: what a demo run with that pid left behind ("" when nothing).
leftovers() {
  local p=$1 out=""
  local n; n=$(ip netns list | awk '{print $1}' | grep "^tsdemo-$p-" | tr '\n' ' ')
  [ -z "$n" ] || out+="namespaces: $n; "
  local procs; procs=$(pgrep -f "tsdemo-${p}[.-]" | tr '\n' ' ')
  [ -z "$procs" ] || out+="processes: $procs; "
  local files; files=$(ls -d "/tmp/tsdemo-$p."* 2>/dev/null | tr '\n' ' ')
  [ -z "$files" ] || out+="files: $files; "
  [ "$(root_rules)" = "$RULES_BEFORE" ] || out+="root namespace rules: $(root_rules) (were $RULES_BEFORE); "
  echo "$out"
}
# A safety net should the test itself die mid-run (the demo cleans up after itself; this
# only acts on what a failure left).
force_clean() {
  local p=$1 n q
  # Only while that pid is still the demo (pids are reused).
  if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q tunshim; then
    kill -TERM "$p" 2>/dev/null; sleep 1; kill -9 "$p" 2>/dev/null
  fi
  for n in $(ip netns list | awk '{print $1}' | grep "^tsdemo-$p-"); do
    for q in $(ip netns pids "$n"); do kill -9 "$q"; done
    ip netns del "$n"
  done
  rm -rf "/tmp/tsdemo-$p."*
}

# demo_start OUT [ARGS]: starts `tunshim demo` in the background, output to OUT; pid in DEMO.
demo_start() {
  local out=$1; shift
  "$TUNSHIM_BIN" demo "$@" >"$out" 2>&1 </dev/null &
  DEMO=$!
  on_exit "force_clean $DEMO"
}
# demo_wait SECONDS: waits for the demo to exit; its status in DEMO_RC (999: still running).
demo_wait() {
  DEMO_RC=999
  wait_for "$1" lab_gone "$DEMO" || return 0
  DEMO_RC=0
  wait "$DEMO" || DEMO_RC=$?
}
# line_no OUT REGEX: number of the first line of OUT matching REGEX (0 if none).
line_no() { grep -n -E -m1 -- "$2" "$1" | cut -d: -f1 | grep . || echo 0; }

# ---- 1. not root --------------------------------------------------------------------------
PUB=$(mktemp -d /tmp/tunshim-demo-nonroot.XXXXXX)
on_exit "rm -rf $PUB"
chmod 755 "$PUB"
install -m 755 "$TUNSHIM_BIN" "$PUB/tunshim"
st=0
setpriv --reuid=65534 --regid=65534 --clear-groups -- "$PUB/tunshim" demo >"$E2E_TMP/nonroot.out" 2>"$E2E_TMP/nonroot.err" </dev/null || st=$?
if [ "$st" = 1 ] && [ ! -s "$E2E_TMP/nonroot.out" ] && [ "$(wc -l <"$E2E_TMP/nonroot.err")" = 1 ] \
   && grep -q 'needs root' "$E2E_TMP/nonroot.err"; then
  pass "not root: exit 1 with one line: $(cat "$E2E_TMP/nonroot.err")"
else
  fail "not root: exit $st, stdout '$(cat "$E2E_TMP/nonroot.out")', stderr '$(cat "$E2E_TMP/nonroot.err")'"
fi
"$TUNSHIM_BIN" demo --help | grep -q -- '--keep' && pass "demo --help lists --keep" || fail "demo --help: $("$TUNSHIM_BIN" demo --help 2>&1)"

# ---- 2. a full run ------------------------------------------------------------------------
# First a demo that cannot clean up: SIGKILL once its tunnel runs.
demo_start "$E2E_TMP/demo-killed.out"
KILLED=$DEMO
if wait_for 30 grep -q '^\[2/6\]' "$E2E_TMP/demo-killed.out"; then
  kill -9 "$KILLED"
  wait "$KILLED" 2>/dev/null || true
  [ -n "$(leftovers "$KILLED")" ] && pass "a demo killed with SIGKILL leaves its lab: $(leftovers "$KILLED" | cut -c1-120)" \
    || fail "SIGKILL left nothing: the stale-lab check below proves nothing"
else
  fail "demo to be killed never reached step 2: $(cat "$E2E_TMP/demo-killed.out")"
fi
OUT=$E2E_TMP/demo.out
t0=$SECONDS
demo_start "$OUT"
demo_wait 150
took=$((SECONDS - t0))
log "demo output:"
sed 's/^/  | /' "$OUT"
grep -q "^tunshim demo: removed the lab an earlier demo left behind (pid $KILLED)" "$OUT" && [ -z "$(leftovers "$KILLED")" ] \
  && pass "the next run removed the killed demo's lab first, and said so" \
  || fail "killed demo's lab: $(leftovers "$KILLED"); output: $(head -2 "$OUT" | tr '\n' ' ')"
if [ "$DEMO_RC" = 0 ]; then pass "demo exited 0 after ${took} s"
else fail "demo exit status $DEMO_RC after ${took} s"; [ "$DEMO_RC" != 999 ] || force_clean "$DEMO"; fi
[ "$took" -le 90 ] && pass "ran in ${took} s (under 90)" || fail "took ${took} s"

# The narration, in order, with the numbers it reports.
prev=0 order_ok=1
for re in '^\[1/6\]' '^\[2/6\]' 'STALLED: ' '^\[3/6\]' 'tunshim is running \(pid [0-9]+\)' '^\[4/6\]' 'DONE: ' \
          '^\[5/6\]' 'SYN out clamped/inserted' '^\[6/6\]' 'ARRIVED: ' '^RESULT: the download stalled without tunshim; tunshim measured' \
          '^Lab removed'; do
  n=$(line_no "$OUT" "$re")
  if [ "$n" -le "$prev" ]; then order_ok=0; fail "narration: '$re' missing or out of order (line $n after $prev)"; fi
  [ "$n" = 0 ] || prev=$n
done
[ $order_ok = 1 ] && pass "narration: every step in order, ending with the lab removed"
stalled=$(sed -n 's/.*STALLED: \([0-9]*\) of \([0-9]*\) bytes.*/\1 \2/p' "$OUT")
read -r got total <<<"${stalled:-x x}"
[ "$got" != x ] && [ "$got" -lt "$total" ] && pass "without tunshim: $got of $total bytes (stalled)" \
  || fail "stall line: '$(grep STALLED "$OUT")'"
done_line=$(sed -n 's/.*DONE: \([0-9]*\) of \([0-9]*\) bytes.*/\1 \2/p' "$OUT")
read -r got total <<<"${done_line:-x y}"
[ "$got" = "$total" ] && pass "with tunshim: all $got bytes" || fail "done line: '$(grep 'DONE:' "$OUT")'"
out_clamped=$(sed -n 's/^ *SYN out clamped\/inserted *\([0-9]*\) \/ \([0-9]*\).*/\1/p' "$OUT")
in_clamped=$(sed -n 's/^ *SYN in clamped\/inserted *\([0-9]*\) \/ \([0-9]*\).*/\1/p' "$OUT")
[ "${out_clamped:-0}" -ge 1 ] && [ "${in_clamped:-0}" -ge 1 ] \
  && pass "stats table: SYNs clamped out $out_clamped, in $in_clamped" \
  || fail "stats table: clamped out '${out_clamped}', in '${in_clamped}'"
pmtu=$(sed -n 's/.*Path MTU found: \([0-9]*\) bytes.*/\1/p' "$OUT")
[ "$pmtu" = 1372 ] && pass "mss = \"auto\": path MTU found 1372 (1400 - 28, the lab's truth)" \
  || fail "mss = \"auto\": path MTU '$pmtu', the lab carries 1372"
grep -Eq '^ *path MTU +1372 \(measured\)$' "$OUT" && pass "stats table: path MTU 1372 (measured)" || fail "stats table: $(grep 'path MTU ' "$OUT")"
grep -Eq '^ *MSS target v4/v6 +1332 / ' "$OUT" && pass "stats table: MSS target 1332 (1372 - 40)" \
  || fail "stats table: $(grep 'MSS target' "$OUT")"
ka=$(sed -n 's/.*ARRIVED: .*tunshim sent \([0-9]*\).*/\1/p' "$OUT")
[ "${ka:-0}" -ge 2 ] && pass "idle gap: the line arrived; $ka keepalives sent during the gap" \
  || fail "idle gap: $(grep -A1 -E 'ARRIVED|LOST' "$OUT" | tr '\n' ' ')"
# The data path this run asked for (lib.sh: TUNSHIM_DATAPATH) is the one the demo's tunshim ran.
dp=$(grep -m1 -E '^ *datapath ' "$OUT" | sed 's/^ *//')
grep -Eq "^(queue|bpf)" <<<"${dp#datapath }" && [ "$(awk '{ print $2 }' <<<"$dp" | tr -d :)" = "$TUNSHIM_DATAPATH" ] &&
  pass "stats table: $dp" || fail "stats table's datapath line: '$dp' (want $TUNSHIM_DATAPATH)"
grep -q $'[\r\033]' "$OUT" && fail "not a terminal, yet the output has carriage returns or escape codes" \
  || pass "not a terminal: plain lines only"
left=$(leftovers "$DEMO")
[ -z "$left" ] && pass "nothing left behind (namespaces tsdemo-$DEMO-*, processes, files, rules)" || fail "left behind: $left"

# ---- 3. interrupted -----------------------------------------------------------------------
# SIGINT while tunshim runs (between "running" and the end of the second download).
OUT=$E2E_TMP/demo-int.out
demo_start "$OUT"
if wait_for 60 grep -q 'tunshim is running (pid' "$OUT"; then
  dpid=$(sed -n 's/.*tunshim is running (pid \([0-9]*\)).*/\1/p' "$OUT")
  kill -INT "$DEMO"
  demo_wait 30
  [ "$DEMO_RC" = 130 ] && pass "SIGINT while tunshim runs: exit 130" || fail "SIGINT: exit status $DEMO_RC"
  grep -q '^Lab removed' "$OUT" && pass "SIGINT: says the lab was removed" || fail "SIGINT: output ends: $(tail -3 "$OUT" | tr '\n' ' ')"
  lab_gone "$dpid" && pass "SIGINT: the demo's tunshim (pid $dpid) is gone" || fail "SIGINT: tunshim pid $dpid still runs"
  left=$(leftovers "$DEMO")
  [ -z "$left" ] && pass "SIGINT: nothing left behind" || fail "SIGINT: left behind: $left"
else
  fail "demo never started tunshim: $(tail -5 "$OUT" | tr '\n' ' ')"
fi
# SIGTERM while the lab is being built (as soon as its first namespace exists).
OUT=$E2E_TMP/demo-term.out
demo_start "$OUT"
if wait_for 30 sh -c "ip netns list | grep -q '^tsdemo-$DEMO-'"; then
  kill -TERM "$DEMO"
  demo_wait 30
  [ "$DEMO_RC" = 143 ] && pass "SIGTERM while building the lab: exit 143" || fail "SIGTERM: exit status $DEMO_RC"
  left=$(leftovers "$DEMO")
  [ -z "$left" ] && pass "SIGTERM: nothing left behind" || fail "SIGTERM: left behind: $left"
else
  fail "demo made no namespace: $(cat "$OUT")"
fi

# An error midway: the demo's tunshim dies under it (kill -9 as soon as it runs).
OUT=$E2E_TMP/demo-err.out
demo_start "$OUT"
if wait_for 60 grep -q 'tunshim is running (pid' "$OUT"; then
  dpid=$(sed -n 's/.*tunshim is running (pid \([0-9]*\)).*/\1/p' "$OUT")
  kill -9 "$dpid"
  demo_wait 30
  [ "$DEMO_RC" = 1 ] && pass "tunshim killed under the demo: exit 1" || fail "tunshim killed: exit status $DEMO_RC"
  grep -q "^tunshim demo: tunshim (pid $dpid) exited unexpectedly" "$OUT" \
    && pass "error said in one line: $(grep -m1 '^tunshim demo: tunshim (pid' "$OUT" | cut -c1-120)" \
    || fail "no error line; output ends: $(tail -4 "$OUT" | tr '\n' ' ')"
  grep -q '^Lab removed' "$OUT" && [ -z "$(leftovers "$DEMO")" ] && pass "error: lab removed, nothing left behind" \
    || fail "error: left behind: $(leftovers "$DEMO")"
else
  fail "demo never started tunshim: $(tail -5 "$OUT" | tr '\n' ' ')"
fi
# --keep: the lab stays until Ctrl-C, and the commands it prints work.
OUT=$E2E_TMP/demo-keep.out
demo_start "$OUT" --keep
if wait_for 90 grep -q -- '--keep: the lab stays up' "$OUT"; then
  lab_gone "$DEMO" && fail "--keep: the demo exited" || pass "--keep: the demo waits after the last step"
  stats_cmd=$(grep -m1 -E '^  ip netns exec tsdemo-[0-9]+-client .* stats --socket ' "$OUT" | sed 's/^  //')
  # shellcheck disable=SC2086  # the printed command line, word-split as a shell would
  if [ -n "$stats_cmd" ] && $stats_cmd | grep -q 'SYN out clamped/inserted'; then
    pass "--keep: the printed stats command works: $stats_cmd"
  else
    fail "--keep: printed stats command '$stats_cmd' fails"
  fi
  ip netns list | grep -q "^tsdemo-$DEMO-router" && pass "--keep: lab namespaces still there" || fail "--keep: lab is gone"
  kill -INT "$DEMO"
  demo_wait 30
  [ "$DEMO_RC" = 130 ] && [ -z "$(leftovers "$DEMO")" ] && pass "--keep: Ctrl-C removes the lab (exit 130)" \
    || fail "--keep: after SIGINT exit $DEMO_RC, left behind: $(leftovers "$DEMO")"
else
  fail "--keep: never reached the end: $(tail -5 "$OUT" | tr '\n' ' ')"
fi

# ---- 4. the ppp ip-up helper --------------------------------------------------------------
IPUP=$TUNSHIM_SRC/conf/ppp/ip-up.d/tunshim
IPDOWN=$TUNSHIM_SRC/conf/ppp/ip-down.d/tunshim
SOCK=$E2E_TMP/tunshim.sock
HOOK=$E2E_TMP/on-down
live_record_script "$HOOK"
lab_up
cat >"$LAB_TUNSHIM_CONF" <<EOF
[global]
log_level = "info"
control_socket = "$SOCK"

[[tunnel]]
interface = "ppp0"
mss = 1300
keepalive = "idle"
keepalive_interval = "1s"
keepalive_target = "$LAB_S_TUN"
down_after_misses = 2
on_down = [["$HOOK"], ["/bin/sh", "-c", "exit 3"]]
EOF
live_require_keys
# pppd runs ip-up with a clean environment: PATH and its PPP_* variables only.
# ppp_script SCRIPT IFACE [SOCKET]: runs it in the client namespace as pppd would; prints
# "STATUS SECONDS".
ppp_script() {
  local t0=$SECONDS st=0
  inns client env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin PPP_IFACE="$2" PPP_LOCAL="$LAB_C_TUN" PPP_REMOTE="$LAB_S_TUN" \
    TUNSHIM_BIN="$TUNSHIM_BIN" TUNSHIM_SOCKET="${3:-$SOCK}" CONNECT_TIME=42 BYTES_SENT=1 BYTES_RCVD=2 \
    "$1" "$2" /dev/ttyS0 115200 "$LAB_C_TUN" "$LAB_S_TUN" office >>"$E2E_TMP/ppp.out" 2>&1 || st=$?
  echo "$st $((SECONDS - t0))"
}
read -r st secs <<<"$(ppp_script "$IPUP" ppp0)"
[ "$st" = 0 ] && [ "$secs" -le 2 ] && pass "ip-up without a running tunshim: exit 0 at once, nothing to do" \
  || fail "ip-up without tunshim: exit $st after $secs s"
lab_tunshim_start
read -r st _ <<<"$(ppp_script "$IPUP" ppp7)"
[ "$st" = 0 ] && ! lab_tunshim_logged 'reapply ppp7' && pass "ip-up for ppp7 (not a tunnel of tunshim's): exit 0, no reapply asked" \
  || fail "ip-up ppp7: exit $st; daemon log: $(grep ppp7 "$LAB_TUNSHIM_LOG")"
# A firewall reload behind tunshim's back: its jump rules are gone (eBPF: its qdisc and filters).
before=$(lab_hook_counts)
if [ "$TUNSHIM_DATAPATH" = bpf ]; then
  inns client tc qdisc del dev ppp0 clsact
else
  inns client iptables -t mangle -F POSTROUTING
  inns client ip6tables -t mangle -F POSTROUTING
fi
[ "$(lab_hook_counts)" != "$before" ] || fail "removing tunshim's hooks behind its back changed nothing: $before"
log "hooks before: $before; after removing them behind tunshim's back: $(lab_hook_counts)"
read -r st _ <<<"$(ppp_script "$IPUP" ppp0)"
if [ "$st" = 0 ] && wait_for 5 lab_tunshim_logged 'reapply ppp0: '; then
  pass "ip-up ppp0 with pppd's argv: exit 0, the daemon logged: $(grep -m1 'reapply ppp0: ' "$LAB_TUNSHIM_LOG" | cut -c1-150)"
else
  fail "ip-up ppp0: exit $st; daemon log: $(tail -5 "$LAB_TUNSHIM_LOG" | tr '\n' ' '); script output: $(cat "$E2E_TMP/ppp.out")"
fi
[ "$(lab_hook_counts)" = "$before" ] && [ "$before" = "$LAB_HOOKS_ONE" ] && pass "reapply restored the hooks ($before)" \
  || fail "hooks after reapply: $(lab_hook_counts), were $before"
read -r st _ <<<"$(ppp_script "$IPDOWN" ppp0)"
[ "$st" = 0 ] && [ "$(lab_hook_counts)" = "$before" ] && pass "ip-down ppp0: exit 0, hooks untouched" \
  || fail "ip-down ppp0: exit $st, hooks $(lab_hook_counts)"

# ---- 5. last hook -------------------------------------------------------------------------
stats_row() { inns client "$TUNSHIM_BIN" stats --socket "$SOCK" 2>&1 | sed -n "s/^$1  *//p"; }
row=$(stats_row 'last hook')
[ "$row" = - ] && pass "last hook before any: '-'" || fail "last hook before any hook ran: '$row'"
live_drop_port "$LAB_UDP_PORT"   # the tunnel passes nothing from now on
if wait_for 20 test -s "$HOOK.log" && wait_for 5 sh -c "ip netns exec $(ns client) $TUNSHIM_BIN stats --socket $SOCK | grep -q 'on_down #2'"; then
  row=$(stats_row 'last hook')
  if [[ $row =~ ^on_down\ \#2\ exit\ 3,\ [0-2][0-9]:[0-5][0-9]:[0-5][0-9]\ \([0-9]+\.[0-9]\ s\)$ ]]; then
    pass "last hook after the tunnel went down: '$row'"
  else
    fail "last hook row: '$row'"
  fi
  json=$(inns client "$TUNSHIM_BIN" stats --json --socket "$SOCK")
  grep -Eq '"last_hook": "on_down #2 exit 3, [0-9:]{8} \([0-9.]+ s\)"' <<<"$json" \
    && pass "stats JSON: $(grep -o '"last_hook": "[^"]*"' <<<"$json")" || fail "stats JSON: $(grep -o '"last_hook": [^,]*' <<<"$json")"
else
  fail "on_down never ran (hook log: $(cat "$HOOK.log" 2>/dev/null)); daemon: $(tail -3 "$LAB_TUNSHIM_LOG" | tr '\n' ' ')"
fi
live_drop_clear
lab_tunshim_stop
finish
