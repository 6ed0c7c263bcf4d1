#!/bin/bash
# Soak: every fault at once, for a bounded time (TUNSHIM_SOAK_SECONDS, default 90), on the
# tunnel lab (tests/e2e/lab.sh) while connections cross the tunnel without pause:
#   - tunshim killed with SIGKILL twice and restarted at once (a restart cleans up the dead
#     run's rules; the queue fails open in between)
#   - SIGHUP storms: every second a reload, alternately a valid config with another MSS and
#     a broken one
#   - interface flaps: a second configured tunnel (ppp1, a TUN device) deleted and
#     re-created every 2 s
#   - SYN bursts through ppp0 (raw SYNs, 1 s every 10 s)
#   - hostile local clients: 200 idle and slow connections to /metrics from uid 65534, 50
#     idle ones to the control socket, renewed every 15 s
#   - a misbehaving hook: ppp1's on_down prints without end and leaves a detached child
# Expected: zero failed connections (a small request every 0.25 s, each with a 10 s budget),
# a normal scrape and `tunshim stats` answered at the end, and over the last daemon's life
# its open descriptors and resident memory flat. Figures go to docs/RELIABILITY.md.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lab.sh"

SOAK=${TUNSHIM_SOAK_SECONDS:-90}
STATS_PORT=9491
SOCK="$E2E_TMP/ctl.sock"
require_cmd curl setpriv
lab_up
lab_server_start

HOOK="$E2E_TMP/noisy.sh"
cat >"$HOOK" <<'EOF'
#!/bin/bash
# Detaches a child that outlives us, then prints without end.
setsid sleep 6007 </dev/null >/dev/null 2>&1 &
while :; do echo "noisy hook output line, going on and on and on"; done
EOF
chmod 755 "$HOOK"
on_exit 'pkill -f "^sleep 6007$"'  # whatever a failing run leaves behind
conf() {
  cat >"$LAB_TUNSHIM_CONF" <<EOF
[global]
log_level = "info"
stats_listen = "127.0.0.1:$STATS_PORT"
control_socket = "$SOCK"

[[tunnel]]
interface = "ppp0"
mss = $1
keepalive = "off"

[[tunnel]]
interface = "ppp1"
mss = 1200
keepalive = "idle"
keepalive_interval = "1s"
keepalive_target = "10.99.0.2"
down_after_misses = 1
on_down = [["$HOOK"]]
hook_timeout = "2s"
backoff_max = "2s"
EOF
}
broken() { printf '[global]\nlog_level = "info"\n[[tunnel]]\ninterface = "ppp0"\nmss = "lots"\n' >"$LAB_TUNSHIM_CONF"; }
conf 1300
chmod 700 "$E2E_TMP"
lab_tunshim_start

mkppp1() {
  inns client ip tuntap add dev ppp1 mode tun 2>/dev/null || return 0
  inns client ip addr add 10.99.0.1 peer 10.99.0.2 dev ppp1 2>/dev/null || true
  inns client ip link set ppp1 up 2>/dev/null || true
}
mkppp1

END=$((SECONDS + SOAK))
DIR="$E2E_TMP/soak"
mkdir -p "$DIR"

# Connections: a 1000-byte request every 0.25 s; a failure is one that did not complete.
(
  ok=0 bad=0
  while [ $SECONDS -lt $END ]; do
    n=$(lab_download client "$LAB_S_TUN" 1000 10)
    if [ "$n" = 1000 ]; then ok=$((ok + 1)); else bad=$((bad + 1)); fi
    echo "$ok $bad" >"$DIR/conns"
    sleep 0.25
  done
) &
CONN_PID=$!
on_exit "kill $CONN_PID 2>/dev/null"

# Reload storm.
(
  i=0
  while [ $SECONDS -lt $END ]; do
    i=$((i + 1))
    if [ -e "$DIR/restarting" ]; then sleep 1; continue; fi
    if [ $((i % 2)) = 0 ]; then broken; else conf $((1250 + (i % 4) * 10)); fi
    pid=$(cat "$DIR/pid" 2>/dev/null || true)
    [ -z "$pid" ] || kill -HUP "$pid" 2>/dev/null || true
    echo "$i" >"$DIR/reloads"
    sleep 1
  done
  conf 1300
) &
on_exit "kill $! 2>/dev/null"

# Interface flaps.
(
  i=0
  while [ $SECONDS -lt $END ]; do
    inns client ip link del ppp1 2>/dev/null || true
    sleep 1
    mkppp1
    i=$((i + 1))
    echo "$i" >"$DIR/flaps"
    sleep 1
  done
) &
on_exit "kill $! 2>/dev/null"

# SYN bursts.
(
  i=0
  while [ $SECONDS -lt $END ]; do
    sleep 9
    inns client "$PY" "$TUNSHIM_SRC/bench/daemon_synflood.py" --src "$LAB_C_TUN" --dst "$LAB_S_TUN" \
      --seconds 1 >>"$DIR/flood" 2>&1 || true
    i=$((i + 1))
    echo "$i" >"$DIR/bursts"
  done
) &
on_exit "kill $! 2>/dev/null"

# Hostile clients, from uid 65534 for HTTP (anyone can reach loopback), root for the socket.
HOSTILE="$E2E_TMP/hostile.py"
cat >"$HOSTILE" <<'EOF'
import socket, sys, time
kind, target, n, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
held = []
for i in range(n):
    try:
        if kind == "tcp":
            s = socket.create_connection(("127.0.0.1", int(target)), timeout=2)
            if i % 2:
                s.send(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
        else:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(2)
            s.connect(target)
        held.append(s)
    except OSError:
        pass
time.sleep(secs)
EOF
(
  while [ $SECONDS -lt $END ]; do
    inns client setpriv --reuid 65534 --regid 65534 --clear-groups "$PY" "$HOSTILE" tcp "$STATS_PORT" 200 15 >/dev/null 2>&1 &
    inns client "$PY" "$HOSTILE" unix "$SOCK" 50 15 >/dev/null 2>&1 &
    wait
  done
) &
on_exit "kill $! 2>/dev/null"

fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
echo "$LAB_TUNSHIM_PID" >"$DIR/pid"
kills=0
for at in $((SOAK / 4)) $((SOAK / 2)); do
  while [ $SECONDS -lt $((END - SOAK + at)) ]; do sleep 0.5; done
  kill -9 "$LAB_TUNSHIM_PID"
  wait_for 5 lab_gone "$LAB_TUNSHIM_PID" || fail "SIGKILL did not stop tunshim"
  kills=$((kills + 1))
  touch "$DIR/restarting"
  sleep 1.2  # the storm's current iteration is over; it leaves the file alone now
  conf 1300
  lab_tunshim_start
  rm -f "$DIR/restarting"
  echo "$LAB_TUNSHIM_PID" >"$DIR/pid"
done
# The last daemon's life: sample its descriptors and memory once it has settled.
sleep 5
fd0=$(fds "$LAB_TUNSHIM_PID"); rss0=$(rss "$LAB_TUNSHIM_PID")
while [ $SECONDS -lt $END ]; do sleep 1; done
wait "$CONN_PID" 2>/dev/null || true
sleep 3  # the last hook timeout, the hostile clients' deadlines
fd1=$(fds "$LAB_TUNSHIM_PID"); rss1=$(rss "$LAB_TUNSHIM_PID")

read -r ok bad <"$DIR/conns"
log "soak ${SOAK}s: $ok connections ok, $bad failed; $(cat "$DIR/reloads") reloads, $(cat "$DIR/flaps") flaps, $(cat "$DIR/bursts" 2>/dev/null || echo 0) SYN bursts, $kills kill -9"
log "last daemon: fds $fd0 -> $fd1, RSS $rss0 -> $rss1 kB"
[ "$bad" = 0 ] && [ "$ok" -gt 0 ] && pass "zero failed connections ($ok completed)" ||
  fail "$bad of $((ok + bad)) connections failed"
lab_gone "$LAB_TUNSHIM_PID" && fail "tunshim died during the soak" || pass "tunshim still running"
[ $((fd1 - fd0)) -le 2 ] && pass "descriptors flat ($fd0 -> $fd1)" || fail "descriptors grew $fd0 -> $fd1"
if e2e_sanitized; then
  log "sanitizer build: RSS not compared (quarantine); LeakSanitizer checks the daemon's exit"
else
  [ $((rss1 - rss0)) -le 2048 ] && pass "memory flat ($rss0 -> $rss1 kB)" || fail "RSS grew $rss0 -> $rss1 kB"
fi
metrics=$(inns client curl -sS --max-time 3 "http://127.0.0.1:$STATS_PORT/metrics" 2>&1 || true)
if printf '%s\n' "$metrics" | grep '^tunshim_build_info' >/dev/null; then
  pass "/metrics answers after the soak"
else fail "/metrics did not answer after the soak"; fi
if inns client "$TUNSHIM_BIN" stats --socket "$SOCK" >/dev/null 2>&1; then pass "tunshim stats answers after the soak"
else fail "tunshim stats did not answer after the soak"; fi
logsize=$(stat -c %s "$LAB_TUNSHIM_LOG")
log "daemon log: $logsize bytes for the whole soak (the noisy hook's output bounded)"
[ "$logsize" -lt 50000000 ] && pass "log stayed bounded ($logsize bytes)" || fail "log grew to $logsize bytes"
lab_tunshim_stop TERM
# Detached hook children must not outlive the daemon.
left=$(pgrep -f "^sleep 6007$" | wc -l || true)
[ "$left" = 0 ] && pass "no hook descendant left after exit" || fail "$left detached hook children still alive"
finish
