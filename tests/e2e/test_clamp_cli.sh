#!/usr/bin/env bash
# `tunshim clamp` on capture files: every supported link type, the summary, the MSS
# arithmetic of the options, and the failure paths (unsupported link type, missing or
# corrupt input) that must leave OUT alone. Needs no root and no namespace: files only.
# Captures come from clamp_cli_caps.py (scapy + struct), which also checks the output
# independently (own checksum code, byte comparison of every untouched record).
. "$(dirname "$0")/lib.sh"

require_cmd "$PY" editcap
[ -x "$TUNSHIM_BIN" ] || die "TUNSHIM_BIN=$TUNSHIM_BIN is not an executable"
CAPS="$PY $(dirname "$0")/clamp_cli_caps.py"
T=$E2E_TMP

# run_clamp NAME ARGS…: runs tunshim clamp, keeping stdout/stderr/exit code in $T/NAME.*
run_clamp() {
  local name=$1; shift
  set +e
  "$TUNSHIM_BIN" clamp "$@" >"$T/$name.out" 2>"$T/$name.err"
  echo $? >"$T/$name.rc"
  set -e
}
rc_of() { cat "$T/$1.rc"; }
json_get() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
no_temp_left() { ! ls "$1".tmp.* >/dev/null 2>&1; }

# ---- every link type: MSS at the target, checksums valid, the rest byte-identical -----
LINKS=$($CAPS links)
# shellcheck disable=SC2086
$CAPS gen "$T" $LINKS
for link in $LINKS; do
  d=$T/$link
  run_clamp "$link" --mss 1360 --mss6 1300 --json "$d/in.pcap" "$d/out.pcap"
  if [ "$(rc_of "$link")" -ne 0 ]; then
    fail "$link: exit $(rc_of "$link"): $(cat "$T/$link.err")"
    continue
  fi
  if problems=$($CAPS check "$d" "$d/out.pcap" 1360 1300 "$T/$link.out" 2>&1); then
    pass "$link: MSS clamped/inserted, checksums verify, other records byte-identical, --json counts match"
  else
    fail "$link: $(echo "$problems" | head -5 | tr '\n' ';')"
  fi
done

# ---- the sample capture: the README's command and its summary in words -----------------
S=$TUNSHIM_SRC/tests/data/sample.pcap
run_clamp sample --mtu 1400 "$S" "$T/sample_out.pcap"
if [ "$(rc_of sample)" -eq 0 ] &&
   grep -qE '^tunshim clamp: 43 packets read, 43 written .*IPv4 MSS target 1360, IPv6 1340' "$T/sample.out" &&
   grep -qE '^  SYNs seen +8 +\(SYN-ACK 4\)' "$T/sample.out" &&
   grep -qE '^  clamped +5$' "$T/sample.out" && grep -qE '^  inserted +1$' "$T/sample.out" &&
   grep -qE '^  unchanged +2$' "$T/sample.out" && grep -qE '^  not IP +2$' "$T/sample.out" &&
   grep -qE '^  not TCP +6$' "$T/sample.out" && grep -qE '^  not SYN +27$' "$T/sample.out" &&
   [ ! -s "$T/sample.err" ]; then
  pass "sample.pcap --mtu 1400: summary 43 read/written, 8 SYNs (4 SYN-ACK), 5 clamped, 1 inserted, 2 unchanged"
else
  fail "sample.pcap summary: rc=$(rc_of sample) $(tr '\n' '|' <"$T/sample.out") err=$(cat "$T/sample.err")"
fi
# The output must read back in tcpdump with the new MSS values.
if tcpdump -nr "$T/sample_out.pcap" 2>/dev/null | grep -c 'mss 1360\|mss 1340\|mss 536' | grep -qx 6; then
  pass "sample output: tcpdump reads 6 SYNs with mss 1360/1340/536"
else
  fail "sample output: tcpdump does not show the clamped values"
fi

# ---- option arithmetic, seen in --json --------------------------------------------------
check_targets() {  # name expected_mss4 expected_mss6 args…
  local name=$1 m4=$2 m6=$3; shift 3
  run_clamp "$name" --json "$@" "$S" "$T/$name.pcap"
  local g4 g6
  g4=$(json_get "$T/$name.out" mss4 2>/dev/null || echo "?")
  g6=$(json_get "$T/$name.out" mss6 2>/dev/null || echo "?")
  if [ "$(rc_of "$name")" -eq 0 ] && [ "$g4" = "$m4" ] && [ "$g6" = "$m6" ]; then
    pass "targets $*: IPv4 $g4, IPv6 $g6"
  else
    fail "targets $*: got $g4/$g6 (rc $(rc_of "$name")), expected $m4/$m6"
  fi
}
check_targets mtu1400 1360 1340 --mtu 1400
check_targets mtu1280 1240 1220 --mtu 1280
check_targets mss1400 1400 1380 --mss 1400
check_targets mss6 1360 1200 --mss 1360 --mss6 1200
check_targets mtu_mss6 1360 1000 --mtu 1400 --mss6 1000
# And the values actually land in the packets (--mtu 1300: 1260 / 1240).
run_clamp mtu_apply --json --mtu 1300 "$T/en10mb/in.pcap" "$T/mtu_out.pcap"
if [ "$(rc_of mtu_apply)" -eq 0 ] && p=$($CAPS check "$T/en10mb" "$T/mtu_out.pcap" 1260 1240 "$T/mtu_apply.out"); then
  pass "--mtu 1300 writes MSS 1260 (IPv4) and 1240 (IPv6) into the packets"
else
  fail "--mtu 1300: rc=$(rc_of mtu_apply) $p"
fi
run_clamp both --mss 1300 --mtu 1400 "$S" "$T/both.pcap"
if [ "$(rc_of both)" -ne 0 ] && [ ! -e "$T/both.pcap" ]; then
  pass "--mss with --mtu is refused"
else
  fail "--mss with --mtu: rc=$(rc_of both)"
fi

# ---- timestamps in nanoseconds stay nanoseconds; pcapng input is read ---------------
# (the nano case is in the link-type loop above: the checker compares magic + stamps)
editcap -F pcapng "$S" "$T/sample.pcapng"
run_clamp ng --mtu 1400 "$T/sample.pcapng" "$T/ng_out.pcap"
# Output is plain pcap (nanosecond magic, as pcapng stamps are read at that precision),
# with the same packets as from the pcap version and the MSS values clamped.
if [ "$(rc_of ng)" -eq 0 ] && [ "$(head -c 4 "$T/ng_out.pcap" | od -An -tx1 | tr -d ' ')" = 4d3cb2a1 ] &&
   [ "$(tcpdump -xnr "$T/ng_out.pcap" 2>/dev/null | md5sum)" = "$(tcpdump -xnr "$T/sample_out.pcap" 2>/dev/null | md5sum)" ] &&
   [ "$(tcpdump -nr "$T/ng_out.pcap" 2>/dev/null | grep -c 'mss 1360\|mss 1340\|mss 536')" -eq 6 ]; then
  pass "pcapng input: written as pcap, same clamped packets as from the pcap version"
else
  fail "pcapng input: rc=$(rc_of ng) $(cat "$T/ng.err")"
fi

# ---- on a terminal: progress on stderr for long runs, counts still exact ---------------
# 200k records pass the progress hook several times (it runs every 65536 records).
if command -v script >/dev/null; then
  "$PY" "$TUNSHIM_SRC/bench/gen_pcap.py" "$T/big.pcap" 200000 >/dev/null
  # The terminal's view: a progress line is redrawn after "\r" and erased ("\r", ESC [K)
  # before the summary, which then starts its own line there.
  script -qec "$TUNSHIM_BIN clamp --json --mss 1360 $T/big.pcap $T/big_out.pcap" /dev/null \
    | tr '\r' '\n' | sed 's/^\x1b\[K//' | grep '^{' >"$T/tty.json" || true
  if [ "$(json_get "$T/tty.json" packets 2>/dev/null)" = 200000 ] &&
     [ "$(json_get "$T/tty.json" clamped 2>/dev/null)" = 4000 ] &&
     [ "$(json_get "$T/tty.json" written 2>/dev/null)" = 200000 ]; then
    pass "on a terminal (progress enabled): 200000 packets, 4000 clamped, counts exact"
  else
    fail "on a terminal: summary $(cat "$T/tty.json")"
  fi
  rm -f "$T/big.pcap" "$T/big_out.pcap"
else
  fail "script(1) missing: cannot test the terminal path"
fi

# ---- failures: one line on stderr, exit 1, OUT neither created nor touched ------------
expect_failure() {  # name pattern input
  local name=$1 pattern=$2 input=$3
  run_clamp "$name" --mss 1360 "$input" "$T/$name.out.pcap"
  run_clamp "${name}_keep" --mss 1360 "$input" "$T/keep.pcap"
  local lines; lines=$(wc -l <"$T/$name.err")
  if [ "$(rc_of "$name")" -eq 1 ] && [ "$lines" -eq 1 ] && grep -qE "$pattern" "$T/$name.err" &&
     [ ! -e "$T/$name.out.pcap" ] && no_temp_left "$T/$name.out.pcap" && [ ! -s "$T/$name.out" ] &&
     [ "$(rc_of "${name}_keep")" -eq 1 ] && cmp -s "$T/keep.pcap" "$T/keep.orig" && no_temp_left "$T/keep.pcap"; then
    pass "$name: exit 1, '$(cat "$T/$name.err")', OUT not created, existing OUT untouched"
  else
    fail "$name: rc=$(rc_of "$name") stderr($lines lines)='$(cat "$T/$name.err")' out=$(ls "$T/$name.out.pcap" 2>&1)"
  fi
}
printf 'precious bytes\n' >"$T/keep.orig"
cp "$T/keep.orig" "$T/keep.pcap"

# Link type 147 (USER0): a valid file we cannot look into.
"$PY" - "$T/user0.pcap" <<'EOF'
import struct, sys
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 147))
    f.write(struct.pack("<IIII", 1, 0, 4, 4) + b"abcd")
EOF
expect_failure user0 "^tunshim clamp: .*user0.pcap: link type 147 \(USER0\) is not supported; supported: .*EN10MB" "$T/user0.pcap"
expect_failure missing "^tunshim clamp: .*nonexistent.pcap: No such file or directory$" "$T/nonexistent.pcap"
head -c 10 "$S" >"$T/short_header.pcap"
expect_failure short_header "^tunshim clamp: .*short_header.pcap: not a capture file" "$T/short_header.pcap"
{ printf "GARBAGE!"; head -c 4096 /dev/urandom; } >"$T/garbage.pcap"
expect_failure garbage "^tunshim clamp: .*garbage.pcap: not a capture file" "$T/garbage.pcap"
: >"$T/empty.pcap"
expect_failure empty "^tunshim clamp: .*empty.pcap: not a capture file" "$T/empty.pcap"
# A pipe: the magic number is peeked at, so the input must be seekable.
expect_failure pipe "^tunshim clamp: /dev/fd/[0-9]+: cannot seek in it \(a pipe\?\)" <(cat "$S")
# A file cut in the middle of a record: the records before it were fine, still no OUT.
head -c 3000 "$S" >"$T/cut.pcap"
expect_failure cut "^tunshim clamp: .*cut.pcap: corrupt record after [0-9]+ packets" "$T/cut.pcap"
# A record header claiming more bytes than libpcap accepts.
"$PY" - "$T/huge.pcap" <<'EOF'
import struct, sys
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    f.write(struct.pack("<IIII", 1, 0, 0x7FFFFFFF, 0x7FFFFFFF) + b"x" * 64)
EOF
expect_failure huge "^tunshim clamp: .*huge.pcap: corrupt record after 0 packets" "$T/huge.pcap"

# An unwritable output directory: the input is fine, OUT cannot be made.
run_clamp nodir --mss 1360 "$S" "$T/no/such/dir/out.pcap"
if [ "$(rc_of nodir)" -eq 1 ] && [ "$(wc -l <"$T/nodir.err")" -eq 1 ] &&
   grep -q "cannot create a temporary file" "$T/nodir.err"; then
  pass "unwritable OUT directory: exit 1, '$(cat "$T/nodir.err")'"
else
  fail "unwritable OUT directory: rc=$(rc_of nodir) $(cat "$T/nodir.err")"
fi

# Success replaces an existing OUT atomically (and leaves no temporary behind).
cp "$T/keep.orig" "$T/replace.pcap"
run_clamp replace --mtu 1400 "$S" "$T/replace.pcap"
if [ "$(rc_of replace)" -eq 0 ] && cmp -s "$T/replace.pcap" "$T/sample_out.pcap" && no_temp_left "$T/replace.pcap"; then
  pass "existing OUT replaced by the clamped capture on success, no temporary left"
else
  fail "replacing OUT: rc=$(rc_of replace)"
fi

finish
