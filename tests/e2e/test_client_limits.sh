#!/usr/bin/env bash
# No local client can hold the stats server or the control socket: every client is bounded
# in count and in time, and a new one at the limit evicts the oldest idle one.
#
#   - uid 65534 keeps 500 connections open to 127.0.0.1:9477 (half silent, half dripping a
#     request one byte a second), reopening each one the server closes; meanwhile 30
#     scrapes of /metrics must each be answered within a second
#   - root keeps 500 idle connections open to the control socket; `tunshim stats` and
#     `tunshim reapply` must still work
#   - the drops are counted in tunshim_clients_dropped_total{server,reason} and logged
#     rate-limited
#
# One namespace, a veth ppp0 (only its rules matter here), everything on its loopback.
. "$(dirname "$0")/lib.sh"
require_root
require_cmd ip iptables-nft iptables-nft-save curl setpriv "$PY"
[ -x "$TUNSHIM_BIN" ] || skip "no tunshim binary at $TUNSHIM_BIN"

PORT=9477
QNUM=4791
N=500

mkns rt
inns rt ip link add ppp0 type veth peer name ppp0peer
inns rt ip link set ppp0 up; inns rt ip link set ppp0peer up
inns rt ip addr add 10.9.0.1/24 dev ppp0

SOCK=$E2E_TMP/ctl.sock
CONF=$E2E_TMP/tunshim.conf
cat >"$CONF" <<EOF
[global]
queue_num = $QNUM
stats_listen = "127.0.0.1:$PORT"
control_socket = "$SOCK"

[[tunnel]]
interface = "ppp0"
mss = 1300
EOF
LOG=$E2E_TMP/tunshim.log
inns rt "$TUNSHIM_BIN" run -c "$CONF" >"$LOG" 2>&1 &
TS_PID=$!
on_exit "kill -TERM $TS_PID; wait $TS_PID"
wait_for 10 grep -q "running:" "$LOG" || { cat "$LOG"; die "tunshim did not start"; }

# Holds N connections open, reopening the ones the server closed every 0.2 s, until killed.
# Modes: http (half silent, half a request dripped a byte a second), unix (silent).
cat >"$E2E_TMP/hostile.py" <<'EOF'
import errno, os, selectors, socket, sys, time
mode, target, n, status = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
sel = selectors.DefaultSelector()
conns = {}   # socket -> (opened, bytes dripped)
opened = 0
def open_one(i):
    global opened
    if mode == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(target)
        except BlockingIOError:
            pass
        except OSError:
            s.close(); return
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", int(target)))
        except BlockingIOError:
            pass
    conns[s] = [i, 0]
    sel.register(s, selectors.EVENT_READ)
    opened += 1
for i in range(n):
    open_one(i)
drip = b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
last_drip = time.monotonic()
last_reopen = time.monotonic()
closed = []
while True:
    for key, _ in sel.select(timeout=0.05):
        s = key.fileobj
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        if not data:          # closed by the server: another takes its place soon
            closed.append(conns.pop(s)[0])
            sel.unregister(s); s.close()
    now = time.monotonic()
    if now - last_reopen >= 0.2:
        last_reopen = now
        for i in closed:
            open_one(i)
        closed = []
    if mode == "http" and now - last_drip >= 1.0:
        last_drip = now
        for s, st in list(conns.items()):
            if st[0] % 2 == 1 and st[1] < len(drip):
                try:
                    s.send(drip[st[1]:st[1] + 1]); st[1] += 1
                except OSError:
                    pass
    with open(status + ".tmp", "w") as f:
        f.write(f"{len(conns)} {opened}\n")
    os.replace(status + ".tmp", status)
EOF
chmod 755 "$E2E_TMP"; chmod 644 "$E2E_TMP/hostile.py"
mkdir -m 777 "$E2E_TMP/nobody"   # where uid 65534 writes its status

# ---- the stats server ------------------------------------------------------------------------
inns rt setpriv --reuid 65534 --regid 65534 --clear-groups \
  "$PY" "$E2E_TMP/hostile.py" http "$PORT" "$N" "$E2E_TMP/nobody/hostile-http.status" 2>"$E2E_TMP/nobody/hostile-http.err" &
H_PID=$!
on_exit "kill $H_PID"
wait_for 10 test -s "$E2E_TMP/nobody/hostile-http.status" || { cat "$E2E_TMP/nobody/hostile-http.err"; die "hostile client did not start"; }
sleep 2   # the flood is in place and churning
read -r held opened <"$E2E_TMP/nobody/hostile-http.status"
# What the server closed is reopened every 0.2 s, so "open" dips between the batches.
[ "$opened" -ge "$N" ] && pass "uid 65534 opened $opened connections to :$PORT, $held open now" ||
  fail "hostile client opened only $opened connections"

ok=0; slow=0; worst=0
for i in $(seq 30); do
  t0=$(date +%s%N)
  if inns rt curl -sS --max-time 1 -o "$E2E_TMP/scrape.txt" "http://127.0.0.1:$PORT/metrics" 2>>"$E2E_TMP/curl.err" &&
     grep -q '^tunshim_build_info' "$E2E_TMP/scrape.txt"; then
    ok=$((ok + 1))
  fi
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  [ $ms -lt 1000 ] || slow=$((slow + 1))
  [ $ms -le $worst ] || worst=$ms
  sleep 0.1
done
[ $ok -eq 30 ] && [ $slow -eq 0 ] && pass "30 of 30 scrapes answered during the flood, slowest $worst ms" ||
  fail "scrapes during the flood: $ok of 30 answered, $slow over a second (slowest $worst ms); $(sort -u "$E2E_TMP/curl.err" | head -3 | tr '\n' ' ')"
read -r held opened <"$E2E_TMP/nobody/hostile-http.status"
log "hostile client: $held open, $opened opened in all"
kill $H_PID; wait $H_PID 2>/dev/null || true

M=$E2E_TMP/metrics.txt
inns rt curl -sS --max-time 2 -o "$M" "http://127.0.0.1:$PORT/metrics" || fail "GET /metrics after the flood"
metric() { awk -v k="$1" '$1 == k { print $2 }' "$M"; }
ev=$(metric 'tunshim_clients_dropped_total{server="http",reason="evicted"}')
dl=$(metric 'tunshim_clients_dropped_total{server="http",reason="deadline"}')
id=$(metric 'tunshim_clients_dropped_total{server="http",reason="idle"}')
[ "${ev:-0}" -ge $((N - 32)) ] && pass "http evicted $ev clients to make room (idle $id, deadline $dl)" ||
  fail "tunshim_clients_dropped_total http evicted=${ev:-missing} idle=${id:-missing} deadline=${dl:-missing}"
lines=$(grep -c "stats http: dropped a client" "$LOG")
[ "$lines" -ge 1 ] && [ "$lines" -le 40 ] && pass "drops logged rate-limited: $lines lines for $ev evictions" ||
  fail "drop log lines: $lines"

# ---- the control socket ------------------------------------------------------------------------
inns rt "$PY" "$E2E_TMP/hostile.py" unix "$SOCK" "$N" "$E2E_TMP/hostile-unix.status" 2>"$E2E_TMP/hostile-unix.err" &
U_PID=$!
on_exit "kill $U_PID"
wait_for 10 test -s "$E2E_TMP/hostile-unix.status" || { cat "$E2E_TMP/hostile-unix.err"; die "idle control clients did not start"; }
sleep 2
read -r held opened <"$E2E_TMP/hostile-unix.status"
log "idle control clients: $held open, $opened opened"
for i in 1 2 3; do
  t0=$(date +%s%N)
  if out=$(inns rt timeout 5 "$TUNSHIM_BIN" stats --socket "$SOCK" 2>&1); then
    pass "tunshim stats with $held idle control connections: answered in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  else
    fail "tunshim stats with idle control connections: $out"
  fi
done
if out=$(inns rt timeout 10 "$TUNSHIM_BIN" reapply --socket "$SOCK" ppp0 2>&1); then
  pass "tunshim reapply ppp0 with idle control connections: $out"
else
  fail "tunshim reapply with idle control connections: $out"
fi
kill $U_PID; wait $U_PID 2>/dev/null || true
inns rt curl -sS --max-time 2 -o "$M" "http://127.0.0.1:$PORT/metrics"
cev=$(metric 'tunshim_clients_dropped_total{server="control",reason="evicted"}')
[ "${cev:-0}" -ge 1 ] && pass "control socket evicted $cev idle clients" || fail "control evicted=${cev:-missing}"

finish
