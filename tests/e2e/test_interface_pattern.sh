#!/usr/bin/env bash
# Interface patterns. A client's VPN comes back as ppp1 (pppd takes the lowest free unit
# while ppp0 is still being torn down), then as ppp0 again: with interface = "ppp+" every
# SYN leaving it carries ppp+'s MSS from the very first connection after the interface
# appears, with no config change. A second pattern (tun+) with other settings and an
# exact name inside the first pattern (ppp9, which beats ppp+) clamp to their own values
# on the same host. Gone instances leave `tunshim stats`; the pattern's totals stay.
# Then eleven more ppp+ sessions (veth pairs without addresses): `tunshim stats` shows ppp+ as one
# summary line (its instances' rows are behind --all or an IFACE), while tun+'s single
# instance and the exact ppp9 keep their columns; `tunshim stats ppp99` is a one-line error.
#
#   c ── pppN (veth) ── a0 ─ s      10.82.0.0/24   ppp+: mss 1200
#   c ── tun0 (veth) ── b0 ─ s      10.82.1.0/24   tun+: mss 1300
#   c ── ppp9 (veth) ── a9 ─ s      10.82.9.0/24   ppp9: mss 1100 (exact beats ppp+)
# s counts arriving SYNs by interface and MSS (nft); a closed port answers RST.
. "$(dirname "$0")/lib.sh"

require_root
require_cmd nft ip "$PY"
[ -x "$TUNSHIM_BIN" ] || die "TUNSHIM_BIN=$TUNSHIM_BIN is not executable"

mkns c
mkns s
# link CNAME SNAME NET: a veth pair standing in for a point-to-point tunnel.
link() {
  ip link add "$1" netns "$(ns c)" type veth peer name "$2" netns "$(ns s)"
  inns c ip addr add "10.82.$3.1/24" dev "$1"
  inns s ip addr add "10.82.$3.2/24" dev "$2"
  inns c ip link set "$1" up
  inns s ip link set "$2" up
}
link ppp0 a0 0
link tun0 b0 1
link ppp9 a9 9

inns s nft -f - <<'EOF'
table inet count {
  chain in {
    type filter hook input priority -300; policy accept;
    iifname "a0" tcp flags syn tcp option maxseg size 1200 counter name a0_ok
    iifname "a0" tcp flags syn tcp option maxseg size != 1200 counter name a0_bad
    iifname "b0" tcp flags syn tcp option maxseg size 1300 counter name b0_ok
    iifname "b0" tcp flags syn tcp option maxseg size != 1300 counter name b0_bad
    iifname "a9" tcp flags syn tcp option maxseg size 1100 counter name a9_ok
    iifname "a9" tcp flags syn tcp option maxseg size != 1100 counter name a9_bad
  }
  counter a0_ok {}
  counter a0_bad {}
  counter b0_ok {}
  counter b0_bad {}
  counter a9_ok {}
  counter a9_bad {}
}
EOF
count() { inns s nft list counter inet count "$1" | awk '/packets/ {print $2}'; }
reset_counts() { inns s nft reset counters table inet count >/dev/null; }

CONF="$E2E_TMP/tunshim.conf"
cat >"$CONF" <<EOF
[global]
log_level = "info"
stats_listen = "off"
control_socket = "$E2E_TMP/ctl.sock"

[[tunnel]]
interface = "ppp+"
mss = 1200
mss6 = 1220
keepalive = "off"

[[tunnel]]
interface = "tun+"
mss = 1300
mss6 = 1280
keepalive = "off"

[[tunnel]]
interface = "ppp9"
mss = 1100
mss6 = 1220
keepalive = "off"
EOF
"$TUNSHIM_BIN" check-config -c "$CONF" >/dev/null || die "check-config refused the config"
e2e_tunshim_start c "$CONF"
TPID=$E2E_TUNSHIM_PID

syns() { e2e_syns c "$1" "$2"; }
stats_json() { "$TUNSHIM_BIN" stats --json --socket "$E2E_TMP/ctl.sock"; }

syns 10.82.0.2 5
syns 10.82.1.2 5
syns 10.82.9.2 5
if [ "$(count a0_ok)/$(count a0_bad)" = 5/0 ] && [ "$(count b0_ok)/$(count b0_bad)" = 5/0 ] &&
  [ "$(count a9_ok)/$(count a9_bad)" = 5/0 ]; then
  pass "ppp0 (ppp+) carries 1200, tun0 (tun+) 1300, ppp9 (exact, beats ppp+) 1100"
else
  fail "first SYNs: a0 $(count a0_ok)/$(count a0_bad), b0 $(count b0_ok)/$(count b0_bad), a9 $(count a9_ok)/$(count a9_bad) (ok/bad, want 5/0 each)"
fi

# The VPN reconnects as ppp1, then as ppp0 again: the interface is re-created and SYNs go
# out at once, before anyone could have edited anything.
total_ok=0
total_bad=0
for name in ppp1 ppp0 ppp1 ppp0; do
  reset_counts
  ip -n "$(ns c)" link del ppp0 2>/dev/null || ip -n "$(ns c)" link del ppp1
  link "$name" a0 0
  syns 10.82.0.2 10
  ok=$(count a0_ok) bad=$(count a0_bad)
  total_ok=$((total_ok + ok))
  total_bad=$((total_bad + bad))
  log "back as $name: $ok SYNs with MSS 1200, $bad without"
done
if [ "$total_ok" = 40 ] && [ "$total_bad" = 0 ]; then
  pass "renumbered ppp1 -> ppp0 -> ppp1 -> ppp0: all 40 SYNs right after each appearance carry 1200"
else
  fail "renumbered: $total_ok SYNs clamped to 1200, $total_bad not (want 40 / 0)"
fi

# The rules did not grow: one pair per pattern or name. On the eBPF path there are none,
# and each interface present has the programs once per direction (the gone ppp1 none).
rules=$(inns c iptables-nft -t mangle -S TUNSHIM-POST 2>/dev/null | grep -c -- '-j NFQUEUE' || true)
if [ "$TUNSHIM_DATAPATH" = bpf ]; then
  hooked=""
  for i in ppp0 tun0 ppp9; do e2e_bpf_hooked c "$i" && hooked="$hooked $i"; done
  gone=$(inns c ip link show ppp1 >/dev/null 2>&1 && echo present || echo gone)
  if [ "$rules" = 0 ] && [ "$hooked" = " ppp0 tun0 ppp9" ] && [ "$gone" = gone ]; then
    pass "eBPF: programs on each interface present ($hooked), one per direction; no queue rule"
  else
    fail "eBPF: hooked '$hooked' (want ppp0 tun0 ppp9), $rules queue rules, ppp1 $gone"
  fi
elif [ "$rules" = 3 ]; then
  pass "one queue rule per [[tunnel]] in TUNSHIM-POST (ppp+, tun+, ppp9), whatever the instances"
else
  fail "TUNSHIM-POST has $rules NFQUEUE rules (want 3): $(inns c iptables-nft -t mangle -S TUNSHIM-POST)"
fi

# Stats: the live instance has a row, the ones gone do not; ppp+'s totals count them all
# (5 + 4 x 10 SYNs out, clamped).
J=$(stats_json) || die "tunshim stats failed"
rows=$(printf '%s' "$J" | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
print(" ".join(sorted(t["interface"] for t in d["tunnels"])))')
if [ "$rows" = "ppp0 ppp9 tun0" ]; then
  pass "stats rows: $rows (the gone ppp1 instances dropped out)"
else
  fail "stats rows: '$rows' (want 'ppp0 ppp9 tun0')"
fi
totals=$(printf '%s' "$J" | "$PY" -c '
import json, sys
g = json.load(sys.stdin)["global"]
p = "ppp+"
print(g["pattern_syn_total"][p]["out"]["clamped"], g["pattern_interfaces_appeared_total"][p],
      g["pattern_interfaces_gone_total"][p], g["pattern_interfaces"][p])')
if [ "$totals" = "45 5 4 1" ]; then
  pass "ppp+ totals: 45 SYNs clamped out over 5 instances, 4 gone, 1 now"
else
  fail "ppp+ totals (clamped appeared gone now): '$totals' (want '45 5 4 1')"
fi

# ---- the views of many tunnels ----------------------------------------------------------
# Eleven more ppp+ sessions: 12 instances, more than the 8 the summary shows as columns.
for i in 1 2 3 4 5 6 7 8 10 11 12; do
  ip link add "ppp$i" netns "$(ns c)" type veth peer name "d$i" netns "$(ns s)"
  ip -n "$(ns c)" link set "ppp$i" up
done
ctl() { "$TUNSHIM_BIN" stats --socket "$E2E_TMP/ctl.sock" "$@"; }
ppp_now() { stats_json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["global"]["pattern_interfaces"]["ppp+"])'; }
twelve() { [ "$(ppp_now)" = 12 ]; }
wait_for 10 twelve || fail "ppp+ has $(ppp_now) instances after adding 11 (want 12)"

ctl >"$E2E_TMP/summary.txt" 2>&1 || fail "tunshim stats: exit $?: $(cat "$E2E_TMP/summary.txt")"
log "tunshim stats with 12 ppp+ sessions:"
sed 's/^/    /' "$E2E_TMP/summary.txt"
# 5 + 11 appeared, 4 gone; the 45 SYNs clamped out are the pattern's total, gone ones included.
want_line='ppp+: 12 interfaces now (16 appeared, 4 gone): 12 up; path MTU -; SYN out clamped/inserted 45 / 0, in 0 / 0'
if grep -qxF "$want_line" "$E2E_TMP/summary.txt"; then
  pass "summary line: $want_line"
else
  fail "no summary line '$want_line' in: $(grep '^ppp+' "$E2E_TMP/summary.txt")"
fi
grep -qxF 'tun+: 1 interface now (1 appeared, 0 gone): 1 up; path MTU -; SYN out clamped/inserted 5 / 0, in 0 / 0' "$E2E_TMP/summary.txt" &&
  pass "tun+ has its own summary line (5 SYNs clamped)" || fail "no tun+ summary line: $(grep '^tun+' "$E2E_TMP/summary.txt")"
head_row=$(grep '^tunnel ' "$E2E_TMP/summary.txt" | tr -s ' ')
if [ "$head_row" = "tunnel ppp9 tun0 (tun+)" ] &&
  grep -qF 'instances of ppp+ (12) not shown: `tunshim stats --all`' "$E2E_TMP/summary.txt" &&
  ! grep -q 'ppp3' "$E2E_TMP/summary.txt"; then
  pass "columns: the exact ppp9 and tun+'s one instance; ppp+'s 12 behind --all"
else
  fail "columns: '$head_row' (want 'tunnel ppp9 tun0 (tun+)'), and a 'not shown' line for ppp+"
fi

ctl --all >"$E2E_TMP/all.txt" 2>&1 || fail "tunshim stats --all: exit $?"
inst=$(grep -cE '^ppp(0|1|2|3|4|5|6|7|8|10|11|12) +ppp\+ +up ' "$E2E_TMP/all.txt" || true)
exact=$(grep -cE '^ppp9 +- +up +- +1100 / 1220 +5 / 0 ' "$E2E_TMP/all.txt" || true)
tun=$(grep -cE '^tun0 +tun\+ +up ' "$E2E_TMP/all.txt" || true)
ppp0=$(grep -E '^ppp0 ' "$E2E_TMP/all.txt" | tr -s ' ')
if [ "$inst/$exact/$tun" = 12/1/1 ] && [ "$(grep -c '^tunnel  pattern  state' "$E2E_TMP/all.txt")" = 1 ] &&
  [ "$ppp0" = "ppp0 ppp+ up - 1200 / 1220 10 / 0 0 / 0 0 / 0 0" ]; then
  pass "--all: a line per tunnel (12 ppp+, ppp9, tun0); ppp0: $ppp0"
else
  fail "--all: $inst ppp+ lines, $exact ppp9, $tun tun0 (want 12/1/1); ppp0: '$ppp0'; $(head -20 "$E2E_TMP/all.txt")"
fi

ctl ppp0 >"$E2E_TMP/one.txt" 2>&1 || fail "tunshim stats ppp0: exit $?"
if [ "$(grep '^tunnel ' "$E2E_TMP/one.txt" | tr -s ' ')" = "tunnel ppp0 (ppp+)" ] &&
  grep -qE '^SYN out clamped/inserted +10 / 0$' "$E2E_TMP/one.txt" &&
  grep -qE '^MSS target v4/v6 +1200 / 1220$' "$E2E_TMP/one.txt" && ! grep -q '^ppp+:' "$E2E_TMP/one.txt"; then
  pass "tunshim stats ppp0: its column alone (10 SYNs since it came back, MSS 1200 / 1220)"
else
  fail "tunshim stats ppp0: $(cat "$E2E_TMP/one.txt")"
fi
ctl 'ppp+' >"$E2E_TMP/pattern.txt" 2>&1 || fail "tunshim stats ppp+: exit $?"
if grep -qxF "$want_line" "$E2E_TMP/pattern.txt" &&
  [ "$(grep -cE '^ppp[0-9]+ +ppp\+ ' "$E2E_TMP/pattern.txt")" = 12 ] && ! grep -qE '^(tun0|ppp9) ' "$E2E_TMP/pattern.txt"; then
  pass "tunshim stats ppp+: its summary and its 12 instances, nothing else"
else
  fail "tunshim stats ppp+: $(cat "$E2E_TMP/pattern.txt")"
fi

rc=0
ctl ppp99 >"$E2E_TMP/none.out" 2>"$E2E_TMP/none.err" || rc=$?
err=$(cat "$E2E_TMP/none.err")
if [ "$rc" = 1 ] && [ ! -s "$E2E_TMP/none.out" ] && [ "$(wc -l <"$E2E_TMP/none.err")" = 1 ] &&
  [ "$err" = 'tunshim: no tunnel ppp99 now: no such interface, or it appeared and went; ppp+ has 12 interfaces now (`tunshim stats --all` lists them)' ]; then
  pass "tunshim stats ppp99: exit 1, one line: $err"
else
  fail "tunshim stats ppp99: exit $rc, stdout '$(cat "$E2E_TMP/none.out")', stderr '$err'"
fi
rc=0
ctl eth7 >/dev/null 2>"$E2E_TMP/none.err" || rc=$?
[ "$rc" = 1 ] && [ "$(cat "$E2E_TMP/none.err")" = "tunshim: no tunnel eth7 (configured: ppp9, ppp+, tun+)" ] &&
  pass "tunshim stats eth7: exit 1, names what is configured" || fail "tunshim stats eth7: exit $rc: $(cat "$E2E_TMP/none.err")"

# JSON: every tunnel as before, plus the patterns' summaries; with IFACE only its tunnel.
got=$(ctl --json | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
p = {x["pattern"]: x for x in d["patterns"]}["ppp+"]
t = {x["interface"]: x for x in d["tunnels"]}
print(len(d["tunnels"]), p["interfaces"], p["appeared"], p["gone"], p["states"], p["syn_total"]["out"]["clamped"],
      t["ppp0"]["pattern"], t["ppp9"]["pattern"], t["ppp0"]["metrics"]["syn_total"]["out"]["clamped"])')
want="14 12 16 4 {'up': 12} 45 ppp+ None 10"
[ "$got" = "$want" ] && pass "--json: 14 tunnels, each with its pattern, and ppp+'s summary ($got)" || fail "--json: '$got' (want '$want')"
got=$(ctl --json ppp0 | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
print([t["interface"] for t in d["tunnels"]], [p["pattern"] for p in d["patterns"]], "queue_packets_total" in d["global"])')
[ "$got" = "['ppp0'] ['ppp+', 'tun+'] True" ] && pass "--json ppp0: only its tunnel, the summaries and globals stay" || fail "--json ppp0: $got"
rc=0; ctl --json ppp99 >/dev/null 2>&1 || rc=$?
[ "$rc" = 1 ] && pass "--json ppp99: exit 1" || fail "--json ppp99: exit $rc"

# --watch with the views (not a terminal: plain frames one after another).
timeout --preserve-status -s INT 2.5 "$TUNSHIM_BIN" stats --socket "$E2E_TMP/ctl.sock" ppp0 --watch 0.5 >"$E2E_TMP/watch1.txt" 2>&1; rc=$?
frames=$(grep -c '^tunnel  *ppp0 (ppp+)$' "$E2E_TMP/watch1.txt" || true)
if [ "$rc" = 0 ] && [ "$frames" -ge 3 ] && grep -qE '^SYN out clamped/inserted +10 / 0  \(0\.0/s / 0\.0/s\)$' "$E2E_TMP/watch1.txt" &&
  ! grep -q 'tun0' "$E2E_TMP/watch1.txt"; then
  pass "--watch 0.5 ppp0: $frames frames of ppp0 alone, with rates"
else
  fail "--watch ppp0: exit $rc, $frames frames: $(head -30 "$E2E_TMP/watch1.txt")"
fi
timeout --preserve-status -s INT 2.5 "$TUNSHIM_BIN" stats --socket "$E2E_TMP/ctl.sock" --all --watch 0.5 >"$E2E_TMP/watch2.txt" 2>&1; rc=$?
frames=$(grep -c '^tunnel  pattern  state' "$E2E_TMP/watch2.txt" || true)
lines=$(grep -cE '^ppp[0-9]+ +ppp\+ ' "$E2E_TMP/watch2.txt" || true)
if [ "$rc" = 0 ] && [ "$frames" -ge 3 ] && [ "$lines" = $((12 * frames)) ] &&
  [ "$(grep -c '^ppp+: 12 interfaces now' "$E2E_TMP/watch2.txt")" = "$frames" ]; then
  pass "--all --watch 0.5: $frames frames, each with ppp+'s line and its 12 rows"
else
  fail "--all --watch: exit $rc, $frames frames, $lines ppp+ rows: $(head -30 "$E2E_TMP/watch2.txt")"
fi
# An instance that goes while watched: the frame says so, the watch goes on. (`--watch
# ppp12`: a word after --watch that is not a number of seconds is the IFACE; 2 s apart.)
timeout --preserve-status -s INT 3.5 "$TUNSHIM_BIN" stats --socket "$E2E_TMP/ctl.sock" --watch ppp12 >"$E2E_TMP/watch3.txt" 2>&1 &
WPID=$!
sleep 1
ip -n "$(ns c)" link del ppp12
wait "$WPID"; rc=$?
if [ "$rc" = 0 ] && grep -q '^tunnel  *ppp12 (ppp+)$' "$E2E_TMP/watch3.txt" &&
  grep -q '^no tunnel ppp12 now: no such interface, or it appeared and went' "$E2E_TMP/watch3.txt"; then
  pass "--watch ppp12: its column, then 'no tunnel ppp12 now' once deleted, still watching"
else
  fail "--watch ppp12 deleted: exit $rc: $(cat "$E2E_TMP/watch3.txt")"
fi

# Back to a few: ppp+'s instances get their columns again.
for i in 1 2 3 4 5 6 7 8 10 11; do ip -n "$(ns c)" link del "ppp$i"; done
one() { [ "$(ppp_now)" = 1 ]; }
wait_for 10 one || fail "ppp+ has $(ppp_now) instances after deleting the eleven (want 1)"
# (Exact names first, then instances in the order they appeared.)
head_row=$(ctl | grep '^tunnel ' | tr -s ' ')
case $head_row in
  "tunnel ppp9 ppp0 (ppp+) tun0 (tun+)" | "tunnel ppp9 tun0 (tun+) ppp0 (ppp+)")
    pass "one ppp+ instance again: columns '$head_row', no summary of hidden rows" ;;
  *) fail "columns with one ppp+ instance: '$head_row'" ;;
esac
ctl | grep -q 'not shown' && fail "a 'not shown' line with one ppp+ instance"

kill -TERM "$TPID"
wait "$TPID" 2>/dev/null || true
if grep -q "instance ends" "$E2E_TMP/tunshim.log" && ! grep -qE ' (error|critical): ' "$E2E_TMP/tunshim.log"; then
  pass "the log names each instance's end and has no errors"
else
  fail "log: $(grep -cE ' (error|critical): ' "$E2E_TMP/tunshim.log") error lines; instance ends: $(grep -c 'instance ends' "$E2E_TMP/tunshim.log")"
fi
finish
