#!/usr/bin/python3
"""Captures for test_clamp_cli.sh, and the independent checker of tunshim clamp's output.

  gen DIR LINK…       writes DIR/LINK/in.pcap and DIR/LINK/manifest.json (per record: link
                      header length and what tunshim must do with it)
  check DIR OUT MSS4 MSS6 [JSON]
                      compares DIR/in.pcap with OUT record by record; with JSON (the file
                      holding `tunshim clamp --json` output) also compares the counters.
                      Prints one line per problem, exits 1 if there is any.

Packets are built with scapy; link headers and the pcap container are packed here with
struct, so the exact link-type values (12, 14, 101, 0 in either byte order, …) are under
the test's control. Checksums are verified with an own RFC 1071 sum, not scapy's.
"""
import json
import os
import struct
import sys


def load_scapy():
    """Imports scapy (a second per process) only for `gen`: the checker never needs it."""
    import scapy.all as sa
    for name in ("ARP", "IP", "UDP", "IPv6", "IPv6ExtHdrFragment", "TCP", "Ether", "Raw"):
        globals()[name] = getattr(sa, name)


# ---- packets ------------------------------------------------------------------------

V4 = dict(src="198.51.100.1", dst="203.0.113.2")
V6 = dict(src="2001:db8::1", dst="2001:db8::2")
FULL_OPTS = [("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None), ("WScale", 7)]


def syn4(mss, flags="S"):
    opts = ([("MSS", mss)] if mss else []) + FULL_OPTS
    return bytes(IP(**V4, id=7) / TCP(sport=40000, dport=443, flags=flags, seq=1, ack=5 if "A" in flags else 0, options=opts))


def syn6(mss, flags="S"):
    opts = ([("MSS", mss)] if mss else []) + FULL_OPTS
    return bytes(IPv6(**V6) / TCP(sport=40001, dport=443, flags=flags, seq=1, ack=5 if "A" in flags else 0, options=opts))


def data4():
    return bytes(IP(**V4) / TCP(sport=40000, dport=443, flags="PA", seq=2, ack=6) / Raw(b"d" * 300))


def udp6():
    return bytes(IPv6(**V6) / UDP(sport=5353, dport=53) / Raw(b"q" * 30))


def is_syn_ack(ip):
    """True for an IPv4/IPv6 TCP packet (no extension headers) with SYN and ACK set."""
    v6 = ip[0] >> 4 == 6
    if (ip[6] if v6 else ip[9]) != 6:
        return False
    l4 = 40 if v6 else (ip[0] & 15) * 4
    return ip[l4 + 13] & 0x12 == 0x12


def bare_syn4():
    """A SYN without any option: 40 bytes, Ethernet pads it (insertion shifts the padding)."""
    return bytes(IP(**V4, id=9) / TCP(sport=40002, dport=22, flags="S", seq=1))


def frag6_syn():
    """An IPv6 SYN that is a later fragment: never touched."""
    return bytes(IPv6(**V6) / IPv6ExtHdrFragment(nh=6, offset=2, m=0, id=1) / Raw(bytes(TCP(flags="S", options=[("MSS", 1460)]))))


# Kinds: "clamp" (MSS lowered to target), "insert" (MSS option inserted), "same"
# (byte-identical); "counter" says which counter of --json it lands in.
def mix(v4=True, v6=True):
    recs = []
    if v4:
        recs += [(syn4(1460), "clamp", "clamped"),
                 (syn4(1460, "SA"), "clamp", "clamped"),
                 (syn4(1200), "same", "unchanged"),
                 (syn4(0), "insert", "inserted"),
                 (data4(), "same", "not_syn")]
    if v6:
        recs += [(syn6(1440), "clamp", "clamped"),
                 (syn6(1440, "SA"), "clamp", "clamped"),
                 (syn6(0), "insert", "inserted"),
                 (udp6(), "same", "not_tcp"),
                 (frag6_syn(), "same", "fragment")]
    return recs


# ---- link layers ----------------------------------------------------------------------

MAC_A, MAC_B = b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02"


def ethertype(ip):
    return 0x0800 if ip[0] >> 4 == 4 else 0x86DD


def ppp_proto(ip):
    return 0x0021 if ip[0] >> 4 == 4 else 0x0057


def eth(tags=()):
    def wrap(ip):
        hdr = MAC_A + MAC_B
        for tpid, vid in tags:
            hdr += struct.pack(">HH", tpid, vid)
        return hdr + struct.pack(">H", ethertype(ip)), ip, b""
    return wrap


def sll(ip):
    return struct.pack(">HHH8sH", 0, 1, 6, MAC_A + b"\0\0", ethertype(ip)), ip, b""


def sll2(ip):
    return struct.pack(">HHIHBB8s", ethertype(ip), 0, 3, 1, 0, 6, MAC_A + b"\0\0"), ip, b""


def null(order, af6):
    def wrap(ip):
        return struct.pack(order + "I", 2 if ip[0] >> 4 == 4 else af6), ip, b""
    return wrap


def ppp(ff03, compressed=False):
    def wrap(ip):
        proto = ppp_proto(ip)
        hdr = (b"\xff\x03" if ff03 else b"") + (bytes([proto]) if compressed else struct.pack(">H", proto))
        return hdr, ip, b""
    return wrap


def pppoe_hdr(ip):
    return struct.pack(">BBHHH", 0x11, 0, 0x1234, len(ip) + 2, ppp_proto(ip))


def raw(ip):
    return b"", ip, b""


# name: (pcap link type, encapsulation, IPv4?, IPv6?, extra non-IP records)
LCP = b"\xff\x03\xc0\x21\x01\x01\x00\x04"
# An ARP request, as scapy would build it (kept literal so the table needs no scapy).
ARP_FRAME = bytes.fromhex("ffffffffffff020000000001080600010800060400010200000000" "01c6336401000000000000c6336409")
LINKS = {
    "raw101": (101, raw, True, True, []),
    "raw12": (12, raw, True, True, []),
    "raw14": (14, raw, True, True, []),
    "ipv4": (228, raw, True, False, []),
    "ipv6": (229, raw, False, True, []),
    "en10mb": (1, eth(), True, True, [ARP_FRAME]),
    "vlan": (1, eth([(0x8100, 100)]), True, True, [ARP_FRAME]),
    "qinq": (1, eth([(0x88A8, 10), (0x8100, 100)]), True, True, []),
    "pppoe": (1, lambda ip: (MAC_A + MAC_B + b"\x88\x64" + pppoe_hdr(ip), ip, b""), True, True, []),
    "sll": (113, sll, True, True, []),
    "sll2": (276, sll2, True, True, []),
    "null_le": (0, null("<", 30), True, True, [struct.pack("<I", 7) + b"\0" * 40]),
    "null_be": (0, null(">", 24), True, True, []),
    "loop": (108, null(">", 28), True, True, [struct.pack(">I", 7) + b"\0" * 40]),
    "ppp_ff03": (9, ppp(True), True, True, [LCP]),
    "ppp_bare": (9, ppp(False), True, True, []),
    "ppp_pfc": (9, ppp(False, True), True, True, []),
    "ppp_serial": (50, ppp(True), True, True, []),
    "ppp_ether": (51, lambda ip: (pppoe_hdr(ip), ip, b""), True, True, []),
}


def write_pcap(path, linktype, records, snaplen=65535, nano=False):
    """records: list of (data, wire_len)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D if nano else 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype))
        for i, (data, wire) in enumerate(records):
            f.write(struct.pack("<IIII", 1700000000 + i, 123456789 if nano else 123456, len(data), wire))
            f.write(data)


def read_pcap(path):
    with open(path, "rb") as f:
        blob = f.read()
    magic = struct.unpack("<I", blob[:4])[0]
    order = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    magic, _, _, _, _, snaplen, linktype = struct.unpack(order + "IHHiIII", blob[:24])
    recs, off = [], 24
    while off < len(blob):
        sec, frac, incl, wire = struct.unpack(order + "IIII", blob[off:off + 16])
        recs.append(((sec, frac), blob[off + 16:off + 16 + incl], wire))
        off += 16 + incl
    return {"magic": magic, "snaplen": snaplen, "linktype": linktype, "records": recs}


def entry(link, hdr, kind, counter, syn_ack=False):
    """A manifest line: link header length, expected action, counter, PPPoE length field."""
    e = {"l2": len(hdr), "kind": kind, "counter": counter, "syn_ack": syn_ack}
    if link in ("pppoe", "ppp_ether"):
        e["len_field"] = len(hdr) - 4
    return e


def gen(link, d):
    if link == "nano":   # nanosecond timestamps survive
        linktype, wrap, v4, v6, extra = LINKS["en10mb"]
    else:
        linktype, wrap, v4, v6, extra = LINKS[link]
    records, manifest = [], []
    for ip, kind, counter in mix(v4, v6):
        hdr, ip, trailer = wrap(ip)
        records.append((hdr + ip + trailer, len(hdr + ip + trailer)))
        manifest.append(entry(link, hdr, kind, counter, is_syn_ack(ip)))
    for frame in extra:
        records.append((frame, len(frame)))
        manifest.append({"l2": 0, "kind": "same", "counter": "not_ip"})
    if linktype in (1, 12, 101):
        # A truncated SYN (caplen < len) must pass unchanged, and a padded Ethernet SYN
        # gets its MSS inserted with the padding kept.
        hdr, ip, _ = wrap(syn4(1460))
        full = hdr + ip
        records.append((full[:len(hdr) + 30], len(full)))
        manifest.append(entry(link, hdr, "same", "truncated"))
        hdr, ip, _ = wrap(bare_syn4())
        pad = b"\0" * max(0, 60 - len(hdr + ip)) if linktype == 1 else b""
        records.append((hdr + ip + pad, len(hdr + ip + pad)))
        manifest.append(dict(entry(link, hdr, "insert", "inserted"), pad=len(pad)))
    os.makedirs(d, exist_ok=True)
    write_pcap(os.path.join(d, "in.pcap"), linktype, records, nano=(link == "nano"))
    with open(os.path.join(d, "manifest.json"), "w") as f:
        json.dump({"link": link, "records": manifest}, f)


# ---- checking -------------------------------------------------------------------------

def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(">%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def tcp_ok(ip):
    """(TCP segment, checksum verifies) for an IPv4/IPv6 packet carrying TCP directly."""
    if ip[0] >> 4 == 4:
        ihl = (ip[0] & 15) * 4
        total = struct.unpack(">H", ip[2:4])[0]
        seg = ip[ihl:total]
        pseudo = ip[12:20] + struct.pack(">BBH", 0, 6, len(seg))
        return seg, csum(pseudo + seg) == 0xFFFF and csum(ip[:ihl]) == 0xFFFF
    plen = struct.unpack(">H", ip[4:6])[0]
    seg = ip[40:40 + plen]
    pseudo = ip[8:40] + struct.pack(">IxxxB", len(seg), 6)
    return seg, csum(pseudo + seg) == 0xFFFF


def mss_of(seg):
    hl = (seg[12] >> 4) * 4
    i = 20
    while i < hl:
        kind = seg[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        ln = seg[i + 1]
        if kind == 2 and ln == 4:
            return struct.unpack(">H", seg[i + 2:i + 4])[0], i
        if ln < 2:
            break
        i += ln
    return None, None


def check(d, out_path, mss4, mss6, json_path=None):
    problems = []
    with open(os.path.join(d, "manifest.json")) as f:
        man = json.load(f)["records"]
    a, b = read_pcap(os.path.join(d, "in.pcap")), read_pcap(out_path)
    raw_types = {12, 14, 101}
    same_link = a["linktype"] == b["linktype"] or (a["linktype"] in raw_types and b["linktype"] == 101)
    if not same_link:
        problems.append(f"link type {a['linktype']} became {b['linktype']}")
    if a["snaplen"] != b["snaplen"] or a["magic"] != b["magic"]:
        problems.append(f"header changed: snaplen {a['snaplen']}->{b['snaplen']} magic {a['magic']:#x}->{b['magic']:#x}")
    if len(a["records"]) != len(b["records"]) or len(man) != len(a["records"]):
        problems.append(f"record count {len(a['records'])} -> {len(b['records'])} (manifest {len(man)})")
        return problems
    expect = {}
    for n, (m, (ts_a, da, wa), (ts_b, db, wb)) in enumerate(zip(man, a["records"], b["records"])):
        expect[m["counter"]] = expect.get(m["counter"], 0) + 1
        where = f"record {n} ({m['counter']})"
        if ts_a != ts_b:
            problems.append(f"{where}: timestamp {ts_a} -> {ts_b}")
        if m["kind"] == "same":
            if da != db or wa != wb:
                problems.append(f"{where}: not byte-identical")
            continue
        l2 = m["l2"]
        grow = 4 if m["kind"] == "insert" else 0
        if len(db) != len(da) + grow or wb != wa + grow:
            problems.append(f"{where}: length {len(da)}/{wa} -> {len(db)}/{wb}, expected +{grow}")
            continue
        hdr_a, hdr_b = bytearray(da[:l2]), bytearray(db[:l2])
        if "len_field" in m:  # the PPPoE length field grows with the packet
            at = m["len_field"]
            hdr_a[at:at + 2] = struct.pack(">H", struct.unpack(">H", hdr_a[at:at + 2])[0] + grow)
        if hdr_a != hdr_b:
            problems.append(f"{where}: link header changed: {bytes(hdr_a).hex()} -> {bytes(hdr_b).hex()}")
        ip = db[l2:]
        v6 = ip[0] >> 4 == 6
        target = mss6 if v6 else mss4
        seg, ok = tcp_ok(ip)
        if not ok:
            problems.append(f"{where}: TCP/IP checksum does not verify")
        mss, _ = mss_of(seg)
        want = target if m["kind"] == "clamp" else min(target, 1220 if v6 else 536)
        if mss != want:
            problems.append(f"{where}: MSS {mss}, expected {want}")
        seg_a, _ = tcp_ok(da[l2:])
        if m["kind"] == "clamp":
            _, at = mss_of(seg_a)
            # Everything but the MSS value and the TCP checksum is unchanged.
            strip = lambda s: s[:16] + s[18:at + 2] + s[at + 4:]
            if strip(seg_a) != strip(seg) or da[l2:l2 + (40 if v6 else 20)] != ip[:(40 if v6 else 20)]:
                problems.append(f"{where}: bytes other than the MSS changed")
        if m.get("pad") and db[-m["pad"]:] != b"\0" * m["pad"]:
            problems.append(f"{where}: Ethernet padding lost")
    if json_path:
        with open(json_path) as f:
            got = json.load(f)
        expect["packets"] = expect["written"] = len(man)
        expect["syn"] = sum(expect.get(k, 0) for k in ("clamped", "inserted", "unchanged", "no_room"))
        expect["mss4"], expect["mss6"] = mss4, mss6
        for key in ("packets", "written", "syn", "syn_ack", "clamped", "inserted", "unchanged", "no_room",
                    "malformed", "not_syn", "not_tcp", "fragment", "not_ip", "truncated", "mss4", "mss6"):
            if key not in got:
                problems.append(f"--json lacks {key}")
            elif key != "syn_ack" and got[key] != expect.get(key, 0):
                problems.append(f"--json {key} = {got[key]}, expected {expect.get(key, 0)}")
        want_sa = sum(1 for m in man if m.get("syn_ack"))
        if got.get("syn_ack") != want_sa:
            problems.append(f"--json syn_ack = {got.get('syn_ack')}, expected {want_sa}")
    return problems


def main():
    if sys.argv[1] == "gen":
        load_scapy()
        for link in sys.argv[3:]:
            gen(link, os.path.join(sys.argv[2], link))
        return 0
    if sys.argv[1] == "check":
        problems = check(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]),
                         sys.argv[6] if len(sys.argv) > 6 else None)
        for p in problems:
            print(p)
        return 1 if problems else 0
    if sys.argv[1] == "links":
        print(" ".join(LINKS) + " nano")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
