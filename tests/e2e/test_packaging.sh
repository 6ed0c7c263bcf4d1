#!/usr/bin/env bash
# The service and its packaging, as an operator receives them:
#   1. conf/tunshim.service passes `systemd-analyze verify` and says what the issue asks
#      (Type=notify, Restart=on-failure, SIGHUP reload, bounded capabilities, read-only
#      system, private tmp, no NoNewPrivileges, no watchdog the binary does not feed);
#   2. both man pages render without a groff warning, and document every subcommand and
#      option of `tunshim --help` and every config key (implemented ones with their
#      defaults, planned ones under PLANNED KEYS);
#   3. `cmake --install --prefix /usr` into a DESTDIR lays out the files, never overwrites
#      an existing config, points the unit and the ppp helpers at the prefix used;
#   4. cpack builds a .deb whose contents, conffiles, maintainer scripts and computed
#      Depends are right, whose binary runs `tunshim demo` to the end; apt can resolve it; installed into a scratch dpkg root (dpkg
#      --root, maintainer scripts honouring DPKG_ROOT) it ships a machine-readable
#      copyright file and monitoring files that work where they land, enables the unit without
#      starting it, keeps a changed config across a reinstall, masks on remove, purges;
#   5. the daemon started with the unit's own ExecStart line, inside the unit's sandbox
#      as far as it can be rebuilt without systemd (capability bounding set from the unit,
#      /usr /etc /boot read-only, private /tmp) in a namespace: READY=1 only once its rules
#      are in place, the unit's ExecReload (check-config, then SIGHUP) applies a change,
#      SIGTERM removes the rules; WATCHDOG=1 is checked against the unit's WatchdogSec;
#   6. in the same sandbox, `datapath = "auto"` picks the eBPF path (the unit's capabilities
#      suffice to load the programs), a restart after kill -9 takes over the dead run's
#      programs (no CAP_SYS_ADMIN to open them by id), SIGTERM removes them.
# Nothing is installed into the real system; the only netfilter rules are in the namespace.
. "$(dirname "$0")/lib.sh"

require_root
require_cmd systemd-analyze groff man dpkg dpkg-deb cpack cmake apt-get gzip setpriv unshare \
  iptables-nft-save ip6tables-nft-save ip iptables socat
[ -x "$TUNSHIM_BIN" ] || die "TUNSHIM_BIN=$TUNSHIM_BIN is not an executable"
BUILD=${TUNSHIM_BUILD:-$(cd "$(dirname "$TUNSHIM_BIN")/.." && pwd)}
[ -f "$BUILD/CPackConfig.cmake" ] || die "$BUILD/CPackConfig.cmake missing: is cmake/packaging.cmake included?"
SRC=$TUNSHIM_SRC
UNIT=$SRC/conf/tunshim.service
MAN8=$SRC/docs/man/tunshim.8
MAN5=$SRC/docs/man/tunshim.conf.5

# unit_values KEY: every value of KEY= in the unit, one per line (comments ignored).
unit_values() { sed -n "s/^[[:space:]]*$1=//p" "$UNIT"; }
# render FILE: the man page as plain text, wide enough that nothing wraps mid-tag.
render() { MANWIDTH=200 MAN_KEEP_FORMATTING= man -l "$1" 2>/dev/null | col -bx; }

# ---- 1. the unit --------------------------------------------------------------------------
log "unit: $UNIT"
mkdir -p "$E2E_TMP/unit"
sed "s|/usr/sbin/tunshim|$TUNSHIM_BIN|g" "$UNIT" >"$E2E_TMP/unit/tunshim.service"
# --man=no here: the pages are checked by name once installed (section 3).
if out=$(systemd-analyze verify --man=no "$E2E_TMP/unit/tunshim.service" 2>&1) && [ -z "$out" ]; then
  pass "systemd-analyze verify: no finding"
else
  fail "systemd-analyze verify: $out"
fi

[ "$(unit_values Type)" = notify ] && pass "Type=notify" || fail "Type is '$(unit_values Type)', not notify"
[ "$(unit_values Restart)" = on-failure ] && pass "Restart=on-failure" || fail "Restart is '$(unit_values Restart)'"
exec_start=$(unit_values ExecStart)
[ "$exec_start" = "/usr/sbin/tunshim run -c /etc/tunshim/tunshim.conf" ] \
  && pass "ExecStart runs /usr/sbin/tunshim run on /etc/tunshim/tunshim.conf" || fail "ExecStart is '$exec_start'"
unit_values ExecReload | grep -qx '/bin/kill -HUP \$MAINPID' \
  && pass "ExecReload sends SIGHUP to \$MAINPID" || fail "no ExecReload=/bin/kill -HUP \$MAINPID"
caps=$(unit_values CapabilityBoundingSet | tr ' ' '\n' | sed '/^$/d' | sort | tr '\n' ' ')
[ "$caps" = "CAP_BPF CAP_NET_ADMIN CAP_NET_RAW CAP_PERFMON " ] \
  && pass "CapabilityBoundingSet is exactly CAP_NET_ADMIN CAP_NET_RAW CAP_BPF CAP_PERFMON" || fail "CapabilityBoundingSet: '$caps'"
case "$(unit_values ProtectSystem)" in
  full|strict) pass "ProtectSystem=$(unit_values ProtectSystem): /usr /etc read-only" ;;
  *) fail "ProtectSystem='$(unit_values ProtectSystem)' leaves /etc writable" ;;
esac
[ "$(unit_values PrivateTmp)" = yes ] && pass "PrivateTmp=yes" || fail "PrivateTmp='$(unit_values PrivateTmp)'"
case "$(unit_values NoNewPrivileges)" in
  ""|no|false) pass "NoNewPrivileges off (hooks may use setuid helpers and profile transitions)" ;;
  *) fail "NoNewPrivileges=$(unit_values NoNewPrivileges) would change how hooks run" ;;
esac
[ "$(unit_values WantedBy)" = multi-user.target ] && pass "WantedBy=multi-user.target" || fail "WantedBy='$(unit_values WantedBy)'"
# The offline security score is information for the report, not a pass/fail criterion.
log "$(systemd-analyze security --offline=true "$E2E_TMP/unit/tunshim.service" 2>&1 | tail -1)"
watchdog=$(unit_values WatchdogSec)

# ---- 2. man pages -------------------------------------------------------------------------
for page in "$MAN8" "$MAN5"; do
  warnings=$(groff -man -Tutf8 -ww -z "$page" 2>&1)
  if [ -z "$warnings" ]; then pass "groff -ww: $(basename "$page") renders without warnings"
  else fail "groff -ww $(basename "$page"): $warnings"; fi
  text=$(render "$page")
  grep -q '^NAME' <<<"$text" && [ "$(echo "$text" | wc -l)" -gt 40 ] \
    && pass "man -l $(basename "$page"): $(echo "$text" | wc -l) lines" || fail "man -l $(basename "$page") rendered nothing useful"
done
text8=$(render "$MAN8")
text5=$(render "$MAN5")

# Subcommands from `tunshim --help`: each must head its own entry (a tag line) in COMMANDS.
commands=$(echo "$text8" | sed -n '/^COMMANDS/,/^[A-Z]/p')
subs=$("$TUNSHIM_BIN" --help | sed -n '/^Subcommands:/,/^$/p' | awk 'NR > 1 && NF {print $1}')
[ -n "$subs" ] || die "no subcommands in tunshim --help"
for s in $subs; do
  if grep -Eq "^ {7}$s( |$)" <<<"$commands"; then pass "tunshim(8) COMMANDS has an entry for '$s'"
  else fail "tunshim(8) COMMANDS has no entry for subcommand '$s' (tunshim --help lists it)"; fi
  # Every option of the subcommand (but --help) is named in the page.
  for o in $("$TUNSHIM_BIN" "$s" --help | grep -oE '(^|[ ,])--?[a-z][a-z0-9-]*' | tr -d ' ,' | sort -u); do
    case "$o" in -h|--help) continue ;; esac
    grep -q -- "$o" <<<"$text8" && pass "tunshim(8) documents '$s $o'" \
      || fail "tunshim(8) does not mention option '$o' of '$s'"
  done
done

# Config keys. Implemented keys: what check-config prints for a minimal file (so a key
# added to the parser appears here by itself). All keys: those, plus every key the shipped
# example sets or shows commented, plus its "planned" list.
printf '[[tunnel]]\ninterface = "ppp0"\nmss = 1360\n' >"$E2E_TMP/min.conf"
effective=$("$TUNSHIM_BIN" check-config -c "$E2E_TMP/min.conf") || die "check-config refused a minimal config"
implemented=$(echo "$effective" | sed -n 's/^\([a-z_0-9]*\) = .*/\1/p' | sort -u)
example=$(sed -n 's/^#\{0,1\}[[:space:]]*\([a-z_0-9][a-z_0-9]*\)[[:space:]]*=.*/\1/p' "$SRC/conf/tunshim.conf" | sort -u)
# "#   [global]   a, b" and "#   [[tunnel]] c, d," with continuation lines of the same list.
planned=$(sed -n '/^# Planned/,/^[^#]/p' "$SRC/conf/tunshim.conf" \
  | sed -En 's/^#[[:space:]]+(\[global\]|\[\[tunnel\]\])[[:space:]]+([a-z_0-9, ]+)$/\2/p; s/^#[[:space:]]{10,}([a-z_0-9, ]+)$/\1/p' \
  | tr ', ' '\n\n' | sed '/^$/d' | sort -u)
# No planned key is left once every key is implemented: an empty list is fine, an empty
# implemented list means the parsing broke.
[ -n "$implemented" ] || die "could not read the implemented keys from check-config: '$effective'"
log "implemented keys: $(echo $implemented)"
log "planned keys: $(echo ${planned:-none})"
# A key's entry: its tag line (7 spaces in) and the indented paragraph under it.
entry() { echo "$2" | awk -v k="$1" '
  /^       [^ ]/ { on = 0; n = split($0, w, /[ ,]+/); for (i = 1; i <= n; i++) if (w[i] == k) on = 1 }
  /^[A-Z]/ { on = 0 }
  on { print }'; }
section() { echo "$text5" | sed -n "/^$1/,/^[A-Z]/p"; }
for k in $(printf '%s\n' $implemented $example $planned | sort -u); do
  if grep -qx "$k" <<<"$planned"; then
    if [ -n "$(entry "$k" "$(section 'PLANNED KEYS')")" ]; then pass "tunshim.conf(5): '$k' under PLANNED KEYS"
    else fail "tunshim.conf(5): planned key '$k' has no entry under PLANNED KEYS"; fi
    if grep -qx "$k" <<<"$implemented"; then fail "'$k' is both implemented (check-config prints it) and listed as planned in conf/tunshim.conf"; fi
    continue
  fi
  e=$(entry "$k" "$(section 'GLOBAL KEYS')$(printf '\n')$(section 'TUNNEL KEYS')")
  if [ -z "$e" ]; then fail "tunshim.conf(5): key '$k' has no entry under GLOBAL KEYS or TUNNEL KEYS"; continue; fi
  grep -Eq 'Default|Required' <<<"$e" && pass "tunshim.conf(5): '$k' documented with its default" \
    || fail "tunshim.conf(5): the entry for '$k' states no default (or that it is required)"
done
# Each value check-config marks "# default" must be the one the page gives.
while read -r k v; do
  v=${v//\"/}
  # The entry as one line (a long one wraps anywhere, also after "Default:"), quotes dropped.
  e=$(entry "$k" "$text5" | tr -d '"' | tr -s ' \n' '  ')
  d=$(grep -o 'Default: [^.]*' <<<"$e" | head -1)
  # The value is literal text ("[]" for an empty hook list), not a pattern. A default that
  # depends on another key ("icmp when mss is auto, off otherwise") must name the value
  # check-config prints for a plain numeric mss as its "otherwise" case.
  if grep -qF -- "Default: $v" <<<"$e" || grep -qF -- "$v otherwise" <<<"$d"; then
    pass "tunshim.conf(5): default of '$k' is $v, as check-config says ($d)"
  else
    fail "tunshim.conf(5): check-config's default for '$k' is $v; the page says: $d"
  fi
done < <(echo "$effective" | sed -n 's/^\([a-z_0-9]*\) = \(.*[^ ]\) *# default$/\1 \2/p')

# ---- 3. cmake --install -------------------------------------------------------------------
# tunshim itself is built already (TUNSHIM_BIN); the gzipped pages are an ALL target of
# their own, built here in case only tunshim was.
cmake --build "$BUILD" --target tunshim_man >"$E2E_TMP/build.log" 2>&1 || die "cannot build the man pages in $BUILD: $(tail -5 "$E2E_TMP/build.log")"
D=$E2E_TMP/destdir
DESTDIR=$D cmake --install "$BUILD" --prefix /usr >"$E2E_TMP/install1.log" 2>&1 || die "cmake --install failed: $(cat "$E2E_TMP/install1.log")"
for f in usr/sbin/tunshim etc/tunshim/tunshim.conf lib/systemd/system/tunshim.service \
         usr/share/man/man8/tunshim.8.gz usr/share/man/man5/tunshim.conf.5.gz usr/share/doc/tunshim/README.md \
         etc/ppp/ip-up.d/tunshim etc/ppp/ip-down.d/tunshim; do
  [ -f "$D/$f" ] && pass "install: /$f" || fail "install: /$f missing"
done
# The ppp helpers: executable (run-parts skips the rest), valid sh, calling the installed binary.
for h in ip-up.d ip-down.d; do
  f=$D/etc/ppp/$h/tunshim
  [ "$(stat -c %a "$f" 2>/dev/null)" = 755 ] && sh -n "$f" && pass "install: /etc/ppp/$h/tunshim mode 755, valid sh" \
    || fail "install: /etc/ppp/$h/tunshim mode $(stat -c %a "$f" 2>/dev/null) or not valid sh"
done
grep -q 'TUNSHIM_BIN:-/usr/sbin/tunshim}' "$D/etc/ppp/ip-up.d/tunshim" && pass "install: ip-up helper calls /usr/sbin/tunshim" \
  || fail "install: ip-up helper's binary: $(grep -o 'TUNSHIM_BIN:-[^}]*' "$D/etc/ppp/ip-up.d/tunshim")"
[ -x "$D/usr/sbin/tunshim" ] && [ "$("$D/usr/sbin/tunshim" --version)" = "$("$TUNSHIM_BIN" --version)" ] \
  && pass "installed binary runs: $("$D/usr/sbin/tunshim" --version)" || fail "installed /usr/sbin/tunshim does not run"
cmp -s "$D/etc/tunshim/tunshim.conf" "$SRC/conf/tunshim.conf" && pass "install: config is conf/tunshim.conf" || fail "install: config differs from conf/tunshim.conf"
cmp -s <(gzip -dc "$D/usr/share/man/man8/tunshim.8.gz") "$MAN8" && cmp -s <(gzip -dc "$D/usr/share/man/man5/tunshim.conf.5.gz") "$MAN5" \
  && pass "install: man pages are the sources, gzipped" || fail "install: man pages differ from docs/man"
stat -c '%a %n' "$D/etc/tunshim/tunshim.conf" "$D/lib/systemd/system/tunshim.service" | grep -qv '^644 ' \
  && fail "install: config/unit not mode 644: $(stat -c '%a %n' "$D/etc/tunshim/tunshim.conf" "$D/lib/systemd/system/tunshim.service")" \
  || pass "install: config and unit mode 644"
# The installed unit, its binary and its Documentation= pages, checked together by name.
mkdir -p "$E2E_TMP/unit/installed"
sed "s|/usr/sbin/tunshim|$D/usr/sbin/tunshim|g" "$D/lib/systemd/system/tunshim.service" >"$E2E_TMP/unit/installed/tunshim.service"
if out=$(MANPATH=$D/usr/share/man systemd-analyze verify "$E2E_TMP/unit/installed/tunshim.service" 2>&1) && [ -z "$out" ]; then
  pass "systemd-analyze verify of the installed unit, man pages found by name: no finding"
else
  fail "systemd-analyze verify (installed): $out"
fi
# A second install must keep an operator's config.
echo "# operator was here" >>"$D/etc/tunshim/tunshim.conf"
DESTDIR=$D cmake --install "$BUILD" --prefix /usr >"$E2E_TMP/install2.log" 2>&1 || die "second cmake --install failed"
tail -1 "$D/etc/tunshim/tunshim.conf" | grep -q 'operator was here' && grep -q 'Keeping: .*tunshim.conf' "$E2E_TMP/install2.log" \
  && pass "install again: existing config kept (\"$(grep -o 'Keeping: [^(]*' "$E2E_TMP/install2.log")\")" \
  || fail "install again: the operator's config was overwritten"
D2=$E2E_TMP/destdir-local
DESTDIR=$D2 cmake --install "$BUILD" --prefix /usr/local >/dev/null 2>&1 || die "cmake --install --prefix /usr/local failed"
grep -qx 'ExecStart=/usr/local/sbin/tunshim run -c /etc/tunshim/tunshim.conf' "$D2/lib/systemd/system/tunshim.service" \
  && [ -x "$D2/usr/local/sbin/tunshim" ] && pass "install --prefix /usr/local: unit runs /usr/local/sbin/tunshim" \
  || fail "install --prefix /usr/local: unit's ExecStart is '$(sed -n 's/^ExecStart=//p' "$D2/lib/systemd/system/tunshim.service")'"
grep -q 'TUNSHIM_BIN:-/usr/local/sbin/tunshim}' "$D2/etc/ppp/ip-up.d/tunshim" \
  && pass "install --prefix /usr/local: ip-up helper calls /usr/local/sbin/tunshim" \
  || fail "install --prefix /usr/local: ip-up helper's binary: $(grep -o 'TUNSHIM_BIN:-[^}]*' "$D2/etc/ppp/ip-up.d/tunshim")"

# ---- 4. the .deb --------------------------------------------------------------------------
P=$E2E_TMP/cpack
cpack -G DEB --config "$BUILD/CPackConfig.cmake" -B "$P" >"$E2E_TMP/cpack.log" 2>&1 || die "cpack failed: $(tail -20 "$E2E_TMP/cpack.log")"
debs=("$P"/tunshim_*.deb)
[ ${#debs[@]} -eq 1 ] && [ -f "${debs[0]}" ] || die "cpack made no single tunshim_*.deb: ${debs[*]}"
DEB=${debs[0]}
pass "cpack: $(basename "$DEB"), $(stat -c %s "$DEB") bytes"
version=$("$TUNSHIM_BIN" --version | awk '{print $2}')
[ "$(dpkg-deb -f "$DEB" Package)" = tunshim ] && [ "$(dpkg-deb -f "$DEB" Version)" = "$version" ] \
  && pass "control: Package tunshim, Version $version (= tunshim --version)" \
  || fail "control: Package '$(dpkg-deb -f "$DEB" Package)' Version '$(dpkg-deb -f "$DEB" Version)', binary says $version"
depends=$(dpkg-deb -f "$DEB" Depends)
log "Depends: $depends"
for d in iptables libc6 libuv1 libnetfilter-queue1 libmnl0 libpcap0.8 libsystemd0; do
  echo ", $depends," | grep -Eq ", $d( \([^)]*\))?," && pass "Depends has $d" || fail "Depends lacks $d"
done
contents=$(dpkg-deb -c "$DEB" | awk '{print $1, $6}')
for f in ./usr/sbin/tunshim ./etc/tunshim/tunshim.conf ./lib/systemd/system/tunshim.service \
         ./usr/share/man/man8/tunshim.8.gz ./usr/share/man/man5/tunshim.conf.5.gz \
         ./etc/ppp/ip-up.d/tunshim ./etc/ppp/ip-down.d/tunshim ./usr/share/doc/tunshim/copyright \
         ./usr/share/tunshim/prometheus/tunshim.rules.yml ./usr/share/tunshim/prometheus/tunshim.rules.test.yml \
         ./usr/share/tunshim/grafana/tunshim.json; do
  grep -q " $f$" <<<"$contents" && pass "deb contains $f" || fail "deb lacks $f"
done
for f in ./etc/ppp/ip-up.d/tunshim ./etc/ppp/ip-down.d/tunshim; do
  grep -q "^-rwxr-xr-x $f$" <<<"$contents" && pass "deb: $f mode 755" || fail "deb: $f mode: $(echo "$contents" | grep " $f$")"
done
recommends=$(dpkg-deb -f "$DEB" Recommends)
for d in iproute2 socat; do
  echo ", $recommends," | grep -Eq ", $d( \([^)]*\))?," && pass "Recommends has $d (tunshim demo)" || fail "Recommends lacks $d: '$recommends'"
done
grep -q '^-rwxr-xr-x ./usr/sbin/tunshim$' <<<"$contents" && pass "deb: /usr/sbin/tunshim mode 755" || fail "deb: /usr/sbin/tunshim mode: $(echo "$contents" | grep sbin/tunshim)"
! grep -q ' ./usr/local/' <<<"$contents" && pass "deb: nothing under /usr/local" || fail "deb: files under /usr/local"
mkdir -p "$E2E_TMP/ctrl"
dpkg-deb -e "$DEB" "$E2E_TMP/ctrl"
[ "$(sort "$E2E_TMP/ctrl/conffiles" | tr '\n' ' ')" = "/etc/ppp/ip-down.d/tunshim /etc/ppp/ip-up.d/tunshim /etc/tunshim/tunshim.conf " ] \
  && pass "conffiles: the config and both ppp helpers" \
  || fail "conffiles: '$(cat "$E2E_TMP/ctrl/conffiles" 2>/dev/null)'"
for s in postinst prerm postrm; do
  [ -x "$E2E_TMP/ctrl/$s" ] && sh -n "$E2E_TMP/ctrl/$s" && pass "deb: $s present, executable, valid sh" || fail "deb: $s missing or broken"
done
dpkg-deb --fsys-tarfile "$DEB" | tar -xO ./usr/sbin/tunshim >"$E2E_TMP/tunshim.deb-bin"
chmod +x "$E2E_TMP/tunshim.deb-bin"
[ "$("$E2E_TMP/tunshim.deb-bin" --version)" = "$("$TUNSHIM_BIN" --version)" ] && pass "deb's binary runs" || fail "deb's binary does not run"
# `tunshim demo` carries its lab script inside the binary: the packaged (stripped) program
# runs it to the end with no source or build tree involved.
if out=$("$E2E_TMP/tunshim.deb-bin" demo 2>&1 </dev/null) && grep -q '^RESULT: the download stalled without tunshim;' <<<"$out" \
   && grep -q '^Lab removed' <<<"$out"; then
  pass "deb's binary runs 'tunshim demo' to the end: $(grep -m1 -o 'DONE: [0-9]* of [0-9]* bytes' <<<"$out")"
else
  fail "deb's binary: tunshim demo: $(tail -4 <<<"$out" | tr '\n' ' ')"
fi
# apt resolves its dependencies against this system (simulation: nothing is installed).
if out=$(apt-get install -s -q "$DEB" 2>&1) && grep -q '^Inst tunshim ' <<<"$out"; then
  pass "apt-get install -s ./$(basename "$DEB"): $(echo "$out" | grep '^Inst tunshim ')"
else
  fail "apt-get install -s: $(echo "$out" | tail -3)"
fi

# Install into a scratch dpkg root. --force-script-chrootless runs the maintainer scripts
# here with DPKG_ROOT set; deb-systemd-helper then writes only below it. --force-depends:
# the scratch root has no libraries (their resolution was checked by apt above).
R=$E2E_TMP/root
mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates" "$R/var/lib/dpkg/triggers"
touch "$R/var/lib/dpkg/status" "$R/var/lib/dpkg/available"
fails_before_dpkg=$E2E_FAILS
rdpkg() { dpkg --root="$R" --force-script-chrootless --force-depends --force-confold "$@" >>"$E2E_TMP/dpkg.log" 2>&1; }
wants=$R/etc/systemd/system/multi-user.target.wants/tunshim.service
rdpkg -i "$DEB" && pass "dpkg -i into a scratch root" || fail "dpkg -i into a scratch root: $(tail -5 "$E2E_TMP/dpkg.log")"
# The copyright file in Debian's machine-readable format (DEP-5): the Format line, every
# Files paragraph with Copyright and License, every license it names spelled out in a
# stand-alone License paragraph, the project's license the one in LICENSE.
cr=$R/usr/share/doc/tunshim/copyright
if out=$("$PY" - "$cr" <<'PYEOF' 2>&1
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
paras = [p for p in re.split(r"\n\s*\n(?=\S)", text.strip()) if p.strip()]
def fields(p):
    d, key = {}, None
    for line in p.splitlines():
        if line[:1] in (" ", "\t"):
            assert key, "continuation line before any field"
            d[key] += "\n" + line
        else:
            key, _, v = line.partition(":")
            assert _ == ":", f"not a field: {line!r}"
            d[key] = v.strip()
    return d
ps = [fields(p) for p in paras]
assert ps[0].get("Format") == "https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/", "Format line"
files = [p for p in ps[1:] if "Files" in p]
assert files and any(p["Files"].split() == ["*"] for p in files), "no Files: * paragraph"
named = set()
for p in files:
    assert p.get("Copyright") and p.get("License"), f"Files: {p['Files']} lacks Copyright or License"
    lic = p["License"].split("\n")[0].strip()
    if "\n" not in p["License"]:
        named.add(lic)
standalone = {p["License"].split("\n")[0].strip() for p in ps[1:] if "Files" not in p and "License" in p and "\n" in p["License"]}
missing = named - standalone
assert not missing, f"licenses without text: {missing}"
print(", ".join(f"{p['Files']}: {p['License'].splitlines()[0]}" for p in files))
PYEOF
); then
  pass "copyright: machine-readable (DEP-5): $out"
else
  fail "copyright is not machine-readable: $out"
fi
grep -q '^License: GPL-2+$' "$cr" && grep -q 'GNU GENERAL PUBLIC LICENSE' "$SRC/LICENSE" && grep -q '^ *Version 2, June 1991' "$SRC/LICENSE" \
  && grep -q '/usr/share/common-licenses/GPL-2' "$cr" \
  && pass "copyright: GPL-2+, the license LICENSE holds (GPL version 2), pointing at common-licenses" \
  || fail "copyright and LICENSE disagree"
# The monitoring files work where the package puts them: the rules' tests find the rules
# next to them, the dashboard is JSON.
if command -v promtool >/dev/null; then
  if out=$(cd "$R/usr/share/tunshim/prometheus" && promtool test rules tunshim.rules.test.yml 2>&1); then
    pass "installed rules pass their promtool tests in /usr/share/tunshim/prometheus"
  else
    fail "installed rules: $out"
  fi
fi
"$PY" -m json.tool "$R/usr/share/tunshim/grafana/tunshim.json" >/dev/null \
  && pass "installed dashboard /usr/share/tunshim/grafana/tunshim.json is JSON" || fail "installed dashboard is not JSON"
[ "$(readlink "$wants")" = /lib/systemd/system/tunshim.service ] && pass "postinst enabled the unit (multi-user.target.wants)" \
  || fail "postinst did not enable the unit: $(ls -l "$wants" 2>&1)"
grep -q 'enabled but not started' "$E2E_TMP/dpkg.log" && pass "postinst tells the operator to write the config, then start" \
  || fail "postinst printed no next steps"
for c in /etc/tunshim/tunshim.conf /etc/ppp/ip-up.d/tunshim /etc/ppp/ip-down.d/tunshim; do
  sed -n '/^Conffiles:/,/^[^ ]/p' "$R/var/lib/dpkg/status" | grep -q "^ $c " && pass "dpkg registered the conffile $c" \
    || fail "dpkg did not register $c as a conffile"
done
echo "# operator was here" >>"$R/etc/tunshim/tunshim.conf"
rdpkg -i "$DEB" && tail -1 "$R/etc/tunshim/tunshim.conf" | grep -q 'operator was here' \
  && pass "reinstall keeps the operator's config" || fail "reinstall replaced the operator's config"
rdpkg -r tunshim || fail "dpkg -r: $(tail -5 "$E2E_TMP/dpkg.log")"
[ ! -e "$R/usr/sbin/tunshim" ] && [ -f "$R/etc/tunshim/tunshim.conf" ] && pass "remove: program gone, config kept" \
  || fail "remove: binary still there or config gone"
[ "$(readlink "$R/etc/systemd/system/tunshim.service")" = /dev/null ] && pass "remove: unit masked (cannot be started)" \
  || fail "remove: unit not masked: $(ls -l "$R/etc/systemd/system/tunshim.service" 2>&1)"
rdpkg -i "$DEB" || fail "dpkg -i after remove: $(tail -5 "$E2E_TMP/dpkg.log")"
[ ! -e "$R/etc/systemd/system/tunshim.service" ] && [ -L "$wants" ] && pass "install after remove: unmasked and enabled again" \
  || fail "install after remove: mask or enablement wrong"
# An operator's "disable" survives a reinstall (was-enabled is false).
DPKG_ROOT=$R deb-systemd-helper disable tunshim.service >/dev/null 2>&1 || true
rdpkg -i "$DEB" || fail "dpkg -i after disable: $(tail -5 "$E2E_TMP/dpkg.log")"
[ ! -e "$wants" ] && pass "reinstall keeps an operator's disable" || fail "reinstall re-enabled a disabled unit"
rdpkg -P tunshim || fail "dpkg -P: $(tail -5 "$E2E_TMP/dpkg.log")"
left=$(cd "$R" && find etc lib usr var/lib/systemd -mindepth 1 ! -type d 2>/dev/null || true)
[ -z "$left" ] && pass "purge: no file left (config, unit, links, helper state)" || fail "purge left: $(echo $left)"
if [ $E2E_FAILS -gt "$fails_before_dpkg" ]; then log "dpkg log:"; sed 's/^/  /' "$E2E_TMP/dpkg.log"; fi

# ---- 5. the daemon in the unit's sandbox ----------------------------------------------------
# The notify socket is abstract, so it is reachable from the daemon's private /tmp and
# lives in the namespace; the config is in /run (the unit keeps /run shared).
mkns svc
CONFDIR=/run/tunshim-e2e.$$
mkdir -m 700 "$CONFDIR"
on_exit "rm -rf $CONFDIR"
# The binary too: the sandbox's private /tmp would hide a build tree that lives under /tmp.
SBIN=$CONFDIR/tunshim
install -m 0755 "$TUNSHIM_BIN" "$SBIN"
printf '[global]\nqueue_num = 4771\ncontrol_socket = "%s"\n\n[[tunnel]]\ninterface = "ppp0"\nmss = 1360\n' "$CONFDIR/tunshim.sock" >"$CONFDIR/tunshim.conf"
NOTIFY=tunshim-e2e-$$
# The listener stamps each message with what the namespace's mangle table holds at that moment.
inns svc "$PY" -u - "$NOTIFY" >"$E2E_TMP/notify.log" 2>&1 <<'EOF' &
import socket, subprocess, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + sys.argv[1])
print("listening", flush=True)
while True:
    msg = s.recv(4096).decode(errors="replace").replace("\n", " ").strip()
    rules = subprocess.run(["iptables-nft-save", "-t", "mangle"], capture_output=True, text=True).stdout
    n = sum(1 for l in rules.splitlines() if l.startswith("-A TUNSHIM-"))
    print(f"{msg} | rules={n}", flush=True)
EOF
wait_for 5 grep -q listening "$E2E_TMP/notify.log" || die "notify listener did not start: $(cat "$E2E_TMP/notify.log")"
bset=$(unit_values CapabilityBoundingSet | tr ' ' '\n' | sed '/^$/d' | tr 'A-Z' 'a-z' | sed 's/^cap_/+/' | tr '\n' ',')
# sandboxed CMD…: CMD under the unit's bounding set, with /usr /etc /boot read-only and a
# private /tmp (ProtectSystem=full, PrivateTmp=yes), in the namespace.
sandboxed() {
  inns "${SANDBOX_NS:-svc}" unshare -m --propagation private sh -c '
    for d in /usr /etc /boot; do [ -d "$d" ] && mount --bind "$d" "$d" && mount -o remount,bind,ro "$d"; done
    mount -t tmpfs -o mode=1777 tmpfs /tmp
    exec "$@"' sh setpriv --bounding-set "-all,${bset%,}" --inh-caps=-all -- "$@"
}
# The daemon's ping interval follows WATCHDOG_USEC, not the unit: 2 s keeps the wait short
# whatever WatchdogSec says.
wdog_usec=2000000
# The unit's own ExecStart, binary and config path swapped for the test's.
read -r -a cmd <<<"$(echo "$exec_start" | sed "s|/usr/sbin/tunshim|$SBIN|; s|/etc/tunshim/tunshim.conf|$CONFDIR/tunshim.conf|")"
# WATCHDOG_PID must be the daemon's pid: the shell execs into it.
sandboxed sh -c 'echo $$ >'"$CONFDIR/pid"'; export NOTIFY_SOCKET=@'"$NOTIFY"' WATCHDOG_USEC='"$wdog_usec"' WATCHDOG_PID=$$; exec "$@"' sh "${cmd[@]}" \
  >"$E2E_TMP/daemon.log" 2>&1 &
dpid=$!
wait_for 5 test -s "$CONFDIR/pid" || die "the sandboxed daemon did not start: $(cat "$E2E_TMP/daemon.log")"
mainpid=$(cat "$CONFDIR/pid")
if wait_for 10 grep -q '^READY=1' "$E2E_TMP/notify.log"; then
  line=$(grep -m1 '^READY=1' "$E2E_TMP/notify.log")
  n=${line##*rules=}
  [ "$n" -ge 2 ] && pass "sandboxed daemon: READY=1 with its rules already in place ($n TUNSHIM rules)" \
    || fail "sandboxed daemon: READY=1 before its rules were installed ($line)"
else
  fail "sandboxed daemon: no READY=1 within 10 s; log: $(cat "$E2E_TMP/daemon.log")"
fi
caps_now=$(grep -E '^Cap(Eff|Bnd):' "/proc/$mainpid/status" | tr -s '\t ' ' ' | tr '\n' ' ')
[ "$(readlink "/proc/$mainpid/exe")" = "$(readlink -f "$SBIN")" ] && grep -q 'CapEff: 0*c000003000 CapBnd: 0*c000003000' <<<"$caps_now" \
  && pass "sandboxed daemon holds exactly CAP_NET_ADMIN, CAP_NET_RAW, CAP_PERFMON and CAP_BPF ($caps_now)" \
  || fail "sandboxed daemon's capabilities: $caps_now (exe $(readlink "/proc/$mainpid/exe"))"
if grep -q '^STATUS=' "$E2E_TMP/notify.log"; then pass "daemon sends STATUS=: $(grep -m1 '^STATUS=' "$E2E_TMP/notify.log")"
else log "daemon sends no STATUS= line (systemctl status shows no summary)"; fi
# Watchdog: a unit WatchdogSec needs a binary that feeds it within the period.
case "$watchdog" in 0|infinity) watchdog="" ;; esac
sleep "$(( (wdog_usec / 1000000) + 1 ))"
fed=$(grep -c '^WATCHDOG=1' "$E2E_TMP/notify.log" || true)
if [ -n "$watchdog" ]; then
  [ "$fed" -gt 0 ] && pass "WatchdogSec=$watchdog and the daemon sent WATCHDOG=1 ($fed times)" \
    || fail "the unit sets WatchdogSec=$watchdog but the daemon sent no WATCHDOG=1: systemd would kill it"
else
  [ "$fed" -gt 0 ] && log "daemon feeds a watchdog ($fed WATCHDOG=1 in $((wdog_usec / 1000000 + 1)) s): the unit could set WatchdogSec" \
    || pass "no WatchdogSec in the unit, and the daemon sends no WATCHDOG=1 (consistent)"
fi
# The unit's ExecReload: check-config in the same sandbox, then SIGHUP to the main pid.
printf '[global]\nqueue_num = 4771\ncontrol_socket = "%s"\n\n[[tunnel]]\ninterface = "ppp0"\nmss = 1360\n\n[[tunnel]]\ninterface = "tun7"\nmss = 1300\n' "$CONFDIR/tunshim.sock" >"$CONFDIR/tunshim.conf"
reload_ok=1
while read -r r; do
  read -r -a rc <<<"$(echo "$r" | sed "s|/usr/sbin/tunshim|$SBIN|; s|/etc/tunshim/tunshim.conf|$CONFDIR/tunshim.conf|; s|\$MAINPID|$mainpid|")"
  sandboxed "${rc[@]}" >>"$E2E_TMP/reload.log" 2>&1 || reload_ok=0
done < <(unit_values ExecReload)
[ $reload_ok -eq 1 ] && wait_for 10 sh -c "ip netns exec $(ns svc) iptables-nft-save -t mangle | grep -q -- '-o tun7 '" \
  && pass "ExecReload (check-config + SIGHUP) applied: rules for tun7 added" \
  || fail "ExecReload did not apply; reload log: $(cat "$E2E_TMP/reload.log")"
wait_for 5 sh -c "grep -c '^READY=1' $E2E_TMP/notify.log | grep -qv '^1$'" && grep -q '^RELOADING=1' "$E2E_TMP/notify.log" \
  && pass "reload reported to systemd (RELOADING=1 then READY=1)" || fail "no RELOADING=1/READY=1 around the reload"
printf '[[tunnel]]\ninterface = "ppp0"\nmss = 1\n' >"$CONFDIR/tunshim.conf"
first=$(unit_values ExecReload | head -1 | sed "s|/usr/sbin/tunshim|$SBIN|; s|/etc/tunshim/tunshim.conf|$CONFDIR/tunshim.conf|")
read -r -a rc <<<"$first"
if sandboxed "${rc[@]}" >/dev/null 2>"$E2E_TMP/badreload.log"; then
  fail "ExecReload's first step accepted mss = 1"
else
  pass "bad config: ExecReload fails before SIGHUP ($(head -1 "$E2E_TMP/badreload.log"))"
fi
kill -TERM "$mainpid"
st=0
wait "$dpid" || st=$?
[ $st -eq 0 ] && pass "SIGTERM: exit 0" || fail "SIGTERM: exit $st; log: $(tail -5 "$E2E_TMP/daemon.log")"
grep -q '^STOPPING=1' "$E2E_TMP/notify.log" && pass "STOPPING=1 sent" || fail "no STOPPING=1"
[ -z "$(inns svc iptables-nft-save -t mangle | grep TUNSHIM)" ] && [ -z "$(inns svc ip6tables-nft-save -t mangle | grep TUNSHIM)" ] \
  && pass "rules removed at exit" || fail "rules left in the namespace"
log "notify messages: $(cut -d'|' -f1 "$E2E_TMP/notify.log" | tail -n +2 | tr '\n' ';')"
grep -q 'read-only\|Read-only\|EROFS' "$E2E_TMP/daemon.log" && fail "daemon hit the read-only system: $(grep -i 'read-only' "$E2E_TMP/daemon.log" | head -2)"

# ---- 6. the eBPF data path in the unit's sandbox ---------------------------------------------
# A namespace with a tunnel interface (a veth named ppp0); the config asks for "auto", as the
# installed one does by default (explicitly: lib.sh's TUNSHIM_TEST_DATAPATH would decide
# otherwise). A daemon in it is recognised by its pid file.
mkns bpf; mkns bpfpeer
ip -n "$(ns bpf)" link add ppp0 type veth peer name eth0 netns "$(ns bpfpeer)"
ip -n "$(ns bpf)" link set ppp0 up
printf '[global]\ndatapath = "auto"\nstats_listen = "off"\ncontrol_socket = "off"\n\n[[tunnel]]\ninterface = "ppp0"\nmss = 1360\n' >"$CONFDIR/bpf.conf"
# bpf_daemon LOG: the unit's ExecStart (config swapped) in the sandbox; its pid in BPID.
bpf_daemon() {
  rm -f "$CONFDIR/bpf.pid"
  SANDBOX_NS=bpf sandboxed sh -c 'echo $$ >'"$CONFDIR/bpf.pid"'; exec "$@"' sh \
    "$SBIN" run -c "$CONFDIR/bpf.conf" >"$E2E_TMP/$1" 2>&1 &
  wait_for 5 test -s "$CONFDIR/bpf.pid" || die "the sandboxed eBPF daemon did not start: $(cat "$E2E_TMP/$1")"
  BPID=$(cat "$CONFDIR/bpf.pid")
  on_exit "kill -9 $BPID"
  wait_for "$E2E_START_WAIT" grep -q "running:" "$E2E_TMP/$1" || fail "the sandboxed daemon never ran: $(tail -3 "$E2E_TMP/$1")"
}
bpf_daemon bpf1.log
grep -q 'datapath: bpf (auto: the kernel accepted the eBPF programs)' "$E2E_TMP/bpf1.log" \
  && pass "under the unit's capabilities datapath auto picks bpf ($(grep -Eo 'CapEff:\s*\S+' "/proc/$BPID/status" | tr -s '\t ' ' '))" \
  || fail "datapath auto under the unit's capabilities: $(grep 'datapath' "$E2E_TMP/bpf1.log")"
wait_for 5 e2e_bpf_hooked bpf ppp0 && pass "its programs are on ppp0's egress and ingress" \
  || fail "filters on ppp0: egress $(e2e_bpf_filters bpf ppp0 egress), ingress $(e2e_bpf_filters bpf ppp0 ingress)"
dead=$(e2e_bpf_prog_id bpf ppp0 egress)
kill -9 "$BPID"
wait_for 5 sh -c "! kill -0 $BPID 2>/dev/null" || fail "the sandboxed daemon survived kill -9"
bpf_daemon bpf2.log
grep -q "eBPF programs attached (.*replacing a dead tunshim's" "$E2E_TMP/bpf2.log" && e2e_bpf_hooked bpf ppp0 \
  && [ "$(e2e_bpf_prog_id bpf ppp0 egress)" != "$dead" ] \
  && pass "restart after kill -9 in the sandbox took over the dead run's programs (egress program $dead -> $(e2e_bpf_prog_id bpf ppp0 egress))" \
  || fail "restart after kill -9 in the sandbox: $(grep -E 'eBPF|error' "$E2E_TMP/bpf2.log" | tr '\n' ' ')"
kill -TERM "$BPID"
unhooked() { [ "$(e2e_bpf_filters bpf ppp0 egress)" = 0 ] && [ "$(e2e_bpf_filters bpf ppp0 ingress)" = 0 ] && ! inns bpf tc qdisc show dev ppp0 | grep -q clsact; }
wait_for 5 unhooked && pass "SIGTERM in the sandbox removed the filters and the clsact qdisc" \
  || fail "after SIGTERM in the sandbox: $(inns bpf tc filter show dev ppp0 egress | head -2 | tr '\n' ' ') $(inns bpf tc qdisc show dev ppp0 | tr '\n' ' ')"

finish
