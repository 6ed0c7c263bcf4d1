# The tunnel lab: a real userspace VPN across a path-MTU black hole, for the inline daemon's
# end-to-end tests and its benchmark. Source it after lib.sh:
#   . "$(dirname "$0")/lib.sh"; . "$(dirname "$0")/lab.sh"; lab_up [--lan]
#
#   lan ─── client ═══════ ppp0 (socat TUN over UDP, MTU 1500) ════════ tun0 ─── server
#  (opt.)     c0 (MTU 9000) ── r0  router  r1 ── s0 (MTU 9000)
#                                └ forwarding path carries 1400: DF packets above that are
#                                  dropped and answered with "fragmentation needed", which
#                                  an nft rule in the router drops too: a PMTU black hole.
#
# The narrow hop is a route MTU on the router (both directions), not a narrow veth: a veth
# silently discards frames larger than its *receiving* end's MTU, so a narrow veth would need
# a narrow endpoint, whose own kernel would then fragment (or refuse) the outer packets
# before they ever reached the black hole. The endpoints' links are 9000 so the outer UDP
# packets (inner 1500 + 28) leave whole, with DF (socat ip-mtu-discover=2, IP_PMTUDISC_DO).
# Inner packets of at most 1400 - 28 = 1372 bytes pass: any MSS <= 1332 works.
#
# Everything is addressed inside the lab's own namespaces; nothing touches the root one.

LAB_UNDER_MTU=9000
LAB_PATH_MTU=1400
LAB_TUN_MTU=1500
LAB_C_UNDER=10.77.1.1; LAB_R_CSIDE=10.77.1.254
LAB_S_UNDER=10.77.2.1; LAB_R_SSIDE=10.77.2.254
LAB_C_TUN=172.30.0.1;  LAB_S_TUN=172.30.0.2
LAB_C_TUN6=fd77:30::1; LAB_S_TUN6=fd77:30::2
LAB_LAN_NET=10.77.9.0/24; LAB_LAN_GW=10.77.9.1; LAB_LAN_HOST=10.77.9.2
LAB_UDP_PORT=5555
LAB_HTTP_PORT=8080
LAB_DIR=${LAB_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
LAB_TUNSHIM_PID=""
LAB_TUNSHIM_LOGPOS=0
LAB_TUNSHIM_CONF="$E2E_TMP/tunshim.conf"
LAB_TUNSHIM_LOG="$E2E_TMP/tunshim.log"
# The daemon's control socket: this test's own, never the host's /run/tunshim.sock (tests
# run side by side, and a real tunshim may be running).
LAB_TUNSHIM_SOCK="$E2E_TMP/ctl.sock"

# lab_bg PID: a background helper of this test, killed at exit on every path. Disowned so
# the shell does not report its death; lab_gone tells whether it still runs.
lab_bg() { disown "$1" 2>/dev/null || true; on_exit "kill -9 $1 2>/dev/null"; }
# lab_spawn NS LOG CMD…: starts CMD in namespace NS in the background, output to LOG, as a
# lab_bg helper; its pid (the command's own: `ip netns exec` execs it) is in LAB_PID.
# Never `inns … &`: that backgrounds a subshell, and signals would miss the command.
lab_spawn() {
  local n=$1 out=$2; shift 2
  ip netns exec "$(ns "$n")" "$@" >"$out" 2>&1 &
  LAB_PID=$!
  lab_bg "$LAB_PID"
}
lab_gone() {
  local st
  st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 0
  [ -z "$st" ] || [ "$st" = Z ]
}

# lab_sysctls NS: deterministic TCP behaviour. MTU probing and black-hole detection off (the
# defaults, written down), so only a clamp can rescue a stalled connection.
lab_sysctls() {
  inns "$1" sysctl -qw net.ipv4.tcp_mtu_probing=0 net.ipv4.ip_no_pmtu_disc=0
}

# lab_link NS1 IF1 NS2 IF2 MTU: a veth pair created directly inside the two namespaces, so no
# interface name ever exists in the root namespace (parallel tests cannot collide).
lab_link() {
  ip -n "$(ns "$1")" link add "$2" mtu "$5" type veth peer name "$4" netns "$(ns "$3")" mtu "$5"
  ip -n "$(ns "$1")" link set "$2" up
  ip -n "$(ns "$3")" link set "$4" up
}

# lab_up [--lan] [--no-tunnel]: builds the lab and starts the tunnel and the server.
#   --lan        adds a fourth namespace `lan` routed through the client (forwarding path)
#   --no-tunnel  (benchmark) ppp0 is a plain veth from client to server (same names and
#                addresses, no socat, no black hole), so the figures measure the queue, not
#                a userspace tunnel's per-packet cost
lab_up() {
  local want_lan=0 tunnel=1
  while [ $# -gt 0 ]; do
    case $1 in --lan) want_lan=1 ;; --no-tunnel) tunnel=0 ;; *) die "lab_up: bad option $1" ;; esac
    shift
  done
  require_root
  require_cmd ip nft iptables socat curl tcpdump tshark "$PY"
  mkns client; mkns server
  lab_sysctls client; lab_sysctls server
  if [ "$tunnel" -eq 1 ]; then
    mkns router
    lab_link client c0 router r0 "$LAB_UNDER_MTU"
    lab_link router r1 server s0 "$LAB_UNDER_MTU"
    ip -n "$(ns client)" addr add "$LAB_C_UNDER/24" dev c0
    ip -n "$(ns router)" addr add "$LAB_R_CSIDE/24" dev r0
    ip -n "$(ns router)" addr add "$LAB_R_SSIDE/24" dev r1
    ip -n "$(ns server)" addr add "$LAB_S_UNDER/24" dev s0
    ip -n "$(ns client)" route add default via "$LAB_R_CSIDE"
    ip -n "$(ns server)" route add default via "$LAB_R_SSIDE"
    inns router sysctl -qw net.ipv4.ip_forward=1
    # The narrow hop: the router's forwarding path carries only LAB_PATH_MTU bytes.
    ip -n "$(ns router)" route replace 10.77.1.0/24 dev r0 src "$LAB_R_CSIDE" mtu lock "$LAB_PATH_MTU"
    ip -n "$(ns router)" route replace 10.77.2.0/24 dev r1 src "$LAB_R_SSIDE" mtu lock "$LAB_PATH_MTU"
    # ...and the "fragmentation needed" it sends back never arrives: the black hole.
    inns router nft -f - <<'EOF'
table inet lab_blackhole {
  chain icmp_out {
    type filter hook output priority 0; policy accept;
    icmp type destination-unreachable icmp code frag-needed counter drop
  }
  chain icmp_forward {
    type filter hook forward priority 0; policy accept;
    icmp type destination-unreachable icmp code frag-needed counter drop
  }
}
EOF
    # The VPN: one UDP datagram per inner packet, DF set on every outer packet.
    lab_spawn server "$E2E_TMP/socat-server.log" socat -b 65536 \
      "TUN:$LAB_S_TUN/30,tun-name=tun0,iff-no-pi,tun-type=tun,iff-up" \
      "UDP-DATAGRAM:$LAB_C_UNDER:$LAB_UDP_PORT,bind=$LAB_S_UNDER:$LAB_UDP_PORT,ip-mtu-discover=2"
    lab_spawn client "$E2E_TMP/socat-client.log" socat -b 65536 \
      "TUN:$LAB_C_TUN/30,tun-name=ppp0,iff-no-pi,tun-type=tun,iff-up" \
      "UDP-DATAGRAM:$LAB_S_UNDER:$LAB_UDP_PORT,bind=$LAB_C_UNDER:$LAB_UDP_PORT,ip-mtu-discover=2"
    wait_for 5 ip -n "$(ns client)" link show ppp0 || die "client tunnel did not come up"
    wait_for 5 ip -n "$(ns server)" link show tun0 || die "server tunnel did not come up"
    ip -n "$(ns client)" link set ppp0 mtu "$LAB_TUN_MTU"
    ip -n "$(ns server)" link set tun0 mtu "$LAB_TUN_MTU"
  else
    lab_link client ppp0 server tun0 "$LAB_TUN_MTU"
    ip -n "$(ns client)" addr add "$LAB_C_TUN/30" dev ppp0
    ip -n "$(ns server)" addr add "$LAB_S_TUN/30" dev tun0
  fi
  ip -n "$(ns client)" -6 addr add "$LAB_C_TUN6/64" dev ppp0 nodad
  ip -n "$(ns server)" -6 addr add "$LAB_S_TUN6/64" dev tun0 nodad
  if [ "$want_lan" -eq 1 ]; then
    mkns lan
    lab_sysctls lan
    lab_link lan l0 client l1 1500
    ip -n "$(ns lan)" addr add "$LAB_LAN_HOST/24" dev l0
    ip -n "$(ns client)" addr add "$LAB_LAN_GW/24" dev l1
    ip -n "$(ns lan)" route add default via "$LAB_LAN_GW"
    inns client sysctl -qw net.ipv4.ip_forward=1
    # Routed, not NATed: the server knows the office LAN lives behind the tunnel.
    ip -n "$(ns server)" route add "$LAB_LAN_NET" dev tun0
  fi
  wait_for 5 lab_reach client "$LAB_S_TUN" 9 || die "tunnel carries nothing"
}

# lab_reach NS HOST PORT: true once a TCP connect from NS gets an answer, a SYN-ACK or a
# reset (no ping binary needed: a refused connect proves both directions carry packets).
lab_reach() {
  inns "$1" "$PY" -c 'import socket,sys
s=socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.settimeout(1)
try: s.connect((sys.argv[1], int(sys.argv[2])))
except ConnectionRefusedError: pass
except OSError: sys.exit(1)' "$2" "$3"
}

# lab_blackhole_drops: how many "fragmentation needed" the router generated and dropped.
lab_blackhole_drops() {
  inns router nft -j list table inet lab_blackhole 2>/dev/null |
    "$PY" -c 'import json,sys
d=json.load(sys.stdin)["nftables"]
print(sum(e["counter"]["packets"] for r in d if "rule" in r for e in r["rule"]["expr"] if "counter" in e))'
}

# lab_server_start: HTTP server in the server namespace (GET /blob/N, PUT/POST /sink).
lab_server_start() {
  lab_spawn server "$E2E_TMP/http.log" "$PY" "$LAB_DIR/lab_http_server.py" "$LAB_HTTP_PORT"
  wait_for 5 sh -c "ip netns exec $(ns server) ss -Hltn 'sport = :$LAB_HTTP_PORT' | grep -q LISTEN" \
    || die "http server is not listening"
}

# lab_download NS HOST BYTES TIMEOUT: prints the number of bytes received (0 on failure).
lab_download() {
  local n
  n=$(inns "$1" curl -sS -g --max-time "$4" -o /dev/null -w '%{size_download}' \
      "http://$(lab_hostport "$2")/blob/$3" 2>>"$E2E_TMP/curl.log") || true
  echo "${n:-0}"
}

# lab_upload NS HOST BYTES TIMEOUT: prints the byte count the server says it received.
lab_upload() {
  local n f="$E2E_TMP/upload.$BASHPID.bin"
  head -c "$3" /dev/urandom >"$f"
  n=$(inns "$1" curl -sS -g --max-time "$4" -H 'Expect:' --data-binary "@$f" \
      "http://$(lab_hostport "$2")/sink" 2>>"$E2E_TMP/curl.log") || true
  case $n in ''|*[!0-9]*) echo 0 ;; *) echo "$n" ;; esac
}

lab_hostport() { case $1 in *:*) printf '[%s]:%s' "$1" "$LAB_HTTP_PORT" ;; *) printf '%s:%s' "$1" "$LAB_HTTP_PORT" ;; esac; }

# lab_capture_start NS IF FILE [FILTER]: tcpdump in the background until lab_capture_stop.
lab_capture_start() {
  local filter=${4:-tcp}
  lab_spawn "$1" "$3.log" tcpdump -i "$2" -n -s 128 -U --immediate-mode -w "$3" "$filter"
  LAB_CAP_PID=$LAB_PID
  wait_for 5 grep -q "listening on" "$3.log" || die "tcpdump on $1/$2 did not start"
}
lab_capture_stop() {
  sleep 0.3   # let the last packets reach the file (-U flushes per packet)
  kill -INT "$LAB_CAP_PID" 2>/dev/null || true
  wait_for 5 lab_gone "$LAB_CAP_PID" || true
}

# lab_syn_mss FILE FLAGS: the MSS option of every TCP segment in FILE whose flags are exactly
# FLAGS (0x002 SYN, 0x012 SYN-ACK), one per line, "none" when it carries no MSS option.
lab_syn_mss() {
  tshark -r "$1" -Y "tcp.flags == $2" -T fields -e tcp.options.mss_val 2>/dev/null |
    sed 's/^$/none/'
}

# lab_max_payload FILE SRC: largest TCP payload sent by SRC (an address) in FILE, on the
# connections SRC opened while FILE was captured (their SYN is in it). A connection from
# before the capture does not count: a transfer that stalled in the black hole earlier
# leaves its socket retransmitting full-size segments after its client has given up.
lab_max_payload() {
  local f=ip.src
  case $2 in *:*) f=ipv6.src ;; esac
  { tshark -r "$1" -Y "$f == $2" -T fields -e tcp.stream -e tcp.flags -e tcp.len 2>/dev/null || true; } |
    awk '$2 ~ /^0x0*2$/ { opened[$1] = 1 } opened[$1] && $3 > max { max = $3 } END { if (max != "") print max }'
}

# --- the kernel's TCPMSS target: the reference clamp -------------------------------------
# lab_kernel_clamp MSS [MSS6]: SYN and SYN-ACK leaving and entering ppp0, as tunshim would.
lab_kernel_clamp() {
  local mss6=${2:-$(($1 - 20))} h
  for h in "POSTROUTING -o ppp0" "PREROUTING -i ppp0"; do
    # shellcheck disable=SC2086
    inns client iptables -t mangle -A $h -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss "$1"
    # shellcheck disable=SC2086
    inns client ip6tables -t mangle -A $h -p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss "$mss6"
  done
}
lab_kernel_unclamp() {
  inns client iptables -t mangle -F; inns client ip6tables -t mangle -F
}

# --- tunshim --------------------------------------------------------------------------------
# lab_tunshim_conf MSS [MSS6] [EXTRA-GLOBAL-LINES]: writes the daemon's config for ppp0.
lab_tunshim_conf() {
  {
    printf '[global]\nlog_level = "info"\ncontrol_socket = "%s"\n%s\n' "$LAB_TUNSHIM_SOCK" "${3:-}"
    printf '[[tunnel]]\ninterface = "ppp0"\nmss = %s\n' "$1"
    [ -z "${2:-}" ] || printf 'mss6 = %s\n' "$2"
  } >"$LAB_TUNSHIM_CONF"
}

# lab_tunshim_rules: the NFQUEUE rules tunshim installed in the client namespace (v4 + v6).
lab_tunshim_rules() {
  { inns client iptables-save -t mangle; inns client ip6tables-save -t mangle; } 2>/dev/null |
    grep -c -- '-j NFQUEUE' || true
}

# lab_tunshim_start: runs `tunshim run` in the client namespace with LAB_TUNSHIM_CONF and waits
# until it says it is running (its "tunshim <version> running" line, logged right after
# sd_notify READY=1, i.e. after its rules are installed). Not "until rules exist": rules
# orphaned by a killed run would make that true before the new process did anything.
lab_tunshim_start() {
  [ -x "$TUNSHIM_BIN" ] || die "TUNSHIM_BIN=$TUNSHIM_BIN is not executable"
  LAB_TUNSHIM_LOGPOS=0
  [ ! -f "$LAB_TUNSHIM_LOG" ] || LAB_TUNSHIM_LOGPOS=$(wc -l <"$LAB_TUNSHIM_LOG")
  ip netns exec "$(ns client)" "$TUNSHIM_BIN" run -c "$LAB_TUNSHIM_CONF" >>"$LAB_TUNSHIM_LOG" 2>&1 &
  LAB_TUNSHIM_PID=$!
  lab_bg "$LAB_TUNSHIM_PID"
  if ! wait_for "$E2E_START_WAIT" lab_tunshim_ready; then
    sed 's/^/  tunshim: /' "$LAB_TUNSHIM_LOG" | tail -20
    die "tunshim did not become ready"
  fi
}
lab_tunshim_ready() {
  ! lab_gone "$LAB_TUNSHIM_PID" && lab_tunshim_logged 'tunshim .* running' && lab_tunshim_hooked
}
# lab_tunshim_hooked: the daemon's packet hooks exist: its NFQUEUE rules, or with
# TUNSHIM_DATAPATH=bpf its tc filter on ppp0.
lab_tunshim_hooked() {
  if [ "$TUNSHIM_DATAPATH" = bpf ]; then
    e2e_bpf_hooked client ppp0
  else
    [ "$(lab_tunshim_rules)" -gt 0 ]
  fi
}
# lab_tunshim_logged REGEX: true if the current run logged a line matching REGEX. (Not grep -q:
# stopping at the first match would cut tail's pipe, and pipefail would turn that into false.)
lab_tunshim_logged() { tail -n "+$((LAB_TUNSHIM_LOGPOS + 1))" "$LAB_TUNSHIM_LOG" | grep -E -- "$1" >/dev/null; }
# lab_tunshim_stop [SIGNAL]: stops it (TERM by default) and waits for the process to go.
lab_tunshim_stop() {
  [ -n "$LAB_TUNSHIM_PID" ] || return 0
  kill "-${1:-TERM}" "$LAB_TUNSHIM_PID" 2>/dev/null || true
  wait_for 10 lab_gone "$LAB_TUNSHIM_PID" || fail "tunshim (pid $LAB_TUNSHIM_PID) ignored SIG${1:-TERM}"
  LAB_TUNSHIM_PID=""
}

# lab_jump_counts: "PREROUTING=N POSTROUTING=M" for iptables and ip6tables in the client's
# mangle table, counting rules in the built-in chains that jump to a chain of tunshim's or
# queue directly (a stale jump left by a crashed run counts too).
lab_jump_counts() {
  local fam out="" h
  for fam in iptables ip6tables; do
    local save
    save=$(inns client "$fam-save" -t mangle 2>/dev/null)
    for h in PREROUTING POSTROUTING; do
      out+="$fam:$h=$(printf '%s\n' "$save" | grep -c -E -- "^-A $h .*-j ([^ ]*[Tt][Uu][Nn][Ss][Hh][Ii][Mm]|NFQUEUE)") "
    done
  done
  echo "${out% }"
}

# lab_hook_counts: tunshim's hooks in the client namespace, on either data path: the jump
# rules (lab_jump_counts), or with TUNSHIM_DATAPATH=bpf the tunshim filters on ppp0 and any
# NFQUEUE rule. LAB_HOOKS_ONE is what one running daemon has.
lab_hook_counts() {
  if [ "$TUNSHIM_DATAPATH" = bpf ]; then
    echo "tc:egress=$(e2e_bpf_filters client ppp0 egress) tc:ingress=$(e2e_bpf_filters client ppp0 ingress) nfqueue=$(lab_tunshim_rules)"
  else
    lab_jump_counts
  fi
}
if [ "$TUNSHIM_DATAPATH" = bpf ]; then
  LAB_HOOKS_ONE="tc:egress=1 tc:ingress=1 nfqueue=0"
else
  LAB_HOOKS_ONE="iptables:PREROUTING=1 iptables:POSTROUTING=1 ip6tables:PREROUTING=1 ip6tables:POSTROUTING=1"
fi

# lab_request_syn_mss NS HOST: one small request from NS to HOST with a capture on the
# server's tun0 around it; prints "BYTES MSS…" (bytes received, then the MSS option of every
# SYN the server saw, "none" for a SYN without one).
lab_request_syn_mss() {
  local f="$E2E_TMP/req.$RANDOM.pcap" n
  lab_capture_start server tun0 "$f" tcp
  n=$(lab_download "$1" "$2" 1000 5)
  lab_capture_stop
  # shellcheck disable=SC2046  # one word per SYN
  echo "$n" $(lab_syn_mss "$f" 0x002)
}
