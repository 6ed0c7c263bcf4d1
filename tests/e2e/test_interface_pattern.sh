#!/usr/bin/env bash
# Interface patterns. A client's VPN comes back as ppp1 (pppd takes the lowest free unit
# while ppp0 is still being torn down), then as ppp0 again: with interface = "ppp+" every
# SYN leaving it carries ppp+'s MSS from the very first connection after the interface
# appears, with no config change. A second pattern (tun+) with other settings and an
# exact name inside the first pattern (ppp9, which beats ppp+) clamp to their own values
# on the same host. Gone instances leave `tunshim stats`; the pattern's totals stay.
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

# The rules did not grow: one pair per pattern or name.
rules=$(inns c iptables-nft -t mangle -S TUNSHIM-POST | grep -c -- '-j NFQUEUE' || true)
if [ "$rules" = 3 ]; then
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

kill -TERM "$TPID"
wait "$TPID" 2>/dev/null || true
if grep -q "instance ends" "$E2E_TMP/tunshim.log" && ! grep -qE ' (error|critical): ' "$E2E_TMP/tunshim.log"; then
  pass "the log names each instance's end and has no errors"
else
  fail "log: $(grep -cE ' (error|critical): ' "$E2E_TMP/tunshim.log") error lines; instance ends: $(grep -c 'instance ends' "$E2E_TMP/tunshim.log")"
fi
finish
