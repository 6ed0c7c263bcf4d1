#!/usr/bin/env bash
# A concentrator: 1,000 sessions ppp0..ppp999 (TUN interfaces, tun_farm.py as every peer,
# each with an MTU of its own) appear in bursts while tunshim runs with
# interface = "ppp+" and mss = "auto". Every one gets its path MTU measured (a bounded
# number of searches at a time); SYNs forwarded from a LAN host across a random sample
# are all clamped to their own interface's target (MTU - 40); the rules stay one pair.
# Then sessions churn (deleted and re-created at ~50/s): afterwards the daemon's open
# descriptors and resident memory are where they were, and /metrics passes promtool.
#
#   l ── lan0 ── c (tunshim, ip_forward) ── ppp0..ppp999 ── tun_farm.py (in c)
#   10.63.0.2    10.63.0.1                   10.64.0.1 peer 10.65.x.y
#
# Bounded: SCALE_N interfaces (default 1,000; 300 against a sanitizer build, whose
# daemon is several times slower and larger), SCALE_CHURN seconds of churn (default 20; 10
# under a sanitizer), so that CI stays well inside its limit.
. "$(dirname "$0")/lib.sh"

require_root
require_cmd nft ip "$PY"
[ -x "$TUNSHIM_BIN" ] || die "TUNSHIM_BIN=$TUNSHIM_BIN is not executable"
if e2e_sanitized; then N=${SCALE_N:-300} CHURN=${SCALE_CHURN:-10}; else N=${SCALE_N:-1000} CHURN=${SCALE_CHURN:-20}; fi
SAMPLE=40
HERE=$(cd "$(dirname "$0")" && pwd)

mkns c
mkns l
ip link add lan0 netns "$(ns c)" type veth peer name l0 netns "$(ns l)"
inns c ip addr add 10.63.0.1/24 dev lan0
inns l ip addr add 10.63.0.2/24 dev l0
inns c ip link set lan0 up
inns l ip link set l0 up
inns l ip route add default via 10.63.0.1
inns c sysctl -qw net.ipv4.ip_forward=1

CONF="$E2E_TMP/tunshim.conf"
cat >"$CONF" <<EOF
[global]
log_level = "info"
stats_listen = "127.0.0.1:9477"
control_socket = "$E2E_TMP/ctl.sock"
max_concurrent_searches = ${SCALE_SEARCHES:-64}

[[tunnel]]
interface = "ppp+"
mss = "auto"
keepalive = "off"
EOF
# A 1 MiB rtnetlink buffer (test knob; 4 MB in production) so that the overrun step below
# overflows it with a few hundred session changes.
TUNSHIM_TEST_RTNL_RCVBUF=1048576 e2e_tunshim_start c "$CONF"
TPID=$E2E_TUNSHIM_PID

# The farm reads commands from a fifo and answers on a file.
mkfifo "$E2E_TMP/farm.in"
inns c "$PY" "$HERE/tun_farm.py" <"$E2E_TMP/farm.in" >"$E2E_TMP/farm.out" 2>"$E2E_TMP/farm.err" &
FPID=$!
on_exit "kill -9 $FPID"
exec 7>"$E2E_TMP/farm.in"
answers() { grep -c '^ok' "$E2E_TMP/farm.out" || true; }
more_answers() { [ "$(answers)" -gt "$1" ]; }
farm() {  # farm COMMAND…: runs it, logs the answer; a farm that stops answering ends the test
  local before
  before=$(answers)
  echo "$*" >&7
  wait_for "${FARM_WAIT:-120}" more_answers "$before" ||
    die "tun_farm did not answer '$*': $(cat "$E2E_TMP/farm.err")"
  log "farm: $(tail -1 "$E2E_TMP/farm.out")"
}

metric() {  # metric NAME: one sample's value from /metrics (inside c)
  inns c curl -s http://127.0.0.1:9477/metrics | awk -v n="$1" '$1 == n {print $2}'
}
measured() { metric 'tunshim_pattern_interfaces_measured{pattern="ppp+"}'; }
all_measured() { [ "$(measured)" = "$N" ]; }

T0=$SECONDS
farm create 0 "$N" 100 0.1
if wait_for 90 all_measured; then
  pass "all $N interfaces have a measured path MTU, $((SECONDS - T0)) s after the first appeared"
else
  fail "after 90 s: $(measured) of $N interfaces measured; searches $(metric 'tunshim_pmtu_searches{state="running"}') running, $(metric 'tunshim_pmtu_searches{state="waiting"}') waiting"
fi
rules=$(inns c iptables-nft -t mangle -S TUNSHIM-POST | grep -c -- '-j NFQUEUE' || true)
if [ "$rules" -le 2 ]; then
  pass "$rules queue rule(s) in TUNSHIM-POST for $N interfaces"
else
  fail "TUNSHIM-POST has $rules NFQUEUE rules for one pattern"
fi

# syn_sample WHAT: a random sample of interfaces; each one's SYNs, forwarded from the LAN
# host, must carry its own MTU - 40 (tun_farm's mtu()).
syn_sample() {
  local sample peers i m ok=0 bad=0
  sample=$(shuf -i 0-$((N - 1)) -n "$SAMPLE" | sort -n)
  inns c nft delete table ip count 2>/dev/null || true
  {
    echo "table ip count {"
    echo "  chain post { type filter hook postrouting priority 100; policy accept;"
    for i in $sample; do
      m=$((1300 + (i * 37) % 180 - 40))
      echo "    oifname \"ppp$i\" tcp flags syn tcp option maxseg size $m counter name ok$i"
      echo "    oifname \"ppp$i\" tcp flags syn tcp option maxseg size != $m counter name bad$i"
    done
    echo "  }"
    for i in $sample; do echo "  counter ok$i {}"; echo "  counter bad$i {}"; done
    echo "}"
  } | inns c nft -f -
  peers=""
  for i in $sample; do peers="$peers 10.65.$((i / 250)).$((i % 250 + 1))"; done
  # Three SYNs to each (non-blocking connects from the LAN host, forwarded by c).
  inns l "$PY" - $peers <<'PYEOF'
import socket, sys, time
socks = []
for _ in range(3):
    for dst in sys.argv[1:]:
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((dst, 9))
        socks.append(s)
    time.sleep(0.2)
time.sleep(0.5)
PYEOF
  for i in $sample; do
    ok=$((ok + $(inns c nft list counter ip count "ok$i" | awk '/packets/ {print $2}')))
    bad=$((bad + $(inns c nft list counter ip count "bad$i" | awk '/packets/ {print $2}')))
  done
  # Each connect sends one SYN at once (retransmissions, later, carry the same MSS).
  if [ "$bad" = 0 ] && [ "$ok" -ge $((SAMPLE * 3)) ]; then
    pass "$1: $SAMPLE random interfaces: all $ok SYNs carry their own interface's MTU - 40"
  else
    fail "$1: sample of $SAMPLE: $ok SYNs with their own target, $bad without (want >= $((SAMPLE * 3)) / 0)"
  fi
}
syn_sample "after the bursts"

if command -v promtool >/dev/null; then
  if inns c curl -s http://127.0.0.1:9477/metrics | promtool check metrics >"$E2E_TMP/promtool.out" 2>&1; then
    pass "/metrics with $N tunnels passes promtool check metrics ($(inns c curl -s http://127.0.0.1:9477/metrics | wc -c) bytes)"
  else
    fail "promtool: $(head -5 "$E2E_TMP/promtool.out")"
  fi
fi

# The daemon itself ($TPID is the shell that started it in the namespace).
DPID=$(for p in $(ip netns pids "$(ns c)"); do
  if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = tunshim ]; then echo "$p"; fi
done | head -1)
[ -n "$DPID" ] || die "no tunshim process in the namespace"
fds() { ls "/proc/$DPID/fd" | wc -l; }
rss() { awk '/^VmRSS/ {print $2}' "/proc/$DPID/status"; }
fd0=$(fds) rss0=$(rss)
log "before churn: $fd0 descriptors, RSS $rss0 kB"
gone0=$(metric 'tunshim_pattern_interfaces_gone_total{pattern="ppp+"}'); gone0=${gone0:-0}
FARM_WAIT=$((CHURN + 30)) farm churn "$CHURN" 50 0 "$N"
wait_for 60 all_measured || log "after churn: $(measured) of $N measured"
fd1=$(fds) rss1=$(rss)
log "after churn: $fd1 descriptors, RSS $rss1 kB"
gone=$(metric 'tunshim_pattern_interfaces_gone_total{pattern="ppp+"}')
appeared=$(metric 'tunshim_pattern_interfaces_appeared_total{pattern="ppp+"}')
now=$(metric 'tunshim_pattern_interfaces{pattern="ppp+"}')
churned=$(sed -n 's/^ok churned \([0-9]*\) .*/\1/p' "$E2E_TMP/farm.out")
# The daemon's books must balance exactly (appeared - gone = what exists); against the farm's
# own count of sessions it ended a difference of a few is allowed (once 473 seen gone for
# 470, and 452 for 446 under ASan on a loaded host, before stale notifications were
# discarded at an overrun; the cause of the first is not known for certain).
# An overrun of the daemon's rtnetlink socket (a loaded host) makes it re-read every
# interface: a session re-created twice before the re-read is then seen to end once.
lost=$(grep -c 'notifications lost' "$E2E_TMP/tunshim.log" || true)
dgone=$((gone - gone0))
diff=$((dgone > churned ? dgone - churned : churned - dgone))
distinct=$(sed -n 's/^ok churned .*, \([0-9]*\) distinct/\1/p' "$E2E_TMP/farm.out")
[ "$lost" = 0 ] || log "$lost rtnetlink overrun(s) during the churn: fewer ends may be seen"
if [ "$now" = "$N" ] && [ "$((appeared - gone))" = "$N" ] &&
  { [ "$diff" -le $((churned / 100 + 1)) ] ||
    { [ "$lost" != 0 ] && [ "$dgone" -le "$churned" ] && [ "$dgone" -ge "$distinct" ]; }; }; then
  pass "churn: $dgone sessions seen gone during churn for $churned the farm ended, as many started; $now now"
else
  fail "churn: farm re-created $churned; tunshim appeared $appeared gone $gone (during churn $dgone) now $now (want now $N = appeared - gone, gone during churn ~ $churned)"
fi
# Flat: a descriptor or an instance leaked per session would show as hundreds here.
rss_ok() { e2e_sanitized || [ "$rss1" -le $((rss0 + rss0 / 10 + 2048)) ]; }  # lib.sh: why not under ASan
if [ "$fd1" -le $((fd0 + 10)) ] && rss_ok; then
  pass "descriptors $fd0 -> $fd1, RSS $rss0 -> $rss1 kB after churn: flat"
else
  fail "descriptors $fd0 -> $fd1, RSS $rss0 -> $rss1 kB after churn (allowed: +10 fds, +10 % + 2 MB)"
fi

# Notifications lost: the daemon stopped (SIGSTOP; the queue's watchdog passes packets
# meanwhile) while sessions churn fills its rtnetlink socket until the kernel drops. On
# SIGCONT it reads ENOBUFS and re-reads every interface; what it has must then be exactly
# what exists: books that balance, and every sampled interface's SYNs clamped by its own
# tunnel (a stale queued notification applied after the re-read would hand a name's
# tunnel a deleted interface's index). Every notification since it stopped is lost, so
# it sees each re-created interface end once however often it was re-created: exactly
# as many ends as the farm churned distinct interfaces.
lost0=$(grep -c 'notifications lost' "$E2E_TMP/tunshim.log" || true)
gone0=$(metric 'tunshim_pattern_interfaces_gone_total{pattern="ppp+"}')
kill -STOP "$DPID"
FARM_WAIT=40 farm churn 8 150 0 "$N"
kill -CONT "$DPID"
wait_for 60 all_measured || log "after the overrun: $(measured) of $N measured"
lost=$(( $(grep -c 'notifications lost' "$E2E_TMP/tunshim.log" || true) - lost0 ))
churned=$(sed -n 's/^ok churned \([0-9]*\) .*/\1/p' "$E2E_TMP/farm.out" | tail -1)
distinct=$(sed -n 's/^ok churned .*, \([0-9]*\) distinct/\1/p' "$E2E_TMP/farm.out" | tail -1)
gone=$(metric 'tunshim_pattern_interfaces_gone_total{pattern="ppp+"}')
appeared=$(metric 'tunshim_pattern_interfaces_appeared_total{pattern="ppp+"}')
now=$(metric 'tunshim_pattern_interfaces{pattern="ppp+"}')
dgone=$((gone - gone0))
if [ "$lost" -ge 1 ] && [ "$now" = "$N" ] && [ "$((appeared - gone))" = "$N" ] &&
  [ "$dgone" = "$distinct" ]; then
  pass "rtnetlink overrun ($lost re-read(s)) while $churned sessions of $distinct interfaces churned: $dgone seen gone, books balance, $now now"
else
  fail "overrun: $lost re-read(s) (want >= 1), farm churned $churned of $distinct interfaces, tunshim gone $dgone (want $distinct), appeared $appeared gone $gone now $now (want $N)"
fi
syn_sample "after the overrun"

farm quit
kill -TERM "$TPID"
wait "$TPID" 2>/dev/null || true
[ -n "${SCALE_KEEP_LOG:-}" ] && cp "$E2E_TMP/tunshim.log" "$SCALE_KEEP_LOG"
finish
