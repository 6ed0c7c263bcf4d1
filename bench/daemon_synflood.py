#!/usr/bin/python3
"""SYN generator for bench/daemon_bench.sh: sends pure IPv4 SYNs (MSS option 1460, distinct
source ports) from a raw socket as fast as one Python thread can, for a bounded time.
Raw IP_HDRINCL packets traverse OUTPUT and POSTROUTING like any local packet, so they meet
the clamp rules on the way out. Prints one JSON line: {"sent": N, "seconds": S}."""
import argparse
import json
import socket
import struct
import time


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def syn(src: bytes, dst: bytes, sport: int, dport: int, mss: int) -> bytes:
    # TCP: ports, seq, ack, data offset 6 words (one 4-byte MSS option), SYN, window.
    tcp = struct.pack("!HHIIBBHHH", sport, dport, sport * 7919, 0, 6 << 4, 0x02, 64240, 0, 0)
    tcp += struct.pack("!BBH", 2, 4, mss)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    # IPv4 with DF; the kernel fills in the total length, the id and the header checksum.
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64,
                     socket.IPPROTO_TCP, 0, src, dst)
    return ip + tcp


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True)
    ap.add_argument("--dst", required=True)
    ap.add_argument("--dport", type=int, default=9)
    ap.add_argument("--mss", type=int, default=1460)
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args()
    src, dst = socket.inet_aton(a.src), socket.inet_aton(a.dst)
    pkts = [syn(src, dst, p, a.dport, a.mss) for p in range(1024, 65536)]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    addr = (a.dst, 0)
    send = s.sendto
    sent = 0
    t0 = time.monotonic()
    end = t0 + a.seconds
    while True:
        for i in range(0, len(pkts), 512):
            for p in pkts[i:i + 512]:
                try:
                    send(p, addr)
                    sent += 1
                except (BlockingIOError, OSError):
                    pass  # a full device queue: the packet never left, it is not counted
            if time.monotonic() >= end:
                break
        else:
            continue
        break
    print(json.dumps({"sent": sent, "seconds": time.monotonic() - t0}))


if __name__ == "__main__":
    main()
