#!/usr/bin/env bash
# `tunshim check-config` on real files: the shipped example passes and its printed effective
# config passes again; broken files fail with exit 1 and every error as file:line:column on
# stderr. Touches nothing but its own temporary directory; needs no namespaces, but root: a
# config must be root's (tunshim.conf(5), FILE PERMISSIONS; test_config_security.sh).
. "$(dirname "$0")/lib.sh"
require_root

[ -x "$TUNSHIM_BIN" ] || die "no tunshim binary at $TUNSHIM_BIN (build it, or set TUNSHIM_BIN)"
EXAMPLE="$TUNSHIM_SRC/conf/tunshim.conf"
[ -r "$EXAMPLE" ] || die "no example config at $EXAMPLE"

# check FILE: runs check-config, leaving the exit code in $rc, output in $out and $err.
check() {
  rc=0
  "$TUNSHIM_BIN" check-config -c "$1" >"$E2E_TMP/out" 2>"$E2E_TMP/err" || rc=$?
  out=$(cat "$E2E_TMP/out")
  err=$(cat "$E2E_TMP/err")
}

# expect_fail NAME FILE EXPECTED_STDERR: exit 1, nothing on stdout, exactly these lines on stderr.
expect_fail() {
  local name=$1 file=$2 expected=$3
  check "$file"
  if [ "$rc" -eq 1 ] && [ -z "$out" ] && [ "$err" = "$expected" ]; then
    pass "$name"
  else
    fail "$name: exit $rc, stdout [$out]"
    diff <(printf '%s\n' "$expected") <(printf '%s\n' "$err") | sed 's/^/    /' || true
  fi
}

# Only the settings, comments and blank lines dropped: what must survive a round trip.
settings() { sed -e 's/[[:space:]]*#.*$//' -e '/^$/d' "$1"; }

# 1. The shipped example is valid, and what it prints is the full effective config.
check "$EXAMPLE"
if [ "$rc" -eq 0 ] && [ -z "$err" ]; then pass "shipped example accepted"; else fail "shipped example: exit $rc: $err"; fi
cp "$E2E_TMP/out" "$E2E_TMP/effective.conf"
for line in 'log_level = "info"' 'queue_num = 4770' 'queue_maxlen = 8192' \
            'interface = "ppp0"' 'mss = "auto"' 'guard = "icmp"'; do
  if grep -qxF "$line" <(settings "$E2E_TMP/effective.conf"); then
    pass "effective config has: $line"
  else
    fail "effective config lacks: $line"
  fi
done
# mss6 is not set in the example: it must be printed, following mss, and marked a default.
if grep -qE '^mss6 = "auto" +# default: "auto", like mss; until the first search: 1220' "$E2E_TMP/effective.conf"; then
  pass "defaulted mss6 printed and marked"
else
  fail "defaulted mss6 not shown as 'mss6 = \"auto\"  # default: \"auto\", like mss; …': $(grep mss6 "$E2E_TMP/effective.conf")"
fi
# With a number, mss6 is derived from it: mss - 20.
printf '[[tunnel]]\ninterface = "ppp0"\nmss = 1360\n' >"$E2E_TMP/num.conf"
check "$E2E_TMP/num.conf"
if grep -qE '^mss6 = 1340 +# default: mss - 20' <<<"$out"; then
  pass "defaulted mss6 with a numeric mss printed as mss - 20"
else
  fail "mss6 for mss = 1360: $(grep mss6 <<<"$out")"
fi

# 2. The printed config is itself a valid config with the same settings.
check "$E2E_TMP/effective.conf"
printf '%s\n' "$out" >"$E2E_TMP/again.conf"
if [ "$rc" -eq 0 ] && [ -n "$(settings "$E2E_TMP/again.conf")" ] &&
   [ "$(settings "$E2E_TMP/effective.conf")" = "$(settings "$E2E_TMP/again.conf")" ]; then
  pass "effective config round-trips"
else
  fail "effective config does not round-trip (exit $rc): $err"
fi

# 3. A missing file.
expect_fail "missing file" "$E2E_TMP/nope.conf" \
  "$E2E_TMP/nope.conf: cannot read: No such file or directory"

# A directory, and a file far too big to be a config (refused before parsing).
expect_fail "directory" "$E2E_TMP" "$E2E_TMP: cannot read: Is a directory"
head -c 2000000 /dev/zero | tr '\0' '#' >"$E2E_TMP/big.conf"
expect_fail "oversized file" "$E2E_TMP/big.conf" \
  "$E2E_TMP/big.conf: cannot read: larger than 1 MiB, which no tunshim config is"

# 4. Several errors in one file: all reported, in file order, with positions.
cat >"$E2E_TMP/many.conf" <<'EOF'
[global]
queue_num = 70000
log_level = "verbose"
stats_listen = "127.0.0.1:9477"

[[tunnel]]
interface = "ppp0"
mss = "auto"
keepalive = "idle"
msss6 = 1300

[[tunnel]]
interface = "ppp0"
mss = 1360.5
EOF
many_expected="$E2E_TMP/many.conf:2:13: queue_num must be between 0 and 65535, not 70000
$E2E_TMP/many.conf:3:13: log_level must be one of trace, debug, info, warn, error, off; not \"verbose\"
$E2E_TMP/many.conf:10:1: unknown key 'msss6' in [tunnel]; did you mean 'mss6'?
$E2E_TMP/many.conf:13:13: interface \"ppp0\" is already configured by the [[tunnel]] at line 6
$E2E_TMP/many.conf:14:7: mss must be an integer, \"off\" or \"auto\", not a floating-point number"
expect_fail "every error reported, in file order" "$E2E_TMP/many.conf" "$many_expected"

# 5. A TOML syntax error: toml++'s message at its position.
printf '[[tunnel]]\ninterface = "ppp0"\nmss = \n' >"$E2E_TMP/syntax.conf"
expect_fail "syntax error with position" "$E2E_TMP/syntax.conf" \
  "$E2E_TMP/syntax.conf:3:7: Error while parsing key-value pair: expected value, saw '\\n'"

# 6. Nothing to do.
printf '[global]\nlog_level = "debug"\n' >"$E2E_TMP/empty.conf"
expect_fail "no tunnel" "$E2E_TMP/empty.conf" \
  "$E2E_TMP/empty.conf: no [[tunnel]] configured: tunshim would have nothing to do"

# 7. The example with one value broken still names the example's line.
sed 's/^mss = "auto"$/mss = 400/' "$EXAMPLE" >"$E2E_TMP/low.conf"
line=$(grep -n '^mss = 400$' "$E2E_TMP/low.conf" | cut -d: -f1)
[ -n "$line" ] || die "example config has no 'mss = \"auto\"' line to break"
expect_fail "out-of-range value in the example" "$E2E_TMP/low.conf" \
  "$E2E_TMP/low.conf:$line:7: mss must be between 536 and 65495 (or \"off\" or \"auto\"), not 400"

# A hook program this machine does not have (poff, nmcli …) is refused as missing
# (test_config_security.sh); for the examples, such an error is the only one allowed, and
# it comes only after every other check passed (hooks are looked at in a valid config only).
# only_missing_hooks FILE: true if $err holds nothing but such errors for FILE.
only_missing_hooks() {
  local l p
  while IFS= read -r l; do
    [ -z "$l" ] && continue
    p=$(printf '%s\n' "$l" | sed -n "s|^$1:[0-9]*:[0-9]*: the program in on_[a-z]*, \"\(/[^\"]*\)\", does not exist\$|\1|p")
    [ -n "$p" ] && [ ! -e "$p" ] || return 1
  done <<<"$err"
}

# 8. Every setting the example shows commented out, uncommented alone where it stands, is
# accepted and printed with that value.
commented=$(grep -nE '^# [a-z_0-9]+ = ' "$EXAMPLE" | cut -d: -f1)
[ -n "$commented" ] || die "the example shows no commented-out settings"
for n in $commented; do
  key=$(sed -n "${n}s/^# \([a-z_0-9]*\) = .*/\1/p" "$EXAMPLE")
  sed "${n}s/^# //" "$EXAMPLE" >"$E2E_TMP/one.conf"
  setting=$(sed -n "${n}p" "$E2E_TMP/one.conf" | sed 's/[[:space:]]*#.*$//')
  check "$E2E_TMP/one.conf"
  if [ "$rc" -eq 0 ] && grep -qxF "$setting" <(settings "$E2E_TMP/out"); then
    pass "key accepted and printed: $setting"
  elif [ "$rc" -eq 1 ] && only_missing_hooks "$E2E_TMP/one.conf"; then
    pass "key accepted: $setting (its program is not installed here: $err)"
  else
    fail "key $key (line $n): exit $rc, $err; printed: $(grep "^$key" "$E2E_TMP/out")"
  fi
done

# 9. A stats server on a non-loopback address is accepted with a warning (a comment in the
# printed config, so it still parses).
printf '[global]\nstats_listen = "0.0.0.0:9477"\n[[tunnel]]\ninterface = "ppp0"\nmss = 1360\n' \
  >"$E2E_TMP/open.conf"
check "$E2E_TMP/open.conf"
w="# warning: $E2E_TMP/open.conf:2:16: stats_listen \"0.0.0.0:9477\" is not a loopback address: anyone who can reach it reads the stats (the server has no authentication)"
if [ "$rc" -eq 0 ] && grep -qxF "$w" "$E2E_TMP/out"; then
  pass "non-loopback stats_listen accepted with a warning"
else
  fail "non-loopback stats_listen: exit $rc, $err; warning lines: $(grep '^# warning' "$E2E_TMP/out")"
fi

# The client examples in conf/examples/ and the README's ppp config are accepted as written
# (copied, so that who owns the checkout does not matter).
for f in "$TUNSHIM_SRC"/conf/examples/*.conf; do
  install -m 0644 "$f" "$E2E_TMP/example.conf"
  check "$E2E_TMP/example.conf"
  if [ "$rc" -eq 0 ]; then pass "example $(basename "$f") is valid"
  elif [ "$rc" -eq 1 ] && only_missing_hooks "$E2E_TMP/example.conf"; then
    pass "example $(basename "$f") is valid but for programs not installed here: $(echo $err)"
  else fail "example $(basename "$f") refused: $(head -3 <<<"$err")"; fi
done
# Every ```toml block of the README on its own (readme-1.conf, readme-2.conf, …).
awk -v dir="$E2E_TMP" '/^```toml$/ {n++; f = dir "/readme-" n ".conf"; on = 1; next}
  /^```$/ {on = 0} on {print > f}' "$TUNSHIM_SRC/README.md"
blocks=$(ls "$E2E_TMP"/readme-*.conf 2>/dev/null | wc -l)
[ "$blocks" -gt 0 ] || fail "README has no toml example"
for f in "$E2E_TMP"/readme-*.conf; do
  [ -e "$f" ] || continue
  chmod 0644 "$f"
  check "$f"
  if [ -s "$f" ] && { [ "$rc" -eq 0 ] || { [ "$rc" -eq 1 ] && only_missing_hooks "$f"; }; }; then
    pass "README's example config $(basename "$f") of $blocks is valid${err:+ but for programs not installed here: $(echo $err)}"
  else fail "README's example config $(basename "$f") refused: $(head -3 <<<"$err")"; fi
done

finish
