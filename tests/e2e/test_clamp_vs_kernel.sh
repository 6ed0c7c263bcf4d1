#!/usr/bin/env bash
# Differential test: tunshim's MSS clamp against the kernel's own TCPMSS target.
#
#   tx namespace                                  rx namespace
#   raw IP socket ─► mangle POSTROUTING ─► vtx ══ vrx ─► AF_PACKET capture
#                    -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss N (per dst address)
#
# diff_cases.py builds ~400 packets (each with a declared expectation), diff_wire.py sends
# exactly those bytes through the rule and records what arrives, `tunshim clamp` runs over
# the same bytes, and diff_compare.py requires identical output except for the four
# differences docs/CLAMP.md lists. Nothing is forwarded (TTL untouched); the rules use no
# conntrack, so no defragmentation happens and fragments meet TCPMSS as they are.
#
# DIFF_KERNEL_ONLY=1 runs the kernel half alone (checks each case's declared kernel
# behaviour) and reports a failure for the comparison it did not make.
. "$(dirname "$0")/lib.sh"

HERE=$(cd "$(dirname "$0")" && pwd)
require_root
require_cmd ip iptables-nft ip6tables-nft nft "$PY"
KERNEL_ONLY=${DIFF_KERNEL_ONLY:-}
if [ -z "$KERNEL_ONLY" ] && [ ! -x "$TUNSHIM_BIN" ]; then
  skip "no tunshim binary at $TUNSHIM_BIN (build the tunshim target, or set TUNSHIM_BIN)"
fi

eval "$("$PY" "$HERE/diff_cases.py" config)"
CASES=$E2E_TMP/cases
"$PY" "$HERE/diff_cases.py" generate "$CASES" || die "case generator failed"

# ---- two namespaces joined by a veth ----------------------------------------------------
mkns tx
mkns rx
ip link add vtx netns "$(ns tx)" type veth peer name vrx netns "$(ns rx)"
# rx only listens: no IPv6 (no RS/MLD chatter of its own), no address, answers nothing.
inns rx sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
inns rx ip link set vrx up
# tx: no link-local address (nothing of its own to say), our addresses usable at once.
inns tx ip link set vtx addrgenmode none
inns tx ip link set vtx up
inns tx ip addr add "$SRC4/$PREFIX4" dev vtx
inns tx ip -6 addr add "$SRC6/$PREFIX6" dev vtx nodad
RX_MAC=$(inns rx cat /sys/class/net/vrx/address)
for g in $DIFF_GROUPS; do
  d4=DST4_$g d6=DST6_$g m4=MSS4_$g m6=MSS6_$g
  # Static neighbours: the first packet must not wait for (or be lost to) resolution.
  inns tx ip neigh replace "${!d4}" lladdr "$RX_MAC" dev vtx nud permanent
  inns tx ip -6 neigh replace "${!d6}" lladdr "$RX_MAC" dev vtx nud permanent
  inns tx iptables-nft -t mangle -A POSTROUTING -o vtx -d "${!d4}" \
    -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss "${!m4}"
  inns tx ip6tables-nft -t mangle -A POSTROUTING -o vtx -d "${!d6}" \
    -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss "${!m6}"
done
log "kernel rules in tx:"
{ inns tx iptables-nft -t mangle -S POSTROUTING; inns tx ip6tables-nft -t mangle -S POSTROUTING; } | sed 's/^/    /'
# iptables-nft matches natively and runs the xt TCPMSS target through nft_compat: that
# target (net/netfilter/xt_TCPMSS.c) is the reference, not nft's own `maxseg size set`.
NFT_DEBUG=$(inns tx nft --debug=netlink list ruleset 2>/dev/null)
[ "$(grep -c 'target name TCPMSS' <<<"$NFT_DEBUG")" -eq $((2 * $(wc -w <<<"$DIFF_GROUPS"))) ] ||
  die "the rules do not use the xt TCPMSS target: $NFT_DEBUG"
if grep -Eq 'ct (state|status)|conntrack|notrack|name (state|conntrack)' <<<"$NFT_DEBUG"; then
  die "conntrack is in use in tx: fragments would be reassembled before TCPMSS"
fi

# ---- the kernel half --------------------------------------------------------------------
KPCAP=$E2E_TMP/kernel.pcap
READY=$E2E_TMP/capture.ready
inns rx "$PY" "$HERE/diff_wire.py" capture vrx "$KPCAP" "$READY" 20 >"$E2E_TMP/capture.log" 2>&1 &
CAP_PID=$!   # ends by itself (sentinel or 20 s); lib.sh's trap kills what is left in rx
wait_for 10 test -e "$READY" || die "capture did not start: $(cat "$E2E_TMP/capture.log")"
SENT=$E2E_TMP/sent.json
if inns tx "$PY" "$HERE/diff_wire.py" send "$CASES/cases.json" "$SENT"; then
  pass "every case left the raw socket or was dropped by netfilter"
else
  fail "the raw socket refused some cases (see above)"
fi
if wait "$CAP_PID"; then
  pass "$(cat "$E2E_TMP/capture.log")"
else
  fail "capture: $(cat "$E2E_TMP/capture.log")"
fi
log "rule counters (packets bytes):"
inns tx iptables-nft -t mangle -L POSTROUTING -v -n -x | sed 's/^/    /'
inns tx ip6tables-nft -t mangle -L POSTROUTING -v -n -x | sed 's/^/    /'

# ---- tunshim, and the comparison ---------------------------------------------------------
VERDICTS=$E2E_TMP/verdicts
set +e
if [ -n "$KERNEL_ONLY" ]; then
  "$PY" "$HERE/diff_compare.py" "$CASES" "$KPCAP" "$SENT" "$E2E_TMP/work" "$VERDICTS"
else
  "$PY" "$HERE/diff_compare.py" "$CASES" "$KPCAP" "$SENT" "$E2E_TMP/work" "$VERDICTS" "$TUNSHIM_BIN"
fi
rc=$?
set -e
[ -s "$VERDICTS" ] || die "comparator wrote no verdicts (exit $rc)"
while IFS=$'\t' read -r verdict name detail; do
  if [ "$verdict" = PASS ]; then pass "$name ($detail)"; else fail "$name: $detail"; fi
done <"$VERDICTS"
[ "$rc" -eq 0 ] || [ "$E2E_FAILS" -gt 0 ] || fail "comparator exited $rc without naming a failure"
finish
