#!/usr/bin/env bash
# Whom tunshim takes orders from (tunshim.conf(5), FILE PERMISSIONS). Root runs the hooks a
# config names, so a config, the directories on its path and every hook program must be
# root's and writable by no one else; a hook must exist and be executable; a config is read
# only from a regular file, without ever blocking. Checked through check-config, `run` and
# SIGHUP on the tunnel lab (tests/e2e/lab.sh), including the exploit: uid 65534 writes an
# on_down into a world-writable config, SIGHUP, the tunnel goes down, and nothing of theirs
# runs (the legitimate on_down does).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lab.sh"
. "$(dirname "$0")/live_lab.sh"
require_root
require_cmd setpriv curl socat nft

NOBODY=65534
PORT=$((20000 + $$ % 20000))

# A directory uid 65534 can reach (E2E_TMP is 0700): root's, 0755.
PUB=$(mktemp -d /tmp/tunshim-security.XXXXXX)
on_exit "rm -rf $PUB"
chmod 755 "$PUB"
# check-config FILE [AS_UID]: exit code in $rc, stderr in $err (at most 10 s: a blocked read
# is a failure, not a hang).
check() {
  rc=0
  if [ -n "${2:-}" ]; then
    timeout 10 setpriv --reuid "$2" --regid "$2" --clear-groups "$PUB/tunshim" check-config -c "$1" \
      >/dev/null 2>"$E2E_TMP/err" || rc=$?
  else
    timeout 10 "$TUNSHIM_BIN" check-config -c "$1" >/dev/null 2>"$E2E_TMP/err" || rc=$?
  fi
  err=$(cat "$E2E_TMP/err")
}
# refused NAME FILE EXPECTED_LINE [AS_UID]: check-config exits 1 and prints that line.
refused() {
  check "$2" "${4:-}"
  if [ "$rc" -eq 1 ] && grep -qxF -- "$3" <<<"$err"; then pass "check-config refuses $1"
  else fail "check-config on $1: exit $rc, stderr: $err (wanted: $3)"; fi
}
conf() {  # conf FILE [EXTRA-TUNNEL-LINES]
  printf '[[tunnel]]\ninterface = "ppp0"\nmss = 1300\n%s\n' "${2:-}" >"$1"
  chmod 644 "$1"
}
hook() {  # hook FILE LOG: a root-owned 0755 program that appends a line to LOG
  printf '#!/bin/sh\necho "$TUNSHIM_EVENT $(id -u)" >>%s\n' "$2" >"$1"
  chmod 755 "$1"
}

# ---- 1. check-config --------------------------------------------------------------------------
C=$PUB/t.conf
conf "$C"
check "$C"
[ "$rc" -eq 0 ] && pass "a root-owned 0644 config in a root-owned 0755 directory is accepted" \
  || fail "good config refused: $err"
chmod 666 "$C"
refused "a world-writable config (0666)" "$C" \
  "$C: refused, root runs what this file says: $C is writable by group and others (mode 0666), so users other than root can change it; fix: chmod go-w $C"
chmod 664 "$C"
refused "a group-writable config (0664)" "$C" \
  "$C: refused, root runs what this file says: $C is writable by group (mode 0664), so users other than root can change it; fix: chmod go-w $C"
chmod 644 "$C"; chown "$NOBODY" "$C"
refused "a config owned by uid $NOBODY" "$C" \
  "$C: refused, root runs what this file says: $C is owned by uid $NOBODY, not root, so that user can change it; fix: chown root $C"
chown 0 "$C"
mkdir -m 777 "$PUB/open"; chmod 777 "$PUB/open"; conf "$PUB/open/t.conf"
refused "a config in a world-writable (not sticky) directory" "$PUB/open/t.conf" \
  "$PUB/open/t.conf: refused, root runs what this file says: directory $PUB/open is writable by group and others (mode 0777), so users other than root can replace what is in it; fix: chmod go-w $PUB/open"
ln -s "$PUB/open/t.conf" "$PUB/link.conf"
refused "a symlink to a config in such a directory (the real path is checked)" "$PUB/link.conf" \
  "$PUB/link.conf: refused, root runs what this file says: directory $PUB/open is writable by group and others (mode 0777), so users other than root can replace what is in it; fix: chmod go-w $PUB/open"
# A sticky directory owned by root (like /tmp) is accepted: no one else can rename or remove
# root's file in it. This very test runs from /tmp.
mkdir -m 1777 "$PUB/sticky"; chmod 1777 "$PUB/sticky"; conf "$PUB/sticky/t.conf"
check "$PUB/sticky/t.conf"
[ "$rc" -eq 0 ] && pass "a root-owned config in a root-owned sticky directory (mode 1777) is accepted" \
  || fail "config in a sticky directory refused: $err"

H=$PUB/hook.sh
hook "$H" /dev/null
conf "$C" "on_down = [[\"$H\"]]"
check "$C"
[ "$rc" -eq 0 ] && pass "a root-owned 0755 hook program is accepted" || fail "good hook refused: $err"
chmod 777 "$H"
refused "a world-writable hook program" "$C" \
  "$C:4:13: the program in on_down, \"$H\", could be changed by users other than root, and it runs as root: $H is writable by group and others (mode 0777), so users other than root can change it; fix: chmod go-w $H"
chmod 755 "$H"; chown "$NOBODY" "$H"
refused "a hook program owned by uid $NOBODY" "$C" \
  "$C:4:13: the program in on_down, \"$H\", could be changed by users other than root, and it runs as root: $H is owned by uid $NOBODY, not root, so that user can change it; fix: chown root $H"
chown 0 "$H"; chmod 644 "$H"
refused "a hook program that is not executable" "$C" \
  "$C:4:13: the program in on_down, \"$H\", is not executable (mode 0644); fix: chmod u+x $H"
chmod 755 "$H"
conf "$C" "on_up = [[\"/bin/true\"], [\"$PUB/nope.sh\", \"x\"]]"
refused "a missing hook program, at its position" "$C" \
  "$C:4:26: the program in on_up, \"$PUB/nope.sh\", does not exist"

# Special files: refused at once, never read (a FIFO without a writer would block for ever).
mkfifo "$PUB/fifo.conf"
t0=$(date +%s%N)
refused "a FIFO" "$PUB/fifo.conf" "$PUB/fifo.conf: cannot read: it is a FIFO, and a config must be a regular file"
log "check-config on a FIFO answered in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
refused "a character device" /dev/zero "/dev/zero: cannot read: it is a character device, and a config must be a regular file"

# A user checking a config of their own is told what root would refuse (it is a validator).
install -m 0755 "$TUNSHIM_BIN" "$PUB/tunshim"
mkdir -m 755 "$PUB/mine"; conf "$PUB/mine/t.conf"; chown -R "$NOBODY" "$PUB/mine"
refused "uid $NOBODY's own config, checked by uid $NOBODY" "$PUB/mine/t.conf" \
  "$PUB/mine/t.conf: refused, root runs what this file says: $PUB/mine/t.conf is owned by uid $NOBODY, not root, so that user can change it; fix: chown root $PUB/mine/t.conf" "$NOBODY"

# ---- 2. run ------------------------------------------------------------------------------------
lab_up
conf "$C"; chmod 666 "$C"
rc=0
timeout 10 ip netns exec "$(ns client)" "$TUNSHIM_BIN" run -c "$C" >"$E2E_TMP/run.log" 2>&1 || rc=$?
if [ "$rc" -eq 78 ] && grep -qF "fix: chmod go-w $C" "$E2E_TMP/run.log" && [ "$(lab_tunshim_rules)" = 0 ]; then
  pass "run refuses a world-writable config (exit 78, no rules installed)"
else fail "run on a world-writable config: exit $rc, rules $(lab_tunshim_rules): $(tail -3 "$E2E_TMP/run.log")"; fi

# ---- 3. SIGHUP ---------------------------------------------------------------------------------
# The daemon's config lives where uid 65534 can reach it once it is made world-writable.
LAB_TUNSHIM_CONF=$PUB/tunshim.conf
LEGIT=$PUB/legit.sh; LEGIT_LOG=$E2E_TMP/legit.log
hook "$LEGIT" "$LEGIT_LOG"
PWNED=$E2E_TMP/pwned   # where the attacker's on_down would write, as root
GOOD="[global]
stats_listen = \"0.0.0.0:$PORT\"
control_socket = \"$E2E_TMP/ctl.sock\"
[[tunnel]]
interface = \"ppp0\"
mss = 1300
keepalive = \"always\"
keepalive_interval = \"1s\"
keepalive_target = \"$LAB_S_TUN\"
down_after_misses = 2
on_down = [[\"$LEGIT\"]]"
printf '%s\n' "$GOOD" >"$LAB_TUNSHIM_CONF"; chmod 644 "$LAB_TUNSHIM_CONF"
lab_tunshim_start
pid=$LAB_TUNSHIM_PID
# A config warning is logged with its position at start.
lab_tunshim_logged "warn.*$LAB_TUNSHIM_CONF:2:16: stats_listen \"0.0.0.0:$PORT\" is not a loopback address" \
  && pass "config warning logged at start, with file:line:column" \
  || fail "no config warning in the log: $(grep -i warn "$LAB_TUNSHIM_LOG" | head -3)"
metrics() { inns client curl -s --max-time 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/metrics"; }
[ "$(metrics)" = 200 ] || fail "/metrics does not answer before any reload"
wait_for 10 lab_tunshim_logged "tunnel ppp0: [a-z]+ -> up" || log "no 'up' line within 10 s"

refusals=0
# hup WHAT: SIGHUP, then the reload must be refused (and logged with EXPECTED text).
hup_refused() {
  local what=$1 expected=$2
  refusals=$((refusals + 1))
  kill -HUP "$pid"
  if wait_for 5 sh -c "[ \$(tail -n +$((LAB_TUNSHIM_LOGPOS + 1)) $LAB_TUNSHIM_LOG | grep -c 'reload refused') -ge $refusals ]" &&
     lab_tunshim_logged "$expected" && ! lab_tunshim_logged 'reload applied'; then
    pass "SIGHUP with $what: reload refused, the running config kept"
  else
    fail "SIGHUP with $what: not refused (log: $(tail -n 4 "$LAB_TUNSHIM_LOG" | tr '\n' '|'))"
  fi
}

# The exploit: the config made world-writable, uid 65534 puts its own on_down in it.
chmod 666 "$LAB_TUNSHIM_CONF"; chmod 711 "$E2E_TMP"
setpriv --reuid "$NOBODY" --regid "$NOBODY" --clear-groups sh -c "cat >'$LAB_TUNSHIM_CONF'" <<EOF
[[tunnel]]
interface = "ppp0"
mss = 1300
keepalive = "always"
keepalive_interval = "1s"
keepalive_target = "$LAB_S_TUN"
down_after_misses = 2
on_down = [["/bin/sh", "-c", "id > $PWNED"]]
EOF
grep -q "$PWNED" "$LAB_TUNSHIM_CONF" || die "uid $NOBODY could not write the world-writable config"
hup_refused "a world-writable config rewritten by uid $NOBODY" "fix: chmod go-w $LAB_TUNSHIM_CONF"
# The tunnel goes down: the router drops its UDP.
live_drop_port "$LAB_UDP_PORT"
if wait_for 15 test -s "$LEGIT_LOG"; then
  pass "tunnel down: the running config's on_down ran ($(head -1 "$LEGIT_LOG"))"
else
  fail "tunnel down: no on_down ran within 15 s (state: $(grep 'tunnel ppp0' "$LAB_TUNSHIM_LOG" | tail -2 | tr '\n' '|'))"
fi
sleep 1
[ ! -e "$PWNED" ] && pass "uid $NOBODY's on_down never ran" || fail "uid $NOBODY's on_down ran as root: $(cat "$PWNED")"
live_drop_clear
chmod 700 "$E2E_TMP"

printf '%s\n' "$GOOD" >"$LAB_TUNSHIM_CONF"; chmod 664 "$LAB_TUNSHIM_CONF"
hup_refused "a group-writable config" "$LAB_TUNSHIM_CONF is writable by group \(mode 0664\)"
chmod 644 "$LAB_TUNSHIM_CONF"; chown "$NOBODY" "$LAB_TUNSHIM_CONF"
hup_refused "a config owned by uid $NOBODY" "$LAB_TUNSHIM_CONF is owned by uid $NOBODY, not root"
chown 0 "$LAB_TUNSHIM_CONF"; chmod 777 "$LEGIT"
hup_refused "a world-writable hook program" "$LAB_TUNSHIM_CONF:11:13: the program in on_down, \"$LEGIT\", could be changed"
chmod 755 "$LEGIT"
printf '%s\n' "${GOOD/$LEGIT/$PUB/missing.sh}" >"$LAB_TUNSHIM_CONF"
hup_refused "a missing hook program" "$LAB_TUNSHIM_CONF:11:13: the program in on_down, \"$PUB/missing.sh\", does not exist"

# A FIFO at the config path: refused at once; the loop keeps serving /metrics.
mv "$LAB_TUNSHIM_CONF" "$PUB/saved.conf"
mkfifo -m 600 "$LAB_TUNSHIM_CONF"
hup_refused "a FIFO at the config path" "it is a FIFO, and a config must be a regular file"
code=$(metrics || true)  # curl fails (28) if the loop is blocked
[ "$code" = 200 ] && pass "after SIGHUP with a FIFO config, /metrics answers (HTTP $code)" \
  || fail "after SIGHUP with a FIFO config, /metrics: '$code'"
rm -f "$LAB_TUNSHIM_CONF"; mv "$PUB/saved.conf" "$LAB_TUNSHIM_CONF"
printf '%s\n' "$GOOD" >"$LAB_TUNSHIM_CONF"

# Still the first config: its warning logged again on an applied reload.
kill -HUP "$pid"
wait_for 5 lab_tunshim_logged 'reload applied' && pass "a safe config is applied again" || fail "a safe config was not applied"
[ "$(tail -n "+$((LAB_TUNSHIM_LOGPOS + 1))" "$LAB_TUNSHIM_LOG" | grep -c "warn.*$LAB_TUNSHIM_CONF:2:16: stats_listen")" -ge 2 ] \
  && pass "config warning logged again on reload" || fail "config warning not logged on reload"
lab_gone "$pid" && fail "tunshim died" || pass "tunshim still running after $refusals refused reloads"
lab_tunshim_stop TERM
finish
