#!/usr/bin/env bash
# Idle cost of the daemon per tunnel: wake-ups (voluntary + involuntary context switches of
# the whole process) per second and resident memory, on the tunnel lab with nothing
# crossing the tunnel, for three configs: clamp only (keepalive off), clamp + keepalive
# idle 10 s, and mss = "auto" (path-MTU search, its 30 s re-confirmation, the guard) +
# keepalive idle 10 s. Goal (issue 5): at most one wake-up per second per tunnel.
#   sudo TUNSHIM_BIN=build/proxy/tunshim bash bench/idle_cost.sh [--settle S] [--measure S]
. "$(dirname "$0")/../tests/e2e/lib.sh"
. "$(dirname "$0")/../tests/e2e/lab.sh"
. "$(dirname "$0")/../tests/e2e/pmtu_lab.sh"

SETTLE=15; MEASURE=60
while [ $# -gt 0 ]; do
  case $1 in
    --settle) SETTLE=$2; shift 2 ;;
    --measure) MEASURE=$2; shift 2 ;;
    *) die "usage: $0 [--settle S] [--measure S]" ;;
  esac
done
[ -x "$TUNSHIM_BIN" ] || die "TUNSHIM_BIN=$TUNSHIM_BIN is not executable"

ctx() { awk '/^voluntary_ctxt_switches|^nonvoluntary_ctxt_switches/ {n += $2} END {print n}' "/proc/$1/status"; }
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

pmtu_lab_up
pmtu_lab_underlay 1400
ROWS=()
for c in off idle auto; do
  case $c in
    off)  mss=1360; extra='keepalive = "off"' ;;
    idle) mss=1360; extra='keepalive = "idle"' ;;
    auto) mss='"auto"'; extra='keepalive = "idle"' ;;
  esac
  printf '[global]\nlog_level = "info"\nstats_listen = "off"\ncontrol_socket = "off"\n[[tunnel]]\ninterface = "ppp0"\nmss = %s\n%s\n' \
    "$mss" "$extra" >"$LAB_TUNSHIM_CONF"
  lab_tunshim_start
  sleep "$SETTLE"
  a=$(ctx "$LAB_TUNSHIM_PID"); sleep "$MEASURE"; b=$(ctx "$LAB_TUNSHIM_PID")
  r=$(rss "$LAB_TUNSHIM_PID")
  if [ "$c" = auto ]; then lab_tunshim_logged 'path MTU 1372 to' && pass "auto: path MTU 1372 measured" || fail "auto: no path MTU line"; fi
  lab_tunshim_stop
  ROWS+=("$(awk -v c="$c" -v n=$((b - a)) -v s="$MEASURE" -v r="$r" \
    'BEGIN { printf "%-5s %6d wake-ups in %d s = %5.2f/s   RSS %s kB", c, n, s, n / s, r }')")
done
printf 'idle cost (whole daemon, one idle tunnel; includes the 10 s rule-counter refresh):\n'
printf '  %s\n' "${ROWS[@]}"
finish
