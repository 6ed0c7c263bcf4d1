# Shared helpers for end-to-end tests. Source it first thing:
#   . "$(dirname "$0")/lib.sh"
# Every namespace made through `mkns` carries this run's unique prefix and is deleted by
# the EXIT trap on every exit path (pass, fail, error, signal). Traffic stays inside the
# namespaces a test made, or on loopback.
set -euo pipefail
# A top-level command that ends the script through errexit says so (otherwise the output
# just stops). Not inherited by functions or subshells (no -E): it fires only on the way out.
trap 'printf "[%s] FATAL: line %s: exit status %s from: %s\n" "$E2E_NAME" "$LINENO" "$?" "$BASH_COMMAND"' ERR

E2E_NAME=$(basename "$0" .sh)
E2E_PREFIX="ts$$"
E2E_TMP=$(mktemp -d "/tmp/tunshim-${E2E_NAME}.XXXXXX")
E2E_NS=()
E2E_CLEANUP=()   # extra commands run at exit, last registered first
E2E_FAILS=0
E2E_PASSES=0

TUNSHIM_SRC=${TUNSHIM_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
TUNSHIM_BIN=${TUNSHIM_BIN:-$TUNSHIM_SRC/build/proxy/tunshim}
PY=/usr/bin/python3   # Debian's interpreter: the one with python3-scapy
# The data path the daemons of this run use where their config does not say
# (docs/DATAPATH.md): tests/CMakeLists.txt runs some scripts once per path.
TUNSHIM_DATAPATH=${TUNSHIM_DATAPATH:-queue}
export TUNSHIM_TEST_DATAPATH=$TUNSHIM_DATAPATH
case $TUNSHIM_DATAPATH in queue|bpf) ;; *) printf 'TUNSHIM_DATAPATH=%s: queue or bpf\n' "$TUNSHIM_DATAPATH"; exit 1 ;; esac
# How long a daemon may take to say it is running: loading (verifying) the eBPF programs
# takes seconds on a busy host or a sanitizer build.
E2E_START_WAIT=10
[ "$TUNSHIM_DATAPATH" = queue ] || E2E_START_WAIT=90

log()  { printf '[%s] %s\n' "$E2E_NAME" "$*"; }
pass() { E2E_PASSES=$((E2E_PASSES + 1)); printf '[%s] PASS: %s\n' "$E2E_NAME" "$*"; }
fail() { E2E_FAILS=$((E2E_FAILS + 1)); printf '[%s] FAIL: %s\n' "$E2E_NAME" "$*"; }
die()  { printf '[%s] FATAL: %s\n' "$E2E_NAME" "$*"; exit 1; }

# Skips (exit 77) only outside CI; in CI a missing prerequisite is a failure.
skip() {
  if [ -n "${CI:-}" ]; then die "cannot run: $*"; fi
  printf '[%s] SKIP: %s\n' "$E2E_NAME" "$*"; exit 77
}
require_root() { [ "$(id -u)" -eq 0 ] || skip "needs root"; }
require_cmd()  { local c; for c in "$@"; do command -v "$c" >/dev/null || skip "missing $c (run scripts/deps.sh)"; done; }

on_exit() { E2E_CLEANUP+=("$*"); }

# Under a sanitizer build (scripts/test.sh runs the suite once against build-asan) every
# ASan/LSan/UBSan report of a process this test starts is written to $E2E_TMP/sanitizer.*
# and fails the test at exit (printed), whether or not the test looked at that process's exit
# status. Other builds ignore these variables.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$E2E_TMP/sanitizer.asan"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$E2E_TMP/sanitizer.ubsan"
_e2e_sanitizer_reports() {
  local f found=0
  for f in "$E2E_TMP"/sanitizer.*; do
    [ -s "$f" ] || continue
    found=1
    printf '[%s] FAIL: sanitizer report %s:\n' "$E2E_NAME" "${f##*/}"
    sed 's/^/    /' "$f"
  done
  return "$found"
}

# True when the daemon under test is a sanitizer build. Its resident size says nothing about
# leaks (ASan keeps freed memory in quarantine, up to 256 MB, and maps shadow memory as it
# goes); LeakSanitizer checks leaks at its exit instead, and the plain build's run of the
# same test checks that memory stays flat.
e2e_sanitized() { grep -q __asan_init "$TUNSHIM_BIN" 2>/dev/null; }

# mkns NAME: creates namespace "$E2E_PREFIX-NAME" with loopback up; prints nothing.
# Use "$(ns NAME)" for its full name, or `inns NAME cmd…` to run inside it.
ns()   { printf '%s-%s' "$E2E_PREFIX" "$1"; }
mkns() { ip netns add "$(ns "$1")"; E2E_NS+=("$(ns "$1")"); ip -n "$(ns "$1")" link set lo up; }
inns() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }

_e2e_cleanup() {
  local rc=$? i
  set +e
  for ((i = ${#E2E_CLEANUP[@]} - 1; i >= 0; i--)); do eval "${E2E_CLEANUP[$i]}" >/dev/null 2>&1; done
  for n in "${E2E_NS[@]}"; do
    # Kill anything still running inside the namespace before deleting it.
    for p in $(ip netns pids "$n" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$n" 2>/dev/null
  done
  _e2e_sanitizer_reports || rc=1
  # A failed test shows the end of every daemon log it kept: CI keeps nothing else.
  if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
    for f in "$E2E_TMP"/*tunshim*.log "$E2E_TMP"/daemon*.log; do
      [ -s "$f" ] || continue
      printf '[%s] the last lines of %s:\n' "$E2E_NAME" "${f##*/}"
      tail -n 40 "$f" | sed 's/^/    | /'
    done
  fi
  rm -rf "$E2E_TMP"
  exit "$rc"
}
trap _e2e_cleanup EXIT
trap 'exit 130' INT TERM

# Ends the test: the summary line ctest and CI read, and the exit code.
finish() {
  printf '%s: %d passed, %d failed\n' "$E2E_NAME" "$E2E_PASSES" "$E2E_FAILS"
  if [ "$E2E_FAILS" -eq 0 ] && [ "$E2E_PASSES" -gt 0 ]; then exit 0; fi
  exit 1
}

# wait_for SECONDS CMD…: polls CMD every 0.1 s until it succeeds; fails after SECONDS.
wait_for() {
  local t=$1; shift
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.1
  done
}

# e2e_tunnel_json NS SOCK EXPR: the Python expression EXPR over the first tunnel of
# `tunshim stats --json` (control socket SOCK, in namespace NS), printed; `t` is the
# tunnel's entry, `m` its metrics, `s` its black-hole symptoms; a bool prints as true/false.
# Prints nothing when the daemon does not answer.
e2e_tunnel_json() {
  inns "$1" "$TUNSHIM_BIN" stats --json --socket "$2" 2>/dev/null | "$PY" -c '
import json, sys
t = json.load(sys.stdin)["tunnels"][0]; m = t.get("metrics", {})
s = m.get("blackhole_symptoms_total", {})
v = eval(sys.argv[1])
print(str(v).lower() if isinstance(v, bool) else v)' "$3"
}

# e2e_tunshim_start NS CONF: `tunshim run -c CONF` in namespace NS, log in
# $E2E_TMP/tunshim.log, killed at exit; waits until it says it is running. Its pid (the
# command's own: `ip netns exec` execs it) is in E2E_TUNSHIM_PID.
e2e_tunshim_start() {
  ip netns exec "$(ns "$1")" "$TUNSHIM_BIN" run -c "$2" >"$E2E_TMP/tunshim.log" 2>&1 &
  E2E_TUNSHIM_PID=$!
  on_exit "kill -9 $E2E_TUNSHIM_PID"
  wait_for "$E2E_START_WAIT" grep -q "running:" "$E2E_TMP/tunshim.log" || {
    cat "$E2E_TMP/tunshim.log"
    die "tunshim did not start"
  }
}

# e2e_syns NS DST N: N connection attempts from namespace NS to DST:9 (closed), each a
# fresh SYN, back to back.
e2e_syns() {
  inns "$1" "$PY" - "$2" "$3" <<'PYEOF'
import socket, sys
dst, n = sys.argv[1], int(sys.argv[2])
for _ in range(n):
    s = socket.socket()
    s.settimeout(1.0)
    try:
        s.connect((dst, 9))
    except OSError:
        pass
    s.close()
PYEOF
}

# ---- the eBPF data path (TUNSHIM_DATAPATH=bpf) ------------------------------------------------
# What tunshim's tc programs on an interface hold, read from the kernel (bpftool), so a test
# can assert on the bpf path what it asserts on the queue path from rules and their counters.
# e2e_bpf_filters NS IF DIR: how many tunshim filters sit on IF's clsact DIR (egress|ingress).
e2e_bpf_filters() { inns "$1" tc filter show dev "$2" "$3" 2>/dev/null | grep -c 'tunshim_' || true; }
# e2e_bpf_prog_id NS IF DIR: the id of the tunshim program there ("" if none).
e2e_bpf_prog_id() {
  inns "$1" tc filter show dev "$2" "$3" 2>/dev/null | sed -n 's/.*tunshim_.* id \([0-9]*\).*/\1/p' | head -1
}
# e2e_bpf_hooked NS IF: one tunshim filter on each direction of IF.
e2e_bpf_hooked() { [ "$(e2e_bpf_filters "$1" "$2" egress)" = 1 ] && [ "$(e2e_bpf_filters "$1" "$2" ingress)" = 1 ]; }
# e2e_bpf_state NS IF [KEY]: the maps of the program on IF's egress hook, as "key=value"
# words: the interface's settings (mss4 mss6 guard_mtu probe_valid), its counters summed
# over the CPUs (out_clamped in_inserted … by clamp::Outcome, guard_dropped guard_lost
# guard_probe guard_stale guard_gso) and hb_age_ms (age of the daemon's heartbeat). With
# KEY, just that value. Prints nothing if no program is there (e.g. the daemon detached).
e2e_bpf_state() {
  local id ifindex out
  id=$(e2e_bpf_prog_id "$1" "$2" egress)
  [ -n "$id" ] || return 0
  ifindex=$(inns "$1" cat "/sys/class/net/$2/ifindex")
  out=$("$PY" - "$id" "$ifindex" <<'PYEOF'
import json, subprocess, sys, time
prog, ifindex = sys.argv[1], int(sys.argv[2])
def bt(*a):
    return json.loads(subprocess.run(["bpftool", "-j", *a], check=True, capture_output=True, text=True).stdout)
maps = {bt("map", "show", "id", str(m))["name"]: m for m in bt("prog", "show", "id", prog)["map_ids"]}
def dump(name):
    return [e["formatted"] for e in bt("map", "dump", "id", str(maps[name]))]
out = {}
iface = next((e["value"] for e in dump("ts_ifaces") if e["key"] == ifindex), None)
if iface is None:
    sys.exit(0)
for k in ("mss4", "mss6", "guard_mtu", "probe_valid"):
    out[k] = iface[k]
outcomes = ["clamped", "inserted", "unchanged", "no_room", "not_syn", "not_tcp", "fragment", "malformed", "disabled"]
guards = ["dropped", "lost", "probe", "stale", "gso"]
sums = {}
for e in dump("ts_counters"):
    if e["key"] != iface["slot"]:
        continue
    for cpu in e["values"]:
        v = cpu["value"]
        for d, dname in enumerate(("out", "in")):
            for o, oname in enumerate(outcomes):
                sums[f"{dname}_{oname}"] = sums.get(f"{dname}_{oname}", 0) + v["clamp"][d][o]
        for g, gname in enumerate(guards):
            sums[f"guard_{gname}"] = sums.get(f"guard_{gname}", 0) + v["guard"][g]
out.update(sums)
st = dump("ts_state")[0]["value"]
hb = st["heartbeat_ns"]
out["hb_age_ms"] = (time.clock_gettime_ns(time.CLOCK_MONOTONIC) - hb) // 1000000 if hb else -1
print(" ".join(f"{k}={v}" for k, v in out.items()))
PYEOF
) || return 0
  if [ $# -ge 3 ]; then tr ' ' '\n' <<<"$out" | sed -n "s/^$3=//p"; else echo "$out"; fi
}
[ "$TUNSHIM_DATAPATH" = queue ] || require_cmd tc bpftool
