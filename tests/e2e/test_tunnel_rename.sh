#!/usr/bin/env bash
# Two tunnel interfaces swap names while tunshim runs (ppp0 <-> ppp1, each configured with
# its own MSS): from the first SYN after the swap, every SYN leaving an interface carries
# the MSS configured for the name the interface has now, never the other tunnel's. The
# per-packet lookup is keyed by ifindex and follows rtnetlink, which is read before each
# batch of queued packets; a cache that outlives the name would clamp to the old name's
# MSS for as long as it lives.
#
#   c ── ppp0 (veth) ── a0 ─ s      10.81.0.0/24   ppp0: mss 1200
#   c ── ppp1 (veth) ── a1 ─ s      10.81.1.0/24   ppp1: mss 1300
# s counts arriving SYNs by interface and MSS (nft); nothing answers them (a closed port
# answers RST, which is all a SYN needs here).
. "$(dirname "$0")/lib.sh"

require_root
require_cmd nft ip "$PY"
[ -x "$TUNSHIM_BIN" ] || die "TUNSHIM_BIN=$TUNSHIM_BIN is not executable"

mkns c
mkns s
for i in 0 1; do
  ip link add "ppp$i" netns "$(ns c)" type veth peer name "a$i" netns "$(ns s)"
  inns c ip addr add "10.81.$i.1/24" dev "ppp$i"
  inns s ip addr add "10.81.$i.2/24" dev "a$i"
  inns c ip link set "ppp$i" up
  inns s ip link set "a$i" up
done
inns c ethtool -K ppp0 gso off tso off >/dev/null 2>&1 || true

inns s nft -f - <<'EOF'
table inet count {
  chain in {
    type filter hook input priority -300; policy accept;
    iifname "a0" tcp flags syn tcp option maxseg size 1200 counter name a0_1200
    iifname "a0" tcp flags syn tcp option maxseg size 1300 counter name a0_1300
    iifname "a1" tcp flags syn tcp option maxseg size 1200 counter name a1_1200
    iifname "a1" tcp flags syn tcp option maxseg size 1300 counter name a1_1300
  }
  counter a0_1200 {}
  counter a0_1300 {}
  counter a1_1200 {}
  counter a1_1300 {}
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
interface = "ppp0"
mss = 1200
mss6 = 1220
keepalive = "off"

[[tunnel]]
interface = "ppp1"
mss = 1300
mss6 = 1280
keepalive = "off"
EOF
e2e_tunshim_start c "$CONF"
TPID=$E2E_TUNSHIM_PID

syns() { e2e_syns c "$1" "$2"; }

syns 10.81.0.2 5
syns 10.81.1.2 5
if [ "$(count a0_1200)" = 5 ] && [ "$(count a1_1300)" = 5 ]; then
  pass "before the swap: ppp0's SYNs carry 1200, ppp1's 1300"
else
  fail "before the swap: a0 1200=$(count a0_1200) 1300=$(count a0_1300), a1 1200=$(count a1_1200) 1300=$(count a1_1300)"
fi

# Swap the names, then send at once: the interface that reaches 10.81.0.2 is called ppp1
# now and must get ppp1's MSS. Repeated, so a stale mapping has many chances to show.
wrong=0; right=0
for round in 1 2 3 4 5 6; do
  reset_counts
  syns 10.81.0.2 3  # warm: whatever the daemon caches, it has this index now
  syns 10.81.1.2 3
  reset_counts
  inns c ip link set ppp0 down
  inns c ip link set ppp1 down
  inns c ip link set ppp0 name tmpx
  inns c ip link set ppp1 name ppp0
  inns c ip link set tmpx name ppp1
  inns c ip link set ppp0 up
  inns c ip link set ppp1 up
  syns 10.81.0.2 10
  syns 10.81.1.2 10
  # a0's device is now named ppp0 on even rounds and ppp1 on odd ones.
  if [ $((round % 2)) = 1 ]; then want_a0=1300 want_a1=1200; else want_a0=1200 want_a1=1300; fi
  other_a0=$((2500 - want_a0)); other_a1=$((2500 - want_a1))
  r=$(($(count "a0_$want_a0") + $(count "a1_$want_a1")))
  w=$(($(count "a0_$other_a0") + $(count "a1_$other_a1")))
  right=$((right + r)); wrong=$((wrong + w))
  log "round $round: $r SYNs with the new name's MSS, $w with the old name's"
done
if [ "$wrong" = 0 ] && [ "$right" = 120 ]; then
  pass "after 6 name swaps: all $right SYNs sent right after a swap carry the MSS of the interface's new name"
else
  fail "after name swaps: $right SYNs with the new name's MSS, $wrong with the other tunnel's (want 120 / 0)"
fi

kill -TERM "$TPID"
wait "$TPID" 2>/dev/null || true
finish
