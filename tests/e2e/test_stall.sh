#!/usr/bin/env bash
# A stalled daemon never holds new connections (docs/DAEMON.md, "Fail-open"). On the tunnel
# lab: tunshim is stopped with SIGSTOP, so its event loop neither reads the queue nor
# answers, while the queue is neither full (fail-open) nor unbound (--queue-bypass). Its
# stall watchdog, a process sharing the queue's socket, must accept the waiting SYNs: 20
# connects through the tunnel each complete within a few seconds (unclamped is allowed).
# After SIGCONT the daemon logs how many packets went by unclamped and clamps again; the
# watchdog holds no descriptor but the queue's socket and its eventfd, and dies with the
# daemon (kill -9): the queue is then unbound and the orphaned rules bypass it. Every
# socket of the daemon is close-on-exec.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lab.sh"

MSS=1300
CONNECTS=20
LIMIT_MS=5000   # "a few seconds": the watchdog takes over after about 1 s

lab_up
lab_server_start
lab_tunshim_conf "$MSS"
lab_tunshim_start
TS=$LAB_TUNSHIM_PID
on_exit "kill -CONT $TS"

# shellcheck disable=SC2046
set -- $(lab_request_syn_mss client "$LAB_S_TUN")
if [ "${1:-0}" = 1000 ] && [ "${2:-}" = "$MSS" ]; then pass "before the stall: connect clamped to $MSS"
else fail "before the stall: bytes/SYN MSS '$*' (want 1000 $MSS)"; fi

wd=$(pgrep -P "$TS" -x tunshim-wd || true)
if [ -n "$wd" ]; then pass "the stall watchdog runs (pid $wd, a child of tunshim $TS)"
else fail "no tunshim-wd child of tunshim $TS"; fi

# What the watchdog holds: stdio, the queue's netlink socket (the same socket as the
# daemon's: same inode) and an eventfd. Nothing a hook or the rules could trip over.
if [ -n "$wd" ]; then
  extra=$(ls -l "/proc/$wd/fd" | awk 'NR > 1 { print $9, $11 }' |
    grep -v -E '^[012] ' | grep -v -E 'anon_inode:\[eventfd\]' | grep -v -E 'socket:\[' || true)
  qsock=$(ls -l "/proc/$wd/fd" | grep -o 'socket:\[[0-9]*\]' | sort -u)
  if [ -z "$extra" ] && [ "$(wc -l <<<"$qsock")" = 1 ] && ls -l "/proc/$TS/fd" | grep -qF "$qsock"; then
    pass "the watchdog holds only stdio, an eventfd and the daemon's queue socket $qsock"
  else fail "the watchdog holds more: ${extra:-} (sockets: $qsock)"; fi
fi

# Every socket and anonymous inode (eventfd, epoll, pidfd…) the daemon holds is
# close-on-exec: hooks and the firewall programs it runs inherit none of them (the queue,
# rtnetlink, ICMP sockets…). Files and pipes are left out: those it inherited from this
# test's shell are not its own.
leaky=""; count=0
for fd in /proc/"$TS"/fdinfo/*; do
  n=${fd##*/}
  target=$(readlink "/proc/$TS/fd/$n" 2>/dev/null) || continue
  case $target in socket:*|anon_inode:*) ;; *) continue ;; esac
  flags=$(awk '/^flags:/ { print $2 }' "$fd" 2>/dev/null) || continue
  [ -n "$flags" ] || continue
  count=$((count + 1))
  (( (8#$flags & 8#2000000) != 0 )) || leaky+="$n=$target "
done
[ -z "$leaky" ] && pass "all $count sockets and anonymous inodes of the daemon are close-on-exec" ||
  fail "descriptors without close-on-exec: $leaky"

# ---- the stall -------------------------------------------------------------------------------
kill -STOP "$TS"
log "tunshim $TS stopped (SIGSTOP)"
f="$E2E_TMP/stall.pcap"
lab_capture_start server tun0 "$f" tcp
ok=0; worst=0; times=""
for i in $(seq 1 "$CONNECTS"); do
  t0=$(date +%s%N)
  n=$(lab_download client "$LAB_S_TUN" 1000 6)
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  times+="$ms "
  [ "$ms" -le "$worst" ] || worst=$ms
  if [ "$n" = 1000 ] && [ "$ms" -le "$LIMIT_MS" ]; then ok=$((ok + 1)); fi
done
lab_capture_stop
log "connect+request times with tunshim stopped (ms): $times"
if [ "$ok" = "$CONNECTS" ]; then
  pass "$ok of $CONNECTS connects through the tunnel completed within $LIMIT_MS ms each while tunshim was stopped (slowest $worst ms)"
else fail "only $ok of $CONNECTS connects completed within $LIMIT_MS ms while tunshim was stopped (slowest $worst ms)"; fi
mss=$(lab_syn_mss "$f" 0x002 | sort | uniq -c | tr -s ' ' | tr '\n' ';')
log "SYN MSS at the server during the stall (count mss): $mss"
if grep -q "tunshim-watchdog.*stalled" "$LAB_TUNSHIM_LOG"; then pass "the watchdog said it took over: $(grep -m1 'tunshim-watchdog.*stalled' "$LAB_TUNSHIM_LOG")"
else fail "the watchdog logged nothing"; fi

# ---- resumption ------------------------------------------------------------------------------
kill -CONT "$TS"
if wait_for 5 lab_tunshim_logged 'passed unclamped while the event loop was stalled'; then
  line=$(grep 'passed unclamped while the event loop was stalled' "$LAB_TUNSHIM_LOG" | head -1)
  npass=$(sed -E 's/.*: ([0-9]+) packet\(s\) passed.*/\1/' <<<"$line")
  if [ "${npass:-0}" -ge "$CONNECTS" ]; then pass "after SIGCONT the daemon logged it: ${line#*nfqueue }"
  else fail "the daemon counted $npass packets passed (want >= $CONNECTS SYNs): $line"; fi
else fail "after SIGCONT no 'passed unclamped while the event loop was stalled' line"; fi
wait_for 5 lab_tunshim_logged 'tunshim-watchdog.*resumed' || fail "the watchdog did not say it stopped"
ok=0
for i in 1 2 3; do
  # shellcheck disable=SC2046
  set -- $(lab_request_syn_mss client "$LAB_S_TUN")
  if [ "${1:-0}" = 1000 ] && [ "${2:-}" = "$MSS" ] && [ $# -eq 2 ]; then ok=$((ok + 1))
  else log "after SIGCONT, connect $i: bytes/SYN MSS '$*'"; fi
done
[ "$ok" = 3 ] && pass "after SIGCONT 3 of 3 connects clamped to $MSS again" ||
  fail "after SIGCONT only $ok of 3 connects clamped to $MSS"

# A second stall works like the first: the watchdog went back to watching.
kill -STOP "$TS"
t0=$(date +%s%N)
n=$(lab_download client "$LAB_S_TUN" 1000 6)
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
kill -CONT "$TS"
if [ "$n" = 1000 ] && [ "$ms" -le "$LIMIT_MS" ]; then pass "a second stall: the connect completed in $ms ms"
else fail "a second stall: $n bytes in $ms ms"; fi
# shellcheck disable=SC2046
set -- $(lab_request_syn_mss client "$LAB_S_TUN")
[ "${2:-}" = "$MSS" ] && pass "and clamping resumed after it" || fail "after the second stall: '$*'"

# ---- the watchdog dies with the daemon -----------------------------------------------------
kill -9 "$TS"
wait_for 5 lab_gone "$TS" || fail "tunshim survived kill -9"
LAB_TUNSHIM_PID=""
if [ -n "$wd" ] && wait_for 5 lab_gone "$wd"; then pass "kill -9 of the daemon took the watchdog with it"
else fail "the watchdog $wd outlived the daemon"; fi
bound() { inns client awk "\$1 == 4770" /proc/net/netfilter/nfnetlink_queue | grep -q .; }
if ! bound; then pass "the queue is unbound (nobody holds its socket)"
else fail "queue still bound after the daemon died: $(inns client cat /proc/net/netfilter/nfnetlink_queue)"; fi
n=$(lab_download client "$LAB_S_TUN" 1000 5)
[ "$n" = 1000 ] && pass "with the daemon dead a connect passes the orphaned rules (--queue-bypass)" ||
  fail "with the daemon dead a connect failed ($n bytes)"

finish
