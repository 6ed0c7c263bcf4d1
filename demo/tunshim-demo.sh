# shellcheck shell=bash disable=SC2317  # cleanup and reach run from traps and loops
# `tunshim demo`: a throwaway namespace lab with a broken VPN, fixed live by tunshim.
#
# This script is compiled into the tunshim binary (demo/demo.cmake turns it into a header)
# and run by `tunshim demo` as:  bash -c SCRIPT tunshim-demo TUNSHIM_BIN KEEP
#   TUNSHIM_BIN  absolute path of the tunshim executable that runs the demo
#   KEEP         1: leave the lab up until Ctrl-C, 0: tear down at the end
#
#   client ══════ ppp0 (socat TUN over UDP, MTU 1500) ══════ tun0 ══ server
#     c0 (MTU 9000) ─── r0  router (NAT)  r1 ─── s0 (MTU 9000)
#                          ├ forwards at most 1400-byte packets, drops the ICMP
#                          │ "fragmentation needed" it should send back: a black hole
#                          └ forgets an idle UDP mapping after NAT_TIMEOUT seconds
#
# Everything lives in namespaces named tsdemo-<pid>-*; nothing is added to the root
# namespace (veth pairs are created inside the namespaces). Every exit path (end, error,
# Ctrl-C, SIGTERM, SIGHUP) runs cleanup(): tunshim is stopped with SIGTERM (it removes its
# rules), the rest is killed, the namespaces and the temporary directory are deleted.
set -eEuo pipefail
export LC_ALL=C
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}"

TUNSHIM_BIN=${1:?tunshim binary}
KEEP=${2:-0}

PREFIX="tsdemo-$$"
NS_C="$PREFIX-client"; NS_R="$PREFIX-router"; NS_S="$PREFIX-server"
UNDER_MTU=9000          # the endpoints' links: the outer packets leave whole, with DF
PATH_MTU=1400           # what the router's forwarding path really carries
OUTER=28                # IPv4 + UDP header around each tunnel packet
TUN_MTU=1500            # what ppp0 claims, as a VPN client often does
INNER_MTU=$((PATH_MTU - OUTER))
C_UNDER=10.77.1.1; R_CSIDE=10.77.1.254; R_SSIDE=10.77.2.254; S_UNDER=10.77.2.1
C_TUN=172.30.0.1; S_TUN=172.30.0.2
UDP_PORT=5555
NAT_TIMEOUT=5           # seconds the router keeps an idle UDP mapping
KEEPALIVE=2             # tunshim's keepalive interval, seconds
GAP=12                  # the idle gap of the last step, seconds (> NAT_TIMEOUT)
BLOB=3000000            # bytes of each download
STALL_WAIT=6            # how long the first download may take before it counts as stalled

TTY=0; [ -t 1 ] && TTY=1
TMP=""
DAEMON_PID=""
CLEANING=0
NS_MADE=()
STEP=0; STEPS=6

# ---- output --------------------------------------------------------------------------
say()  { printf '%s\n' "$*"; }
note() { printf '      %s\n' "$*"; }
step() { STEP=$((STEP + 1)); printf '\n[%d/%d] %s\n' "$STEP" "$STEPS" "$*"; }
die()  { trap - ERR; progress_done; printf 'tunshim demo: %s\n' "$*" >&2; exit 1; }
# shellcheck disable=SC1003  # a backslash, not an escape
SPIN='|/-\'; SPIN_I=0
# progress TEXT: on a terminal, one line rewritten in place with a spinner; otherwise
# nothing (the plain lines before and after a wait say what happened).
progress() {
  [ "$TTY" = 1 ] || return 0
  SPIN_I=$(((SPIN_I + 1) % 4))
  printf '\r\033[K      %s %s' "${SPIN:SPIN_I:1}" "$*"
}
progress_done() { if [ "$TTY" = 1 ]; then printf '\r\033[K'; fi; }

# Milliseconds since the epoch, without a fork.
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
secs() { local ms=$1; printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }
mb() { local b=$1; printf '%d.%d MB' $((b / 1000000)) $((b % 1000000 / 100000)); }

# ---- cleanup ---------------------------------------------------------------------------
alive() {
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}
# in_ns PID NS: true if process PID lives in network namespace NS.
in_ns() {
  local want have
  want=$(stat -L -c %i "/run/netns/$2" 2>/dev/null) || return 1
  have=$(readlink "/proc/$1/ns/net" 2>/dev/null) || return 1
  [ "$have" = "net:[$want]" ]
}
cleanup() {
  local rc=$? p n i
  [ "$CLEANING" = 0 ] || return 0
  CLEANING=1
  # Best effort from here on: no failing command may cut the teardown short.
  trap - ERR
  set +eE
  trap '' INT TERM HUP
  progress_done
  [ "$rc" = 0 ] || [ -z "$TMP" ] || [ ! -s "$TMP/tunshim.log" ] || {
    say "tunshim demo: the daemon's last log lines:"
    tail -n 8 "$TMP/tunshim.log" | sed 's/^/      /'
  }
  [ ${#NS_MADE[@]} -gt 0 ] && say "Tearing down the lab (namespaces $PREFIX-*)..."
  # tunshim first, politely: SIGTERM makes it remove its rules and exit.
  if [ -n "$DAEMON_PID" ] && alive "$DAEMON_PID" && in_ns "$DAEMON_PID" "$NS_C"; then
    kill -TERM "$DAEMON_PID" 2>/dev/null
    for ((i = 0; i < 50; i++)); do alive "$DAEMON_PID" || break; sleep 0.1; done
  fi
  # Every helper runs inside a lab namespace, so this finds them all, and never a process
  # of the host that happens to have reused an old helper's pid.
  for n in "${NS_MADE[@]}"; do
    for p in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
  done
  for n in "${NS_MADE[@]}"; do
    [ -e "/run/netns/$n" ] || continue  # recorded, but the signal came before it was made
    for ((i = 0; i < 20; i++)); do
      ip netns del "$n" 2>/dev/null && break
      sleep 0.1
    done
  done
  [ -z "$TMP" ] || rm -rf "$TMP"
  local left
  left=$(ip netns list 2>/dev/null | grep -c "^$PREFIX-" || true)
  if [ "$left" != 0 ]; then
    say "tunshim demo: could not delete $left namespace(s) $PREFIX-*: see 'ip netns list'"
    [ "$rc" != 0 ] || rc=1
  elif [ ${#NS_MADE[@]} -gt 0 ]; then
    say "Lab removed: no namespace, process or rule of the demo is left."
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'die "setup failed at line $LINENO: $BASH_COMMAND"' ERR

# ---- lab helpers -----------------------------------------------------------------------
mkns() {
  # Recorded first: a signal that arrives while `ip netns add` runs is trapped right after
  # it, and the namespace it made must be torn down too.
  NS_MADE+=("$1")
  ip netns add "$1" 2>/dev/null || die "cannot create network namespace $1 (a kernel without netns?)"
  ip -n "$1" link set lo up
}
inns() { local n=$1; shift; ip netns exec "$n" "$@"; }
# bg NS LOG CMD...: CMD in namespace NS in the background (its own pid: ip netns exec
# execs it), output to LOG; the pid is in BG_PID. Cleanup kills whatever runs in the lab.
bg() {
  local n=$1 out=$2; shift 2
  ip netns exec "$n" "$@" >"$out" 2>&1 </dev/null &
  BG_PID=$!
  disown "$BG_PID"  # no "Killed" job reports when cleanup kills it
}
# wait_until SECONDS CMD...: polls CMD every 0.1 s; false after SECONDS.
wait_until() {
  local end=$(($(now_ms) + $1 * 1000)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(now_ms)" -lt "$end" ] || return 1
    sleep 0.1
  done
}
size_of() { local s; s=$(stat -c %s "$1" 2>/dev/null) || s=0; echo "$s"; }
# set_ns_sysctl NS KEY VALUE (KEY as a /proc/sys path, e.g. net/ipv4/ip_forward).
set_ns_sysctl() { ip netns exec "$1" sh -c "printf '%s' '$3' > /proc/sys/$2"; }
get_ns_sysctl() { ip netns exec "$1" cat "/proc/sys/$2"; }

# serve_blob PORT BYTES [abort]: a one-connection server in the server namespace that sends
# BYTES and closes. -T: if nothing moves for STALL_WAIT s it gives up. "abort" (for the
# download that stalls) makes that close abortive (linger 0: a RST, unsent data discarded):
# the stalled connection is gone at once instead of retransmitting towards the client for
# minutes, which would keep the NAT mapping alive and prove nothing in the last step.
serve_blob() {
  local linger=""
  [ "${3:-}" != abort ] || linger=",linger=0"
  bg "$NS_S" "$TMP/serve.$1.log" socat -T "$STALL_WAIT" -U \
    "TCP4-LISTEN:$1,bind=$S_TUN,reuseaddr$linger" "SYSTEM:head -c $2 /dev/zero"
  wait_until 5 sh -c "ip netns exec $NS_S ss -Hltn 'sport = :$1' | grep -q LISTEN" \
    || die "the download server did not start (see $TMP/serve.$1.log)"
}

# download PORT FILE SECONDS: fetches from the server into FILE, showing progress; sets
# GOT (bytes) and TOOK (ms). Gives up after SECONDS.
download() {
  local port=$1 file=$2 limit=$3 start pid t
  : >"$file"
  start=$(now_ms)
  bg "$NS_C" "$TMP/download.$port.log" socat -u "TCP4:$S_TUN:$port,connect-timeout=3" "OPEN:$file,wronly,trunc"
  pid=$BG_PID
  while alive "$pid"; do
    daemon_ok
    t=$(($(now_ms) - start))
    [ "$t" -lt $((limit * 1000)) ] || break
    progress "waiting... $((t / 1000)) s, $(size_of "$file") of $BLOB bytes received"
    sleep 0.2
  done
  TOOK=$(($(now_ms) - start))
  ! in_ns "$pid" "$NS_C" || kill -9 "$pid" 2>/dev/null || true
  progress_done
  GOT=$(size_of "$file")
}

# daemon_ok: dies with tunshim's last log lines if the demo's tunshim has exited.
daemon_ok() {
  [ -z "$DAEMON_PID" ] || alive "$DAEMON_PID" \
    || die "tunshim (pid $DAEMON_PID) exited unexpectedly; its log ended: $(tail -n 2 "$TMP/tunshim.log" | tr '\n' ' ')"
}

stats_json() { inns "$NS_C" "$TUNSHIM_BIN" stats --json --socket "$TMP/tunshim.sock" 2>/dev/null; }
# json_num NAME: the first number after "NAME": in the daemon's stats JSON.
json_num() { stats_json | grep -o "\"$1\": [0-9.]*" | head -1 | grep -o '[0-9.]*$' || true; }

# ---- up-front checks -------------------------------------------------------------------
[ "$(id -u)" = 0 ] || die "needs root (it builds network namespaces): run 'sudo tunshim demo'"
missing=()
for tool in ip:iproute2 iptables:iptables socat:socat ss:iproute2 timeout:coreutils stat:coreutils; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("${tool%%:*} (Debian package ${tool#*:})")
done
[ ${#missing[@]} -eq 0 ] || die "missing tool(s): ${missing[*]}; install with: apt install iproute2 iptables socat"
[ -c /dev/net/tun ] || die "no /dev/net/tun: the kernel's TUN driver is needed for the demo's VPN"
[ -x "$TUNSHIM_BIN" ] || die "cannot run $TUNSHIM_BIN"
TMP=$(mktemp -d "/tmp/$PREFIX.XXXXXX")


# Labs of earlier demos that were killed outright (SIGKILL, a crash, a power cut of the
# terminal's session) cannot have cleaned up: remove them, as long as no demo with that pid
# still runs.
stale=()
for n in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^tsdemo-[0-9]+-(client|router|server)$' || true); do
  p=${n#tsdemo-}; p=${p%%-*}
  [ "$p" != $$ ] || continue
  if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q tunshim; then continue; fi
  for q in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$q" 2>/dev/null || true; done
  ip netns del "$n" 2>/dev/null || true
  rm -rf "/tmp/tsdemo-$p."*
  [[ " ${stale[*]} " == *" $p "* ]] || stale+=("$p")
done
[ ${#stale[@]} -eq 0 ] || say "tunshim demo: removed the lab an earlier demo left behind (pid ${stale[*]})."

say "tunshim demo: a VPN with a path-MTU black hole and a forgetful NAT, fixed live."
say "It builds a lab of three network namespaces ($PREFIX-client, -router, -server),"
say "takes about 30 seconds and removes everything at the end (or on Ctrl-C)."

# ---- the lab ---------------------------------------------------------------------------
step "Building the lab: client --- router --- server, and a VPN tunnel across it."
mkns "$NS_C"; mkns "$NS_R"; mkns "$NS_S"
for n in "$NS_C" "$NS_S"; do
  # No TCP rescue of its own (the Linux defaults, written down): only a clamp can help.
  set_ns_sysctl "$n" net/ipv4/tcp_mtu_probing 0
  # No IPv6 on the tunnel: router solicitations from a fresh interface would refresh the
  # NAT mapping now and then and blur step 5.
  set_ns_sysctl "$n" net/ipv6/conf/default/disable_ipv6 1
done
ip -n "$NS_C" link add c0 mtu "$UNDER_MTU" type veth peer name r0 netns "$NS_R" mtu "$UNDER_MTU"
ip -n "$NS_R" link add r1 mtu "$UNDER_MTU" type veth peer name s0 netns "$NS_S" mtu "$UNDER_MTU"
ip -n "$NS_C" link set c0 up; ip -n "$NS_R" link set r0 up
ip -n "$NS_R" link set r1 up; ip -n "$NS_S" link set s0 up
ip -n "$NS_C" addr add "$C_UNDER/24" dev c0
ip -n "$NS_R" addr add "$R_CSIDE/24" dev r0
ip -n "$NS_R" addr add "$R_SSIDE/24" dev r1
ip -n "$NS_S" addr add "$S_UNDER/24" dev s0
ip -n "$NS_C" route add default via "$R_CSIDE"
ip -n "$NS_S" route add default via "$R_SSIDE"
set_ns_sysctl "$NS_R" net/ipv4/ip_forward 1
# The narrow hop: a locked route MTU on the router, both directions.
ip -n "$NS_R" route replace 10.77.1.0/24 dev r0 src "$R_CSIDE" mtu lock "$PATH_MTU"
ip -n "$NS_R" route replace 10.77.2.0/24 dev r1 src "$R_SSIDE" mtu lock "$PATH_MTU"
# The black hole: the "fragmentation needed" the router should send back is dropped.
inns "$NS_R" iptables -A OUTPUT -p icmp --icmp-type fragmentation-needed -j DROP
inns "$NS_R" iptables -A FORWARD -p icmp --icmp-type fragmentation-needed -j DROP
# The NAT: the client's UDP leaves with the router's address; what arrives unsolicited
# from the server's side (no live mapping) is dropped, as a home router does.
inns "$NS_R" iptables -t nat -A POSTROUTING -o r1 -j MASQUERADE
inns "$NS_R" iptables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
inns "$NS_R" iptables -A FORWARD -i r1 -j DROP
inns "$NS_R" iptables -A INPUT -i r1 -p udp -j DROP
set_ns_sysctl "$NS_R" net/netfilter/nf_conntrack_udp_timeout "$NAT_TIMEOUT"
set_ns_sysctl "$NS_R" net/netfilter/nf_conntrack_udp_timeout_stream "$NAT_TIMEOUT"
[ "$(get_ns_sysctl "$NS_R" net/netfilter/nf_conntrack_udp_timeout_stream)" = "$NAT_TIMEOUT" ] \
  || die "could not set the router's conntrack UDP timeout"
# The VPN: socat carries each packet of ppp0 / tun0 in one UDP datagram, DF set.
bg "$NS_S" "$TMP/socat-server.log" socat -b 65536 \
  "TUN,tun-name=tun0,iff-no-pi,tun-type=tun,iff-up" \
  "UDP-DATAGRAM:$R_SSIDE:$UDP_PORT,bind=$S_UNDER:$UDP_PORT,ip-mtu-discover=2"
bg "$NS_C" "$TMP/socat-client.log" socat -b 65536 \
  "TUN,tun-name=ppp0,iff-no-pi,tun-type=tun,iff-up" \
  "UDP-DATAGRAM:$S_UNDER:$UDP_PORT,bind=$C_UNDER:$UDP_PORT,ip-mtu-discover=2"
wait_until 5 ip -n "$NS_C" link show ppp0 || die "the client's tunnel (socat) did not come up: $(tail -1 "$TMP/socat-client.log")"
wait_until 5 ip -n "$NS_S" link show tun0 || die "the server's tunnel (socat) did not come up: $(tail -1 "$TMP/socat-server.log")"
# Addressed like pppd does it: a local address and the peer's.
ip -n "$NS_C" link set ppp0 mtu "$TUN_MTU"; ip -n "$NS_S" link set tun0 mtu "$TUN_MTU"
ip -n "$NS_C" addr add "$C_TUN" peer "$S_TUN" dev ppp0
ip -n "$NS_S" addr add "$S_TUN" peer "$C_TUN" dev tun0
# A refused connect proves that both directions carry packets.
reach() {
  local out
  out=$(inns "$NS_C" socat -u "TCP4:$S_TUN:9,connect-timeout=1" /dev/null 2>&1) || true
  [[ $out == *refused* ]]
}
wait_until 10 reach || die "the tunnel carries nothing (see $TMP/socat-*.log)"
note "ppp0 claims MTU $TUN_MTU, but the router forwards only $PATH_MTU-byte packets and"
note "the tunnel adds $OUTER bytes: $INNER_MTU is the most that really crosses ppp0. The"
note "router drops the ICMP \"fragmentation needed\" that would say so (a black hole), and"
note "forgets an idle UDP mapping after $NAT_TIMEOUT s (its NAT timeout)."

# ---- 1: the stall ----------------------------------------------------------------------
step "Downloading $(mb "$BLOB") from the server through the tunnel, without tunshim."
note "Waiting at most $STALL_WAIT s..."
serve_blob 8080 "$BLOB" abort
download 8080 "$TMP/blob1" "$STALL_WAIT"
STALLED=0
if [ "$GOT" -lt "$BLOB" ]; then
  STALLED=1
  note "STALLED: $GOT of $BLOB bytes after $(secs "$TOOK") s. The connection opened (its small"
  note "packets pass), but the server's full-size $TUN_MTU-byte packets are too big for the"
  note "path: the router drops them and no ICMP error comes back to tell the server."
else
  note "UNEXPECTED: the download completed without tunshim ($GOT bytes); the black hole"
  note "did not work on this machine, so the rest shows less than it should."
fi

# ---- 2: tunshim ------------------------------------------------------------------------
step "Starting tunshim on the client: $TUNSHIM_BIN run"
cat >"$TMP/tunshim.conf" <<EOF
# Written by tunshim demo.
[global]
log_level = "info"
control_socket = "$TMP/tunshim.sock"

[[tunnel]]
interface = "ppp0"
mss = "auto"
keepalive = "idle"
keepalive_interval = "${KEEPALIVE}s"
EOF
note "Its config ($TMP/tunshim.conf):"
grep -v -e '^#' -e '^$' "$TMP/tunshim.conf" | sed 's/^/        /'
note "mss = \"auto\": tunshim finds the path MTU itself, with DF probes through the tunnel"
note "(no ICMP needed), and clamps the MSS of new connections to fit."
check=$("$TUNSHIM_BIN" check-config -c "$TMP/tunshim.conf" 2>&1) \
  || die "tunshim check-config refuses the demo's config: $(grep -m1 -v '^#' <<<"$check")"
ip netns exec "$NS_C" "$TUNSHIM_BIN" run -c "$TMP/tunshim.conf" >"$TMP/tunshim.log" 2>&1 </dev/null &
DAEMON_PID=$!
disown "$DAEMON_PID"
ready() { alive "$DAEMON_PID" && grep -Eq 'tunshim .* running' "$TMP/tunshim.log"; }
t0=$(now_ms)
while ! ready; do
  alive "$DAEMON_PID" || die "tunshim exited at start: $(tail -n 3 "$TMP/tunshim.log" | tr '\n' ' ')"
  [ $(($(now_ms) - t0)) -lt 10000 ] || die "tunshim did not start within 10 s (log: $(tail -n 1 "$TMP/tunshim.log"))"
  progress "starting tunshim... $(( ($(now_ms) - t0) / 1000 )) s"
  sleep 0.1
done
progress_done
note "tunshim is running (pid $DAEMON_PID); its rules queue SYNs crossing ppp0 to it."
PMTU=""
# pmtu_found: true once the daemon reports a measured path MTU (in PMTU): a complete,
# confirmed search, not the base size that applies while it runs.
pmtu_found() {
  local j
  j=$(stats_json) || return 1
  [[ $j == *'"pmtu_state": "complete"'* && $j == *'"pmtu_confirmed": true'* ]] || return 1
  PMTU=$(grep -o '"pmtu_bytes": [0-9]*' <<<"$j" | grep -o '[0-9]*$' || true)
  [ -n "$PMTU" ]
}
t0=$(now_ms)
while ! pmtu_found; do
  daemon_ok
  [ $(($(now_ms) - t0)) -lt 15000 ] || break
  progress "probing the path MTU... $(( ($(now_ms) - t0) / 1000 )) s"
  sleep 0.2
done
progress_done
if [ -n "$PMTU" ]; then
  note "Path MTU found: $PMTU bytes (the truth is $INNER_MTU) in $(secs $(($(now_ms) - t0))) s;"
  note "new connections get MSS $((PMTU - 40))."
else
  note "UNEXPECTED: no path MTU after 15 s; the fallback MSS applies."
fi

# ---- 3: the same download --------------------------------------------------------------
step "The same download again, with tunshim running."
note "Waiting at most 20 s..."
serve_blob 8081 "$BLOB"
download 8081 "$TMP/blob2" 20
DONE=0
if [ "$GOT" = "$BLOB" ]; then
  DONE=1
  note "DONE: $GOT of $BLOB bytes in $(secs "$TOOK") s. tunshim lowered the MSS in the"
  note "connection's SYN and SYN-ACK, so both ends send segments that fit the path."
else
  note "FAILED: only $GOT of $BLOB bytes after $(secs "$TOOK") s."
fi

# ---- 4: the numbers --------------------------------------------------------------------
step "What tunshim saw and did: tunshim stats"
inns "$NS_C" "$TUNSHIM_BIN" stats --socket "$TMP/tunshim.sock" | sed 's/^/      /' \
  || die "tunshim stats failed"
note "(path MTU: what it measured; MSS target: what SYNs are clamped to; SYN out/in: the"
note "connections it fixed, one SYN each way; oversize dropped/ICMP: too-big packets it"
note "dropped and answered with an ICMP error, so that their senders shrink them (UDP, or"
note "connections older than tunshim); keepalives: echoes sent while the tunnel was idle.)"

# ---- 5: the idle gap -------------------------------------------------------------------
step "An idle TCP connection: silent for $GAP s, longer than the router's $NAT_TIMEOUT s NAT timeout."
note "The server accepts a connection, waits $GAP s, then sends one line."
bg "$NS_S" "$TMP/late-server.log" socat -U "TCP4-LISTEN:7000,bind=$S_TUN,reuseaddr" \
  "SYSTEM:sleep $GAP; echo hello after $GAP s of silence"
wait_until 5 sh -c "ip netns exec $NS_S ss -Hltn 'sport = :7000' | grep -q LISTEN" \
  || die "the idle-gap server did not start"
ka0=$(json_num keepalive_sent_total); ka0=${ka0:-0}
: >"$TMP/late"
bg "$NS_C" "$TMP/late-client.log" socat -u "TCP4:$S_TUN:7000,connect-timeout=3" "OPEN:$TMP/late,wronly,trunc"
late_pid=$BG_PID
t0=$(now_ms)
while alive "$late_pid" && ! grep -q hello "$TMP/late" 2>/dev/null; do
  daemon_ok
  t=$(($(now_ms) - t0))
  [ "$t" -lt $(((GAP + 8) * 1000)) ] || break
  progress "idle for $((t / 1000)) s (the router forgets after $NAT_TIMEOUT s)..."
  sleep 0.2
done
progress_done
ka1=$(json_num keepalive_sent_total); ka1=${ka1:-0}
ARRIVED=0
if grep -q hello "$TMP/late" 2>/dev/null; then
  ARRIVED=1
  note "ARRIVED: \"$(head -1 "$TMP/late")\" after $(secs $(($(now_ms) - t0))) s. tunshim sent $((ka1 - ka0))"
  note "keepalive echo(es) through the tunnel while the connection was idle. Each one"
  note "refreshed the router's UDP mapping, which would otherwise have expired after"
  note "$NAT_TIMEOUT s; after that the router drops whatever the server sends."
else
  note "LOST: nothing arrived within $((GAP + 8)) s (keepalives sent: $((ka1 - ka0)))."
fi
! in_ns "$late_pid" "$NS_C" || kill -9 "$late_pid" 2>/dev/null || true

# ---- the end ---------------------------------------------------------------------------
say ""
FOUND=0; [ "$PMTU" != "$INNER_MTU" ] || FOUND=1
if [ "$STALLED" = 1 ] && [ "$FOUND" = 1 ] && [ "$DONE" = 1 ] && [ "$ARRIVED" = 1 ]; then
  say "RESULT: the download stalled without tunshim; tunshim measured the path MTU, and the"
  say "download completed with it; the idle tunnel survived the NAT timeout."
  rc=0
else
  say "RESULT: the demo did not go as expected (stalled=$STALLED pmtu=${PMTU:-none} done=$DONE"
  say "arrived=$ARRIVED);"
  say "tunshim's log is $TMP/tunshim.log until the lab is removed."
  rc=1
fi
say "To run tunshim for your own tunnel: edit /etc/tunshim/tunshim.conf (interface, mss),"
say "check it with 'tunshim check-config', then 'systemctl start tunshim'."

if [ "$KEEP" = 1 ]; then
  say ""
  say "--keep: the lab stays up until you press Ctrl-C. In another terminal, try:"
  say "  ip netns exec $NS_C $TUNSHIM_BIN stats --socket $TMP/tunshim.sock"
  say "  ip netns exec $NS_C ping -M do -s $((INNER_MTU - 28)) -c 2 $S_TUN   # $INNER_MTU bytes: pass"
  say "  ip netns exec $NS_C ping -M do -s $((INNER_MTU - 27)) -c 2 $S_TUN   # one more: vanish"
  say "  ip netns exec $NS_C curl -s http://127.0.0.1:9477/metrics"
  say "  ip netns exec $NS_C iptables-save -t mangle"
  say "  tail -f $TMP/tunshim.log"
  while alive "$DAEMON_PID"; do sleep 0.5; done
  say "tunshim exited."
fi
exit "$rc"
