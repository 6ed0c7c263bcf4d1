# Liveness knobs on top of lab.sh's tunnel lab. Source after lib.sh and lab.sh:
#   . "$(dirname "$0")/lib.sh"; . "$(dirname "$0")/lab.sh"; . "$(dirname "$0")/live_lab.sh"
#
# The lab's VPN is two socat processes (client ppp0 <-> server tun0) over UDP port 5555.
# live_restart_script writes a program that "restarts the VPN" the way an on_down hook
# would (kill both ends, start them again on the next UDP port: a new flow, as a real client
# reconnecting gets a new source port / NAT mapping). Killing the client end deletes ppp0;
# the new one re-creates it with a new ifindex.

LIVE_PORT_FILE="$E2E_TMP/live-port"
LIVE_FAIL_PORT=""

# live_now_ms: wall-clock milliseconds (for figures between the test and its helpers).
live_now_ms() { date +%s%3N; }

# live_start_tunnel PORT: both socat ends on UDP PORT, pids recorded for the restart script.
# MASQ_PEER (optional env): the address the server sends to (the router, behind NAT).
live_start_tunnel() {
  local port=$1 peer=${LIVE_SERVER_PEER:-$LAB_C_UNDER}
  ip netns exec "$(ns server)" setsid socat -b 65536 \
    "TUN:$LAB_S_TUN/30,tun-name=tun0,iff-no-pi,tun-type=tun,iff-up" \
    "UDP-DATAGRAM:$peer:$port,bind=$LAB_S_UNDER:$port,ip-mtu-discover=2" \
    >>"$E2E_TMP/live-socat-server.log" 2>&1 </dev/null &
  echo $! >"$E2E_TMP/live-server.pid"; disown $! 2>/dev/null || true
  ip netns exec "$(ns client)" setsid socat -b 65536 \
    "TUN:$LAB_C_TUN/30,tun-name=ppp0,iff-no-pi,tun-type=tun,iff-up" \
    "UDP-DATAGRAM:$LAB_S_UNDER:$port,bind=$LAB_C_UNDER:$port,ip-mtu-discover=2" \
    >>"$E2E_TMP/live-socat-client.log" 2>&1 </dev/null &
  echo $! >"$E2E_TMP/live-client.pid"; disown $! 2>/dev/null || true
  echo "$port" >"$LIVE_PORT_FILE"
}

# live_stop_tunnel: kills both socat ends (ours or the lab's), waits for ppp0/tun0 to go.
live_stop_tunnel() {
  local p
  for p in $(ip netns pids "$(ns client)" 2>/dev/null) $(ip netns pids "$(ns server)" 2>/dev/null); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = socat ] && kill -9 "$p" 2>/dev/null
  done
  wait_for 5 sh -c "! ip -n $(ns client) link show ppp0" || true
  wait_for 5 sh -c "! ip -n $(ns server) link show tun0" || true
}

# live_take_over_tunnel PORT: replaces the lab's socat pair by ours on PORT (so the restart
# script can find and restart it), waits until the tunnel carries packets.
live_take_over_tunnel() {
  live_stop_tunnel
  live_start_tunnel "$1"
  wait_for 5 ip -n "$(ns client)" link show ppp0 || die "ppp0 did not come back"
  wait_for 10 lab_reach client "$LAB_S_TUN" 9 || die "tunnel on port $1 carries nothing"
}

# live_restart_script FILE: writes FILE, an executable on_down hook that records its
# environment in FILE.log and restarts the tunnel on the next port.
live_restart_script() {
  local f=$1
  cat >"$f" <<SCRIPT
#!/bin/bash
set -u
echo "\$(date +%s%3N) event=\${TUNSHIM_EVENT:-} iface=\${TUNSHIM_INTERFACE:-} peer=\${TUNSHIM_PEER:-} pmtu=\${TUNSHIM_PMTU:-} down=\${TUNSHIM_DOWN_SECONDS:-}" >>"$f.log"
echo "restarting the tunnel (hook output goes to tunshim's log)"
for p in \$(ip netns pids $(ns client)) \$(ip netns pids $(ns server)); do
  [ "\$(cat /proc/\$p/comm 2>/dev/null)" = socat ] && kill -9 "\$p" 2>/dev/null
done
sleep 0.3
port=\$((\$(cat "$LIVE_PORT_FILE") + 1))
ip netns exec $(ns server) setsid socat -b 65536 "TUN:$LAB_S_TUN/30,tun-name=tun0,iff-no-pi,tun-type=tun,iff-up" \
  "UDP-DATAGRAM:${LIVE_SERVER_PEER:-$LAB_C_UNDER}:\$port,bind=$LAB_S_UNDER:\$port,ip-mtu-discover=2" >>"$E2E_TMP/live-socat-server.log" 2>&1 </dev/null &
ip netns exec $(ns client) setsid socat -b 65536 "TUN:$LAB_C_TUN/30,tun-name=ppp0,iff-no-pi,tun-type=tun,iff-up" \
  "UDP-DATAGRAM:$LAB_S_UNDER:\$port,bind=$LAB_C_UNDER:\$port,ip-mtu-discover=2" >>"$E2E_TMP/live-socat-client.log" 2>&1 </dev/null &
echo "\$port" >"$LIVE_PORT_FILE"
echo "tunnel restarted on port \$port"
exit 0
SCRIPT
  chmod +x "$f"
}

# live_record_script FILE: an executable hook that only records its environment in FILE.log.
live_record_script() {
  cat >"$1" <<SCRIPT
#!/bin/sh
echo "\$(date +%s%3N) event=\${TUNSHIM_EVENT:-} iface=\${TUNSHIM_INTERFACE:-} peer=\${TUNSHIM_PEER:-} pmtu=\${TUNSHIM_PMTU:-} down=\${TUNSHIM_DOWN_SECONDS:-}" >>"$1.log"
SCRIPT
  chmod +x "$1"
}

# live_drop_port PORT: the router silently drops the tunnel's UDP on PORT (both ways):
# the server side "dies" while ppp0 stays up. live_drop_clear removes it.
live_drop_port() {
  inns router nft -f - <<EOF
table inet live_drop {
  chain forward {
    type filter hook forward priority -20; policy accept;
    udp dport $1 counter drop
    udp sport $1 counter drop
  }
}
EOF
}
live_drop_clear() { inns router nft delete table inet live_drop 2>/dev/null || true; }

# live_conf EXTRA-TUNNEL-LINES: tunshim config for ppp0 (mss 1300) plus liveness keys.
live_conf() {
  {
    printf '[global]\nlog_level = "info"\ncontrol_socket = "%s"\n' "$LAB_TUNSHIM_SOCK"
    printf '[[tunnel]]\ninterface = "ppp0"\nmss = 1300\n%s\n' "$1"
  } >"$LAB_TUNSHIM_CONF"
}

# live_stats: asks tunshim for its counters (SIGUSR1) and prints the latest liveness line.
live_stats() {
  kill -USR1 "$LAB_TUNSHIM_PID" 2>/dev/null || return 1
  sleep 0.5
  tail -n "+$((LAB_TUNSHIM_LOGPOS + 1))" "$LAB_TUNSHIM_LOG" | grep 'tunnel ppp0: state ' | tail -1
}
# live_field LINE NAME: the number after "NAME=" in a stats line (first match).
live_field() { printf '%s\n' "$1" | grep -o "$2=[0-9.]*" | head -1 | cut -d= -f2; }
# live_count REGEX: lines of the current run's log matching REGEX.
live_count() { tail -n "+$((LAB_TUNSHIM_LOGPOS + 1))" "$LAB_TUNSHIM_LOG" | grep -Ec -- "$1" || true; }

# live_require_keys: the liveness keys are refused until their flags in config.cpp's key
# table are flipped; say so and skip (exit 77; a failure in CI) instead of failing later.
live_require_keys() {
  local out
  if ! out=$("$TUNSHIM_BIN" check-config -c "$LAB_TUNSHIM_CONF" 2>&1); then
    if printf '%s\n' "$out" | grep -q 'not supported by this version of tunshim yet'; then
      skip "this build refuses the liveness keys (config.cpp key table): $(printf '%s\n' "$out" | grep -m1 'not supported')"
    fi
    die "config refused: $out"
  fi
}
