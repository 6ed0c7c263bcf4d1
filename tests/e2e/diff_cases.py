#!/usr/bin/python3
"""Case generator for the differential test of `tunshim clamp` against the kernel's
TCPMSS target (tests/e2e/test_clamp_vs_kernel.sh).

Every case is one IP packet, built byte by byte here (no scapy: each field is exactly
what we write, so the bytes handed to the kernel's raw socket are the bytes tunshim
reads). Each case declares up front what is expected of the comparison:

  same          kernel output == tunshim output, byte for byte
  kernel_drops  (1) malformed: the kernel drops it; tunshim passes it unchanged, "malformed"
  frag_insert   (2) first fragment without MSS: the kernel inserts one; tunshim does not
  odd_csum      (3) MSS at an odd offset: same bytes but the TCP checksum; the kernel's is
                    wrong, tunshim's verifies
  kernel_walks  (4) malformed option list the kernel walks anyway: tunshim passes it
                    unchanged, "malformed"; whatever the kernel does is recorded

and the outcome tunshim must report for it (clamp/mss.h's Outcome names). A small model
of net/netfilter/xt_TCPMSS.c (behind iptables-nft's native `tcp flags` match) predicts
what the kernel does with each case; the generator refuses a case whose declaration
contradicts the model, and the comparator checks the real kernel against the prediction.

Usage:
  diff_cases.py config            shell assignments: addresses, groups, targets
  diff_cases.py generate OUTDIR   OUTDIR/cases.json, OUTDIR/in-<group>.pcap, OUTDIR/case/*.pcap
"""
import ipaddress
import json
import os
import struct
import sys

# ---- addresses and targets ------------------------------------------------------------
# All inside the test's own namespaces: tx holds SRC, the group addresses are static
# neighbours pointing at rx's veth (rx itself has no address and answers nothing).
SRC4, SRC6 = "10.77.0.1", "fd77::1"
PREFIX4, PREFIX6 = 24, 64
# Three targets so insertion is seen both capped (536 / 1220) and below the cap.
GROUPS = {
    "A": {"dst4": "10.77.0.2", "dst6": "fd77::2", "mss4": 1360, "mss6": 1340},
    "B": {"dst4": "10.77.0.3", "dst6": "fd77::3", "mss4": 500, "mss6": 1200},
    "C": {"dst4": "10.77.0.4", "dst6": "fd77::4", "mss4": 536, "mss6": 1220},
}
SENTINEL = b"TUNSHIM-DIFF-END"   # payload of the UDP packet sent after all cases
KEY4_BASE = 0x1000               # IPv4 ID of case i: KEY4_BASE + i (never 0: kernel fills 0)
KEY6_BASE = 0x10000              # IPv6 flow label of case i
SPORT_BASE = 20000

EXPECTS = ("same", "kernel_drops", "frag_insert", "odd_csum", "kernel_walks", "eol_insert")
OUTCOMES = ("clamped", "inserted", "unchanged", "no_room", "not_syn", "not_tcp",
            "fragment", "malformed", "disabled")

# TCP flags and options
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
NOP, EOL = b"\x01", b"\x00"
SACKOK = b"\x04\x02"


def MSS(v):
    return b"\x02\x04" + struct.pack("!H", v)


def WS(s=7):
    return b"\x03\x03" + bytes([s])


def TS(a=0x11223344, b=0):
    return b"\x08\x0a" + struct.pack("!II", a, b)


SACK1 = b"\x05\x0a" + struct.pack("!II", 1000, 2000)    # one SACK block
TFO = b"\x22\x0a" + bytes(range(8))                      # fast open cookie (kind 34)
EXP4 = b"\xfd\x04\xab\xcd"                               # experimental (RFC 6994), unknown to all


# ---- checksums ------------------------------------------------------------------------
def ones_sum(data, acc=0):
    """One's-complement sum of big-endian 16-bit words, folded to 16 bits (not inverted)."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    acc += sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while acc >> 16:
        acc = (acc & 0xFFFF) + (acc >> 16)
    return acc


def csum(data):
    return ~ones_sum(data) & 0xFFFF


def pseudo(family, src, dst, proto, length):
    if family == 4:
        return (ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
                + struct.pack("!BBH", 0, proto, length))
    return (ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
            + struct.pack("!IxxxB", length, proto))


def l4_verifies(family, src, dst, proto, segment):
    """True when the TCP/UDP checksum stored in `segment` is right."""
    return ones_sum(segment, ones_sum(pseudo(family, src, dst, proto, len(segment)))) == 0xFFFF


def csum_replace(check, old_words, new_words):
    """The kernel's incremental update (inet_proto_csum_replace*, RFC 1624 eqn. 3): the
    words are taken as they are, whatever their alignment in the summed region."""
    acc = ~check & 0xFFFF
    for w in old_words:
        acc += ~w & 0xFFFF
    for w in new_words:
        acc += w
    while acc >> 16:
        acc = (acc & 0xFFFF) + (acc >> 16)
    return ~acc & 0xFFFF


# ---- packet building ------------------------------------------------------------------
def tcp_header(sport, dport, seq, ack, flags, win, opts, doff=None, urg=0):
    if len(opts) % 4:
        raise ValueError("options not padded: %r" % opts)
    if doff is None:
        doff = 5 + len(opts) // 4
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, win, 0, urg) + opts


def with_l4_csum(family, src, dst, proto, segment, delta=0):
    """Fills in the checksum field of a TCP (proto 6) or UDP (17) segment. `delta` spoils it."""
    off = 16 if proto == 6 else 6
    seg = bytearray(segment)
    seg[off:off + 2] = b"\0\0"
    c = (csum(pseudo(family, src, dst, proto, len(seg)) + bytes(seg)) + delta) & 0xFFFF
    seg[off:off + 2] = struct.pack("!H", c)
    return bytes(seg)


def ipv4(src, dst, proto, payload, ident, ttl=64, tos=0, df=False, mf=False, frag8=0, opts=b""):
    if len(opts) % 4:
        raise ValueError("IPv4 options not padded")
    ihl = 5 + len(opts) // 4
    fo = (0x4000 if df else 0) | (0x2000 if mf else 0) | frag8
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, tos, 4 * ihl + len(payload), ident, fo,
                                ttl, proto, 0, ipaddress.IPv4Address(src).packed,
                                ipaddress.IPv4Address(dst).packed) + opts)
    hdr[10:12] = struct.pack("!H", csum(bytes(hdr)))
    return bytes(hdr) + payload


# IPv6 extension header builders: (next-header code, body without the next-header byte)
def ext_hbh(opts=b"\x01\x04\0\0\0\0"):              # PadN by default; 8-byte units
    return (0, _ext_body(opts))


def ext_dst(opts=b"\x01\x04\0\0\0\0"):
    return (60, _ext_body(opts))


def ext_rt0():                                       # routing type 0, segments left 0
    return (43, bytes([0, 0, 0]) + b"\0\0\0\0")


def ext_frag(offset8=0, m=False, ident=0x55667788):
    return (44, b"\0" + struct.pack("!HI", (offset8 << 3) | (1 if m else 0), ident))


def _ext_body(opts):
    """HBH/destination options body: hdr-ext-len byte + options, total a multiple of 8."""
    if (len(opts) + 2) % 8:
        raise ValueError("extension header options not padded to 8")
    return bytes([(len(opts) + 2) // 8 - 1]) + opts


def ipv6(src, dst, proto, payload, flow, hlim=64, exts=()):
    chain = b""
    codes = [e[0] for e in exts] + [proto]
    for i, (_, body) in enumerate(exts):
        chain += bytes([codes[i + 1]]) + body
    first = codes[0]
    body = chain + payload
    return (struct.pack("!IHBB", (6 << 28) | flow, len(body), first, hlim)
            + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + body)


# ---- parsing (shared with the comparator) ---------------------------------------------
class Ip:
    """Where things are in an IP packet, as the kernel's netfilter sees them."""

    def __init__(self, pkt):
        self.ok = False
        self.family = pkt[0] >> 4 if pkt else 0
        self.key = None
        self.proto = None
        self.l4 = None
        self.fragoff = 0
        self.mf = False
        if self.family == 4 and len(pkt) >= 20:
            ihl = (pkt[0] & 15) * 4
            self.key = struct.unpack("!H", pkt[4:6])[0]
            fo = struct.unpack("!H", pkt[6:8])[0]
            self.fragoff, self.mf = fo & 0x1FFF, bool(fo & 0x2000)
            self.proto, self.l4 = pkt[9], ihl
            self.src, self.dst = str(ipaddress.IPv4Address(pkt[12:16])), str(ipaddress.IPv4Address(pkt[16:20]))
            self.ok = ihl >= 20 and len(pkt) >= ihl
        elif self.family == 6 and len(pkt) >= 40:
            self.key = struct.unpack("!I", pkt[0:4])[0] & 0xFFFFF
            self.src, self.dst = str(ipaddress.IPv6Address(pkt[8:24])), str(ipaddress.IPv6Address(pkt[24:40]))
            nh, off = pkt[6], 40
            # ipv6_skip_exthdr / ipv6_find_hdr: HBH, routing, destination options, fragment, AH
            for _ in range(16):
                if nh in (0, 43, 60, 51):
                    if off + 2 > len(pkt):
                        return
                    nxt = pkt[off]
                    off += (pkt[off + 1] + 2) * 4 if nh == 51 else (pkt[off + 1] + 1) * 8
                    nh = nxt
                elif nh == 44:
                    if off + 8 > len(pkt):
                        return
                    fo = struct.unpack("!H", pkt[off + 2:off + 4])[0]
                    self.fragoff, self.mf = fo >> 3, bool(fo & 1)
                    nh = pkt[off]
                    off += 8
                    if self.fragoff:
                        break
                else:
                    break
            self.proto, self.l4 = nh, off
            self.ok = off <= len(pkt)

    def addresses(self):
        return self.src, self.dst


def tcp_csum_ok(pkt, tail=b""):
    """Does the TCP checksum of `pkt` (a first fragment: plus the segment's `tail`) verify?"""
    ip = Ip(pkt)
    return l4_verifies(ip.family, ip.src, ip.dst, 6, pkt[ip.l4:] + tail)


def ipv4_hdr_ok(pkt):
    return pkt[0] >> 4 != 4 or ones_sum(pkt[:(pkt[0] & 15) * 4]) == 0xFFFF


def mss_offsets(pkt):
    """Offsets (from the TCP header) of well-formed MSS options, walking as RFC 9293 says."""
    ip = Ip(pkt)
    t = ip.l4
    hl = (pkt[t + 12] >> 4) * 4
    i, found = 20, []
    while i < hl:
        k = pkt[t + i]
        if k == 0:
            break
        if k == 1:
            i += 1
            continue
        if i + 1 >= hl or pkt[t + i + 1] < 2:
            break
        if k == 2 and pkt[t + i + 1] == 4:
            found.append(i)
        i += pkt[t + i + 1]
    return found


def kernel_walk_mss(pkt):
    """[(offset, value)] of every MSS option the kernel's walk (xt_TCPMSS optlen()) meets:
    EOL counts as one byte, any length >= 2 is stepped over."""
    ip = Ip(pkt)
    t = ip.l4
    hl = (pkt[t + 12] >> 4) * 4
    i, found = 20, []
    while i <= hl - 4 and t + hl <= len(pkt):
        if pkt[t + i] == 2 and pkt[t + i + 1] == 4:
            found.append((i, struct.unpack("!H", pkt[t + i + 2:t + i + 4])[0]))
        i += 1 if pkt[t + i] <= 1 or pkt[t + i + 1] == 0 else pkt[t + i + 1]
    return found


# ---- model of the kernel: iptables-nft rule + xt_TCPMSS -------------------------------
def kernel_model(pkt, target, stop_at_eol=False):
    """What `-p tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss N` does to `pkt` on the
    iptables-nft backend: ("none"|"clamp"|"insert"|"drop", bytes or None, detail).
    stop_at_eol: end the option walk at EOL, as a receiver does (tunshim's reading)."""
    ip = Ip(pkt)
    if not ip.ok or ip.proto != 6:
        return "none", pkt, "not TCP"
    # nft's transport-header loads fail on later fragments and past the end: no match.
    if ip.fragoff != 0 or len(pkt) < ip.l4 + 14:
        return "none", pkt, "rule does not match"
    if pkt[ip.l4 + 13] & (SYN | RST) != SYN:
        return "none", pkt, "not SYN"
    newmss = target[0] if ip.family == 4 else target[1]
    t = ip.l4
    length = len(pkt) - t
    if length < 20:
        return "drop", None, "TCP header cut"
    hl = (pkt[t + 12] >> 4) * 4
    if length < hl or hl < 20:
        return "drop", None, "bad data offset"
    b = bytearray(pkt)
    i = 20
    while i <= hl - 4:
        if stop_at_eol and b[t + i] == 0:
            break
        if b[t + i] == 2 and b[t + i + 1] == 4:
            old = struct.unpack("!H", b[t + i + 2:t + i + 4])[0]
            if old <= newmss:
                return "none", pkt, "MSS %d <= %d at %d" % (old, newmss, i)
            b[t + i + 2:t + i + 4] = struct.pack("!H", newmss)
            c = struct.unpack("!H", b[t + 16:t + 18])[0]
            b[t + 16:t + 18] = struct.pack("!H", csum_replace(c, [old], [newmss]))
            return "clamp", bytes(b), "MSS %d -> %d at %d" % (old, newmss, i)
        i += 1 if b[t + i] <= 1 or b[t + i + 1] == 0 else b[t + i + 1]
    if length > hl:
        return "none", pkt, "no MSS, data"
    if hl >= 60:
        return "none", pkt, "no MSS, header full"
    ins = min(newmss, 536 if ip.family == 4 else 1220)
    opt = MSS(ins)
    c = struct.unpack("!H", b[t + 16:t + 18])[0]
    c = csum_replace(c, [length], [length + 4])
    c = csum_replace(c, [0, 0], struct.unpack("!HH", opt))
    oldw = struct.unpack("!H", b[t + 12:t + 14])[0]
    b[t + 12] += 0x10
    c = csum_replace(c, [oldw], [struct.unpack("!H", b[t + 12:t + 14])[0]])
    b[t + 16:t + 18] = struct.pack("!H", c)
    b[t + 20:t + 20] = opt
    if ip.family == 4:
        tl = struct.unpack("!H", b[2:4])[0]
        ic = struct.unpack("!H", b[10:12])[0]
        b[10:12] = struct.pack("!H", csum_replace(ic, [tl], [tl + 4]))
        b[2:4] = struct.pack("!H", tl + 4)
    else:
        b[4:6] = struct.pack("!H", struct.unpack("!H", b[4:6])[0] + 4)
    return "insert", bytes(b), "inserted MSS %d" % ins


# ---- the cases ------------------------------------------------------------------------
class Gen:
    def __init__(self):
        self.cases = []
        self.names = set()

    def add(self, name, family, group, build, expect="same", outcome=None, note=""):
        """`build(key_index, sport)` returns (packet bytes, segment tail or b"")."""
        if name in self.names:
            raise ValueError("duplicate case name " + name)
        if expect not in EXPECTS:
            raise ValueError(expect)
        idx = len(self.cases)
        pkt, tail = build(idx, SPORT_BASE + idx)
        ip = Ip(pkt)
        assert ip.family == family and ip.key == (KEY4_BASE if family == 4 else KEY6_BASE) + idx, name
        g = GROUPS[group]
        target = (g["mss4"], g["mss6"])
        kclass, kbytes, kdetail = kernel_model(pkt, target)
        # A case that contradicts its own declaration is a bug in this file: refuse it.
        want_k = {"kernel_drops": {"drop"}, "frag_insert": {"insert"}, "odd_csum": {"clamp"},
                  "same": {"none", "clamp", "insert"},
                  "kernel_walks": {"none", "clamp", "insert", "drop"},
                  "eol_insert": {"clamp"}}[expect]
        if kclass not in want_k:
            raise ValueError("%s: declared %s but the kernel model says %s (%s)" % (name, expect, kclass, kdetail))
        if outcome is None:
            outcome = default_outcome(expect, ip, pkt, kclass)
        if outcome not in OUTCOMES:
            raise ValueError(outcome)
        if expect == "odd_csum":
            off = mss_offsets(pkt)
            if not off or (ip.l4 + off[0]) % 2 == 0:
                raise ValueError(name + ": declared odd_csum but the MSS is not at an odd offset")
            if tcp_csum_ok(kbytes, tail):
                raise ValueError(name + ": the kernel's checksum would be right by chance; pick other values")
        expected_out = b""
        if expect == "eol_insert":
            # The receiver stops at EOL and never sees the hidden MSS: tunshim inserts a
            # visible one exactly where and how the kernel inserts into an MSS-less SYN.
            tclass, tbytes, _ = kernel_model(pkt, target, stop_at_eol=True)
            if tclass != "insert":
                raise ValueError(name + ": declared eol_insert but a receiver-view walk says " + tclass)
            expected_out = tbytes
        if expect == "frag_insert" and not ip.mf:
            raise ValueError(name + ": frag_insert on a packet that is not a first fragment")
        self.names.add(name)
        self.cases.append({
            "name": name, "family": family, "group": group, "key": ip.key,
            "dst": ip.dst, "sport": SPORT_BASE + idx,
            "expect": expect, "outcome": outcome, "kernel": kclass, "kernel_detail": kdetail,
            "note": note, "input": pkt.hex(), "tail": tail.hex(), "expected_out": expected_out.hex(),
        })


def default_outcome(expect, ip, pkt, kclass):
    if expect in ("kernel_drops", "kernel_walks"):
        return "malformed"
    if expect == "frag_insert":
        return "unchanged"
    if expect == "odd_csum":
        return "clamped"
    if expect == "eol_insert":
        return "inserted"
    if ip.proto != 6:
        return "not_tcp"
    if ip.fragoff:
        return "fragment"
    if pkt[ip.l4 + 13] & (SYN | RST) != SYN:
        return "not_syn"
    return {"none": "unchanged", "clamp": "clamped", "insert": "inserted"}[kclass]


def tcp_packet(family, group, idx, sport, flags=SYN, opts=b"", payload=b"", doff=None,
               seq=0x01020304, ack=0, win=64240, urg=0, v4opts=b"", exts=(), frag=None,
               tos=0, ttl=64, csum_delta=0, seg_cut=None, df=True, fix=None):
    """A TCP/IP packet for case `idx`. frag=(cut, mf, offset8): the IP packet carries
    segment[:cut] (or segment[cut:] for offset8 != 0); the rest is returned as the tail.
    seg_cut truncates the segment after the checksum is computed (malformed cases).
    `fix(segment)` may rewrite the segment before the checksum (to aim a checksum)."""
    g = GROUPS[group]
    src, dst = (SRC4, g["dst4"]) if family == 4 else (SRC6, g["dst6"])
    seg = tcp_header(sport, 80, seq, ack, flags, win, opts, doff, urg) + payload
    if fix:
        seg = fix(seg)
    seg = with_l4_csum(family, src, dst, 6, seg, csum_delta)
    tail = b""
    if seg_cut is not None:
        seg = seg[:seg_cut]
    if frag:
        cut, mf, off8 = frag
        seg, tail = (seg[:cut], seg[cut:]) if off8 == 0 else (seg[cut:], b"")
    if family == 4:
        ident = KEY4_BASE + idx
        fr = frag or (None, False, 0)
        pkt = ipv4(src, dst, 6, seg, ident, ttl=ttl, tos=tos, df=df and not frag, mf=fr[1],
                   frag8=fr[2], opts=v4opts)
    else:
        ex = list(exts)
        if frag:
            ex.append(ext_frag(frag[2], frag[1]))
        pkt = ipv6(src, dst, 6, seg, KEY6_BASE + idx, exts=ex)
    return pkt, tail


def pad4(opts, fill=NOP):
    return opts + fill * (-len(opts) % 4)


# Option layouts with one MSS: (name, before, after); `after` completes to a multiple of 4.
LAYOUTS = [
    ("mss_only", b"", b""),
    ("linux_order", b"", SACKOK + TS() + NOP + WS()),
    ("nop_mss", NOP, NOP * 3),                                  # MSS at 21: odd
    ("nop2_mss", NOP * 2, NOP * 2),
    ("sackok_mss", SACKOK, NOP * 2),
    ("ws_mss", WS(), NOP),                                      # 23: odd
    ("ts_mss", TS(), NOP * 2),
    ("nop_ts_mss", NOP + TS(), NOP),                            # 31: odd
    ("bsd_order_mss_late", NOP * 2 + TS() + NOP + WS(), SACKOK + NOP * 2),
    ("ws_sackok_mss", WS() + SACKOK, NOP * 3),                  # 25: odd
    ("ws_ts_mss", WS() + TS(), NOP * 3),                        # 33: odd
    ("exp_mss", EXP4, b""),
    ("mss_eol_pad", b"", EOL * 4),
    ("full40_mss_last", TS() + SACK1 + TFO + WS() + NOP * 3, b""),  # MSS at 56, header 60
]


def is_odd(before):
    return len(before) % 2 == 1


def rel_values(group, family):
    t = GROUPS[group]["mss4" if family == 4 else "mss6"]
    above = [1460 if family == 4 else 1440, 65535, t + 1, 8960, t + 0x0102]
    below = [t - 1, 1, t // 2, 88]
    return t, above, below


def build_cases():
    gen = Gen()
    add = gen.add

    # 1. The clamp matrix: every layout x {above, equal, below} x family x group A, B.
    for fam in (4, 6):
        for group in ("A", "B", "C"):
            t, above, below = rel_values(group, fam)
            layouts = LAYOUTS if group != "C" else LAYOUTS[:2] + LAYOUTS[2:3]
            for li, (lname, before, after) in enumerate(layouts):
                for rel, val in (("above", above[li % len(above)]), ("equal", t),
                                 ("below", below[li % len(below)])):
                    opts = before + MSS(val) + after
                    expect = "odd_csum" if rel == "above" and is_odd(before) else "same"
                    add("v%d_%s_mss_%s_%s" % (fam, lname, rel, group), fam, group,
                        lambda i, sp, o=opts, f=fam, g=group: tcp_packet(f, g, i, sp, opts=o),
                        expect, note="MSS %d vs target %d at TCP offset %d" % (val, t, 20 + len(before)))

    # 2. Insertion: SYNs without MSS, header with and without room.
    NO_MSS = [
        ("bare", b""),
        ("linux_order_no_mss", SACKOK + TS() + NOP + WS()),
        ("nop2_ts", NOP * 2 + TS()),
        ("ws_nop", WS() + NOP),
        ("exp", EXP4),
        ("hdr56", TS() + SACK1 + TFO + WS() + NOP * 3),                   # 36 bytes: room for 4
        ("hdr60_full", TS() + SACK1 + TFO + WS() + NOP * 3 + SACKOK + NOP * 2),  # 40 bytes: no room
        ("eol_only", EOL * 4),
    ]
    for fam in (4, 6):
        for group in ("A", "B", "C"):
            for lname, opts in NO_MSS:
                add("v%d_syn_%s_%s" % (fam, lname, group), fam, group,
                    lambda i, sp, o=opts, f=fam, g=group: tcp_packet(f, g, i, sp, opts=o), "same")

    for fam in (4, 6):
        t, above, below = rel_values("A", fam)
        odd = NOP + MSS(above[0]) + NOP * 3
        # 3. SYN-ACK
        add("v%d_synack_mss_above" % fam, fam, "A",
            lambda i, sp, f=fam: tcp_packet(f, "A", i, sp, flags=SYN | ACK, ack=0x7777,
                                            opts=MSS(1460) + SACKOK + NOP * 2 + WS()+ NOP))
        add("v%d_synack_mss_below" % fam, fam, "A",
            lambda i, sp, f=fam: tcp_packet(f, "A", i, sp, flags=SYN | ACK, ack=0x7777, opts=MSS(1000)))
        add("v%d_synack_no_mss" % fam, fam, "A",
            lambda i, sp, f=fam: tcp_packet(f, "A", i, sp, flags=SYN | ACK, ack=0x7777, opts=SACKOK + NOP * 2))
        add("v%d_synack_no_mss_B" % fam, fam, "B",
            lambda i, sp, f=fam: tcp_packet(f, "B", i, sp, flags=SYN | ACK, ack=0x7777))
        add("v%d_synack_mss_odd_above" % fam, fam, "A",
            lambda i, sp, f=fam, o=odd: tcp_packet(f, "A", i, sp, flags=SYN | ACK, ack=1, opts=o), "odd_csum")
        add("v%d_synack_no_mss_data" % fam, fam, "A",
            lambda i, sp, f=fam: tcp_packet(f, "A", i, sp, flags=SYN | ACK, ack=1, payload=b"hello"))

        # 4. SYN with data
        add("v%d_syn_data_mss_above" % fam, fam, "A",
            lambda i, sp, f=fam: tcp_packet(f, "A", i, sp, opts=MSS(1460) + SACKOK + NOP * 2, payload=b"GET / HTTP/1.0\r\n\r\n"))
        add("v%d_syn_data_mss_equal" % fam, fam, "A",
            lambda i, sp, f=fam, t=t: tcp_packet(f, "A", i, sp, opts=MSS(t), payload=b"x" * 33))
        add("v%d_syn_data_no_mss" % fam, fam, "A",
            lambda i, sp, f=fam: tcp_packet(f, "A", i, sp, opts=WS() + NOP, payload=b"data"))
        add("v%d_syn_data_1000_mss_above" % fam, fam, "A",
            lambda i, sp, f=fam: tcp_packet(f, "A", i, sp, opts=TS() + NOP * 2 + MSS(9000), payload=bytes(range(256)) * 4))
        add("v%d_syn_data_mss_odd_above" % fam, fam, "A",
            lambda i, sp, f=fam, o=odd: tcp_packet(f, "A", i, sp, opts=o, payload=b"odd+data"), "odd_csum")
        add("v%d_syn_hdr60_data_mss_last" % fam, fam, "A",
            lambda i, sp, f=fam: tcp_packet(f, "A", i, sp, opts=LAYOUTS[-1][1] + MSS(1460), payload=b"z" * 7))

        # 5. Flags: only SYN without RST is touched; SYN may come with anything else.
        for fname, fl in (("ack", ACK), ("fin_ack", FIN | ACK), ("rst", RST), ("rst_ack", RST | ACK),
                          ("psh_ack", PSH | ACK), ("syn_rst", SYN | RST), ("syn_rst_ack", SYN | RST | ACK),
                          ("no_flags", 0), ("all_but_syn", 0xFD), ("all_flags", 0xFF)):
            add("v%d_%s_with_mss_above" % (fam, fname), fam, "A",
                lambda i, sp, f=fam, fl=fl: tcp_packet(f, "A", i, sp, flags=fl, ack=5, opts=MSS(1460)))
        add("v%d_ack_no_mss_empty" % fam, fam, "A",
            lambda i, sp, f=fam: tcp_packet(f, "A", i, sp, flags=ACK, ack=5))
        for fname, fl in (("syn_fin", SYN | FIN), ("syn_urg", SYN | URG), ("syn_ece_cwr", SYN | ECE | CWR),
                          ("syn_psh", SYN | PSH), ("synack_ece", SYN | ACK | ECE)):
            add("v%d_%s_mss_above" % (fam, fname), fam, "A",
                lambda i, sp, f=fam, fl=fl: tcp_packet(f, "A", i, sp, flags=fl, ack=9, urg=3, opts=MSS(1460)))
            add("v%d_%s_no_mss" % (fam, fname), fam, "A",
                lambda i, sp, f=fam, fl=fl: tcp_packet(f, "A", i, sp, flags=fl, ack=9, opts=NOP * 4))

        # 6. Checksums: incremental updates keep a wrong checksum wrong (never launder it);
        # results that land on 0x0000 and an input carrying 0xFFFF (the other zero).
        add("v%d_bad_tcp_csum_clamp" % fam, fam, "A",
            lambda i, sp, f=fam: tcp_packet(f, "A", i, sp, opts=MSS(1460), csum_delta=0x1234),
            note="TCP checksum wrong on input")
        add("v%d_bad_tcp_csum_insert" % fam, fam, "A",
            lambda i, sp, f=fam: tcp_packet(f, "A", i, sp, opts=b"", csum_delta=-7),
            note="TCP checksum wrong on input")
        add("v%d_csum_result_zero_clamp" % fam, fam, "A",
            lambda i, sp, f=fam: aim_tcp_csum(f, "A", i, sp, MSS(1460), 0x0000))
        add("v%d_csum_result_zero_insert" % fam, fam, "A",
            lambda i, sp, f=fam: aim_tcp_csum(f, "A", i, sp, b"", 0x0000))
        add("v%d_csum_input_ffff_clamp" % fam, fam, "A",
            lambda i, sp, f=fam: input_ffff(f, "A", i, sp, MSS(1460)))

    # 7. IPv4 options before the TCP header.
    V4OPTS = [
        ("nop3_eol", NOP * 3 + EOL),
        ("router_alert", b"\x94\x04\x00\x00"),
        ("rr_ihl8", b"\x07\x0b\x04" + b"\0" * 8 + EOL),                    # record route, 2 slots
        ("ts_ihl15", b"\x44\x28\x05\x00" + b"\0" * 36),                   # timestamp, 40 bytes
    ]
    for oname, vo in V4OPTS:
        add("v4_ipopt_%s_mss_above" % oname, 4, "A",
            lambda i, sp, vo=vo: tcp_packet(4, "A", i, sp, opts=SACKOK + MSS(1460) + NOP * 2, v4opts=vo))
        add("v4_ipopt_%s_mss_odd_above" % oname, 4, "A",
            lambda i, sp, vo=vo: tcp_packet(4, "A", i, sp, opts=WS() + MSS(1460) + NOP, v4opts=vo), "odd_csum")
        add("v4_ipopt_%s_insert" % oname, 4, "A",
            lambda i, sp, vo=vo: tcp_packet(4, "A", i, sp, opts=WS() + NOP, v4opts=vo))
        add("v4_ipopt_%s_mss_below" % oname, 4, "B",
            lambda i, sp, vo=vo: tcp_packet(4, "B", i, sp, opts=MSS(400), v4opts=vo))
    add("v4_insert_ip_csum_zero", 4, "A", lambda i, sp: aim_ip_csum(i, sp))

    # 8. IPv6 extension headers before the TCP header.
    RA = b"\x05\x02\x00\x00"                                               # router alert (MLD)
    EXTS = [
        ("hbh", (ext_hbh(),)),
        ("hbh_ra_16", (ext_hbh(RA + b"\x01\x08" + b"\0" * 8),)),
        ("dstopt", (ext_dst(),)),
        ("rt0", (ext_rt0(),)),
        ("frag_atomic", (ext_frag(0, False),)),
        ("chain5", (ext_hbh(), ext_dst(), ext_rt0(), ext_frag(0, False), ext_dst())),
    ]
    for ename, ex in EXTS:
        add("v6_ext_%s_mss_above" % ename, 6, "A",
            lambda i, sp, ex=ex: tcp_packet(6, "A", i, sp, opts=MSS(1440) + SACKOK + NOP * 2, exts=ex))
        add("v6_ext_%s_mss_odd_above" % ename, 6, "A",
            lambda i, sp, ex=ex: tcp_packet(6, "A", i, sp, opts=NOP + TS() + MSS(1440) + NOP, exts=ex), "odd_csum")
        add("v6_ext_%s_insert" % ename, 6, "A",
            lambda i, sp, ex=ex: tcp_packet(6, "A", i, sp, opts=SACKOK + NOP * 2, exts=ex))
        add("v6_ext_%s_mss_below" % ename, 6, "B",
            lambda i, sp, ex=ex: tcp_packet(6, "B", i, sp, opts=MSS(1100), exts=ex))

    # 9. Fragments. The first one carries the TCP header; tunshim clamps an MSS in it but
    # inserts none (that would shift every later fragment's offset: reassembly breaks).
    DATA = bytes(range(97, 123)) * 4                                       # 104 bytes
    for fam in (4, 6):
        p = "v%d_firstfrag" % fam
        o24 = SACKOK + NOP * 2
        add(p + "_mss_above", fam, "A",
            lambda i, sp, f=fam: tcp_packet(f, "A", i, sp, opts=MSS(1460) + o24 + NOP * 4, payload=DATA, frag=(40, True, 0)))
        add(p + "_mss_below", fam, "A",
            lambda i, sp, f=fam: tcp_packet(f, "A", i, sp, opts=MSS(1000) + o24, payload=DATA, frag=(32, True, 0)))
        add(p + "_mss_odd_above", fam, "A",
            lambda i, sp, f=fam: tcp_packet(f, "A", i, sp, opts=WS() + MSS(1460) + NOP, payload=DATA, frag=(32, True, 0)),
            "odd_csum")
        add(p + "_no_mss_hdr_only", fam, "A",
            lambda i, sp, f=fam: tcp_packet(f, "A", i, sp, opts=o24, payload=DATA, frag=(24, True, 0)), "frag_insert")
        add(p + "_no_mss_hdr_only_B", fam, "B",
            lambda i, sp, f=fam: tcp_packet(f, "B", i, sp, opts=WS() + NOP + TS() + NOP * 6, payload=DATA, frag=(40, True, 0)),
            "frag_insert")
        add(p + "_synack_no_mss_hdr_only", fam, "A",
            lambda i, sp, f=fam: tcp_packet(f, "A", i, sp, flags=SYN | ACK, ack=3, opts=WS() + NOP, payload=DATA, frag=(24, True, 0)),
            "frag_insert")
        add(p + "_no_mss_with_data", fam, "A",
            lambda i, sp, f=fam: tcp_packet(f, "A", i, sp, opts=o24, payload=DATA, frag=(48, True, 0)))
        # Later fragments: bytes that would look like a SYN with MSS 1460 if parsed as TCP.
        fake = tcp_header(1, 2, 3, 0, SYN, 5, MSS(1460)) + DATA
        for off8, mf in ((1, True), (3, True), (185, False)):
            add("v%d_laterfrag_off%d%s" % (fam, off8, "_mf" if mf else "_last"), fam, "A",
                lambda i, sp, f=fam, o=off8, m=mf: later_fragment(f, i, fake, o, m))
    # Atomic fragment (IPv6 fragment header, offset 0, M clear): a whole packet, clamped and
    # inserted into like any other (first_fragment is false).
    add("v6_frag_atomic_no_mss_insert_B", 6, "B",
        lambda i, sp: tcp_packet(6, "B", i, sp, opts=b"", exts=(ext_frag(0, False),)))

    # 10. Malformed: the kernel drops them, tunshim passes them unchanged ("malformed").
    for fam in (4, 6):
        p = "v%d_malformed" % fam
        add(p + "_doff15_in_20", fam, "A", lambda i, sp, f=fam: tcp_packet(f, "A", i, sp, doff=15), "kernel_drops")
        add(p + "_doff6_in_20", fam, "A", lambda i, sp, f=fam: tcp_packet(f, "A", i, sp, doff=6), "kernel_drops")
        add(p + "_doff8_in_28", fam, "A",
            lambda i, sp, f=fam: tcp_packet(f, "A", i, sp, doff=8, opts=MSS(1460) + NOP * 4), "kernel_drops")
        for d in (0, 1, 4):
            add(p + "_doff%d" % d, fam, "A",
                lambda i, sp, f=fam, d=d: tcp_packet(f, "A", i, sp, doff=d, opts=MSS(1460)), "kernel_drops")
        add(p + "_tcp_cut_16", fam, "A", lambda i, sp, f=fam: tcp_packet(f, "A", i, sp, seg_cut=16), "kernel_drops")
        add(p + "_synack_doff15", fam, "A",
            lambda i, sp, f=fam: tcp_packet(f, "A", i, sp, flags=SYN | ACK, doff=15, opts=MSS(1460)), "kernel_drops")
        add(p + "_firstfrag_cut_in_options", fam, "A",
            lambda i, sp, f=fam: tcp_packet(f, "A", i, sp, opts=TS() + NOP * 2 + MSS(1460) + SACKOK + NOP * 2,
                                            payload=DATA, frag=(24, True, 0)), "kernel_drops")

    # 11. Malformed option lists the kernel walks anyway (it steps by any length >= 2 and
    # treats EOL like NOP). tunshim passes them unchanged; the kernel's result is recorded.
    WALKS = [
        ("optlen_past_header", NOP * 2 + b"\x08\x28" + b"\0" * 8, "timestamps claiming 40 bytes in a 12-byte list"),
        ("optlen_past_header_after_mss", MSS(1460) + NOP * 2 + b"\x08\x28" + b"\0" * 8,
         "a valid MSS, then an option running past the header"),
        ("mss_len3", b"\x02\x03\x05" + NOP, "MSS kind with length 3"),
        ("mss_len6", b"\x02\x06\x05\xb4\0\0" + NOP * 2, "MSS kind with length 6"),
        ("mss_len2_then_mss", b"\x02\x02" + MSS(1460) + NOP * 2, "MSS kind with length 2, then a real MSS"),
        ("optlen1_then_mss", b"\x08\x01" + NOP * 2 + MSS(1460), "option length 1 (< 2), then MSS"),
        ("optlen0_then_mss", b"\x08\x00" + NOP * 2 + MSS(1460), "option length 0, then MSS"),
        ("dup_mss_above_above", MSS(1460) + MSS(1400), "two MSS options, both above the target"),
        ("dup_mss_below_above", MSS(1000) + MSS(1460), "two MSS options, the first below the target"),
        ("mss_cut_at_header_end", NOP * 3 + b"\x02", "an MSS kind byte with no room for its length"),
    ]
    for fam in (4, 6):
        # Not malformed: a window-scale option of length 10 is a well-formed TLV whose body
        # happens to hold the bytes of an MSS option. Both skip it and insert an MSS.
        add("v%d_ws_len10_hides_mss" % fam, fam, "A",
            lambda i, sp, f=fam: tcp_packet(f, "A", i, sp, opts=b"\x03\x0a\x07" + MSS(1460) + NOP * 5))
        # An MSS in the padding after EOL: the kernel clamps it, though no receiver reads
        # it; tunshim, reading as the receiver does, sees no MSS and inserts one.
        add("v%d_badopt_mss_after_eol" % fam, fam, "A",
            lambda i, sp, f=fam: tcp_packet(f, "A", i, sp, opts=EOL + NOP * 3 + MSS(1460)), "eol_insert",
            note="an MSS option in the padding after EOL")
        add("v%d_eol_then_mss_below_target_b" % fam, fam, "B",
            lambda i, sp, f=fam: tcp_packet(f, "B", i, sp, opts=EOL + b"\0" * 3 + MSS(1460)), "eol_insert",
            note="EOL, zero padding, then an MSS; target below the default MSS")
        for wname, opts, what in WALKS:
            add("v%d_badopt_%s" % (fam, wname), fam, "A",
                lambda i, sp, f=fam, o=opts: tcp_packet(f, "A", i, sp, opts=o), "kernel_walks", note=what)

    # 12. Not TCP: left alone by both.
    add("v4_udp_looks_like_syn", 4, "A", lambda i, sp: other_proto(4, i, 17))
    add("v4_icmp_echo", 4, "A", lambda i, sp: other_proto(4, i, 1))
    add("v6_udp_looks_like_syn", 6, "A", lambda i, sp: other_proto(6, i, 17))
    add("v6_icmpv6_echo", 6, "A", lambda i, sp: other_proto(6, i, 58))
    add("v6_no_next_header", 6, "A", lambda i, sp: other_proto(6, i, 59))
    add("v6_esp_looks_like_syn", 6, "A", lambda i, sp: other_proto(6, i, 50))
    add("v4_ah_proto_looks_like_syn", 4, "A", lambda i, sp: other_proto(4, i, 51))
    return gen.cases


def later_fragment(fam, idx, fake, off8, mf):
    g = GROUPS["A"]
    if fam == 4:
        return ipv4(SRC4, g["dst4"], 6, fake, KEY4_BASE + idx, mf=mf, frag8=off8), b""
    return ipv6(SRC6, g["dst6"], 6, fake, KEY6_BASE + idx, exts=(ext_frag(off8, mf),)), b""


def other_proto(fam, idx, proto):
    g = GROUPS["A"]
    src, dst = (SRC4, g["dst4"]) if fam == 4 else (SRC6, g["dst6"])
    body = tcp_header(1, 2, 3, 0, SYN, 5, MSS(1460))             # 24 bytes that look like a SYN
    if proto in (50, 51):
        # ESP (SPI, sequence, then ciphertext) or AH (next header TCP, length, SPI, sequence,
        # ICV) in front of bytes shaped like a SYN: opaque to both, left alone.
        head = struct.pack("!II", 0x1234, 1) if proto == 50 else struct.pack("!BBHII", 6, 4, 0, 0x1234, 1) + b"\0" * 12
        body = head + body
    if proto == 17:
        body = with_l4_csum(fam, src, dst, 17, struct.pack("!HHHH", 5353, 80, 8 + len(body), 0) + body)
    elif proto == 1:
        b = bytearray(b"\x08\0\0\0\0\x01\0\x01" + body)
        b[2:4] = struct.pack("!H", csum(bytes(b)))
        body = bytes(b)
    elif proto == 58:
        b = bytearray(b"\x80\0\0\0\0\x01\0\x01" + body)
        b[2:4] = struct.pack("!H", csum(pseudo(6, src, dst, 58, len(b)) + bytes(b)))
        body = bytes(b)
    if fam == 4:
        return ipv4(src, dst, proto, body, KEY4_BASE + idx), b""
    return ipv6(src, dst, proto, body, KEY6_BASE + idx), b""


def _csum_at(pkt, off):
    return struct.unpack("!H", pkt[off:off + 2])[0]


def aim_tcp_csum(fam, group, idx, sport, opts, want):
    """A SYN whose TCP checksum after the kernel's clamp/insert is `want`. The checksum is
    linear in the window field: with window 0 the result is c0, and adding w to the sum
    moves it to ~(~c0 + w); solve for w, then verify through the model."""
    g = GROUPS[group]
    target = (g["mss4"], g["mss6"])
    pkt, _ = tcp_packet(fam, group, idx, sport, opts=opts, win=0)
    _, out, _ = kernel_model(pkt, target)
    l4 = Ip(out).l4
    base = (~_csum_at(out, l4 + 16) & 0xFFFF)          # the folded sum, window 0
    w = ((~want & 0xFFFF) - base) % 0xFFFF
    for win in (w, w + 0xFFFF if w == 0 else w):
        pkt, tail = tcp_packet(fam, group, idx, sport, opts=opts, win=win)
        _, out, _ = kernel_model(pkt, target)
        if _csum_at(out, l4 + 16) == want and tcp_csum_ok(out):
            return pkt, tail
    raise ValueError("no window gives checksum %#x" % want)


def input_ffff(fam, group, idx, sport, opts):
    """A SYN whose correct TCP checksum is 0x0000, sent as 0xFFFF (the other zero)."""
    pkt, _ = tcp_packet(fam, group, idx, sport, opts=opts, win=0)
    l4 = Ip(pkt).l4
    w = (0 - (~_csum_at(pkt, l4 + 16) & 0xFFFF)) % 0xFFFF
    pkt, tail = tcp_packet(fam, group, idx, sport, opts=opts, win=w)
    if _csum_at(pkt, l4 + 16) != 0:
        raise ValueError("window %d does not give checksum 0" % w)
    b = bytearray(pkt)
    b[l4 + 16:l4 + 18] = b"\xff\xff"
    assert tcp_csum_ok(bytes(b))
    return bytes(b), tail


def aim_ip_csum(idx, sport):
    """An IPv4 SYN without MSS whose IP header checksum after insertion is 0x0000: TTL and
    TOS are chosen to move the header sum there."""
    target = (GROUPS["A"]["mss4"], GROUPS["A"]["mss6"])
    pkt, _ = tcp_packet(4, "A", idx, sport, opts=b"", ttl=64, tos=0)
    _, out, _ = kernel_model(pkt, target)
    need = _csum_at(out, 10)                     # what the sum still lacks to reach 0xFFFF
    for ttl in range(1, 256):
        tos = (need - (ttl - 64) * 256) % 0xFFFF
        if tos > 255:
            continue
        pkt, tail = tcp_packet(4, "A", idx, sport, opts=b"", ttl=ttl, tos=tos)
        _, out, _ = kernel_model(pkt, target)
        if out[10:12] == b"\0\0" and ipv4_hdr_ok(out):
            return pkt, tail
    raise ValueError("no TTL/TOS gives IP checksum 0")


# ---- pcap -----------------------------------------------------------------------------
LINKTYPE_RAW = 101
LINKTYPE_ETHERNET = 1


def write_pcap(path, packets, linktype=LINKTYPE_RAW):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
        for n, p in enumerate(packets):
            f.write(struct.pack("<IIII", 1700000000 + n, 0, len(p), len(p)) + p)


def read_pcap(path):
    """(linktype, [records]) of a classic pcap file, either byte order, µs or ns."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise ValueError("%s: too short for a pcap file" % path)
    magic = struct.unpack("<I", data[:4])[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        e = "<"
    elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
        e = ">"
    else:
        raise ValueError("%s: not a classic pcap file (magic %#x)" % (path, magic))
    linktype = struct.unpack(e + "I", data[20:24])[0] & 0xFFFF
    recs, off = [], 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(e + "IIII", data[off:off + 16])
        if off + 16 + incl > len(data):
            raise ValueError("%s: record cut short" % path)
        recs.append(data[off + 16:off + 16 + incl])
        off += 16 + incl
    if off != len(data):
        raise ValueError("%s: trailing bytes" % path)
    return linktype, recs


def main(argv):
    if len(argv) >= 2 and argv[1] == "config":
        print("SRC4=%s SRC6=%s PREFIX4=%d PREFIX6=%d" % (SRC4, SRC6, PREFIX4, PREFIX6))
        print("DIFF_GROUPS='%s'" % " ".join(sorted(GROUPS)))
        for g, v in sorted(GROUPS.items()):
            print("DST4_%s=%s DST6_%s=%s MSS4_%s=%d MSS6_%s=%d" % (g, v["dst4"], g, v["dst6"], g, v["mss4"], g, v["mss6"]))
        return 0
    if len(argv) == 3 and argv[1] == "generate":
        out = argv[2]
        os.makedirs(os.path.join(out, "case"), exist_ok=True)
        cases = build_cases()
        with open(os.path.join(out, "cases.json"), "w") as f:
            json.dump({"groups": GROUPS, "src4": SRC4, "src6": SRC6, "sentinel": SENTINEL.hex(),
                       "cases": cases}, f, indent=0)
        for g in GROUPS:
            write_pcap(os.path.join(out, "in-%s.pcap" % g),
                       [bytes.fromhex(c["input"]) for c in cases if c["group"] == g])
        for c in cases:
            write_pcap(os.path.join(out, "case", c["name"] + ".pcap"), [bytes.fromhex(c["input"])])
        counts = {}
        for c in cases:
            counts[c["expect"]] = counts.get(c["expect"], 0) + 1
        print("generated %d cases: %s" % (len(cases), ", ".join("%s %d" % kv for kv in sorted(counts.items()))))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
