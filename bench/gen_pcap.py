#!/usr/bin/python3
"""Writes a large Ethernet pcap for bench/pcap_bench.sh: COUNT records of a realistic mix.

Per 100 records: 2 SYN/SYN-ACK with MSS 1460 (the SYN-ACK IPv6 half the time), 8 full
1514-byte data frames, 49 pure ACKs, 30 mid-size data segments (100-500 bytes), 8 UDP
datagrams, 3 ICMP. Packets are a few dozen precomputed templates (valid checksums) written
with struct in a loop, so millions of records take seconds, not the hours scapy would.

  /usr/bin/python3 bench/gen_pcap.py OUT.pcap [COUNT]
"""
import random
import struct
import sys


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(">%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


SRC4, DST4 = bytes([192, 168, 1, 10]), bytes([203, 0, 113, 80])
SRC6 = bytes.fromhex("20010db8000000000000000000000010")
DST6 = bytes.fromhex("20010db8000000000000000000000080")
ETH = bytes.fromhex("020000000001" "0200000000fe")


def tcp(src, dst, sport, dport, flags, payload, opts=b"", v6=False):
    hl = 20 + len(opts)
    hdr = struct.pack(">HHIIBBHHH", sport, dport, 1000, 2000, (hl // 4) << 4, flags, 65535, 0, 0) + opts
    seg = hdr + payload
    pseudo = src + dst + (struct.pack(">I3xB", len(seg), 6) if v6 else struct.pack(">xBH", 6, len(seg)))
    c = csum(pseudo + seg)
    return seg[:16] + struct.pack(">H", c) + seg[18:]


def ip4(proto, l4):
    hdr = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0x4000, 64, proto, 0, SRC4, DST4)
    hdr = hdr[:10] + struct.pack(">H", csum(hdr)) + hdr[12:]
    return ETH + b"\x08\x00" + hdr + l4


def ip6(proto, l4):
    return ETH + b"\x86\xdd" + struct.pack(">IHBB16s16s", 0x60000000, len(l4), proto, 64, SRC6, DST6) + l4


def udp(payload):
    seg = struct.pack(">HHHH", 5353, 53, 8 + len(payload), 0) + payload
    c = csum(SRC4 + DST4 + struct.pack(">xBH", 17, len(seg)) + seg)
    return seg[:6] + struct.pack(">H", c) + seg[8:]


def icmp_echo(n):
    msg = struct.pack(">BBHHH", 8, 0, 0, 7, n) + b"p" * 56
    return msg[:2] + struct.pack(">H", csum(msg)) + msg[4:]


MSS_OPTS = bytes.fromhex("020405b4" "0402" "080a000000010000" "01" "030307")  # MSS 1460, SACK, TS, WS


def block(rng):
    """100 records in a shuffled order."""
    recs = [ip4(6, tcp(SRC4, DST4, 40000, 443, 0x02, b"", MSS_OPTS)),
            ip6(6, tcp(SRC6, DST6, 443, 40001, 0x12, b"", MSS_OPTS, v6=True)) if rng.random() < 0.5
            else ip4(6, tcp(DST4, SRC4, 443, 40000, 0x12, b"", MSS_OPTS))]
    recs += [ip4(6, tcp(DST4, SRC4, 443, 40000, 0x10, b"x" * 1460))] * 8
    recs += [ip4(6, tcp(SRC4, DST4, 40000, 443, 0x10, b""))] * 49
    recs += [ip4(6, tcp(SRC4, DST4, 40000, 443, 0x18, b"y" * rng.randrange(100, 500))) for _ in range(30)]
    recs += [ip4(17, udp(b"q" * rng.randrange(30, 400))) for _ in range(8)]
    recs += [ip4(1, icmp_echo(i)) for i in range(3)]
    rng.shuffle(recs)
    return recs


def main():
    out = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 2_500_000
    rng = random.Random(1)  # fixed: the same file every run
    templates = [r for _ in range(20) for r in block(rng)]  # 2000 records, then repeated
    pack = struct.Struct("<IIII").pack
    with open(out, "wb", buffering=1 << 22) as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        w = f.write
        n_t = len(templates)
        for i in range(count):
            rec = templates[i % n_t]
            w(pack(1700000000 + i // 100000, (i % 100000) * 10, len(rec), len(rec)))
            w(rec)
    print(f"{out}: {count} records")


if __name__ == "__main__":
    main()
