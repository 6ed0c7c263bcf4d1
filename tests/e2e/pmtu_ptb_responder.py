#!/usr/bin/python3
"""A router that says "fragmentation needed" for the PMTU probe test.

Runs in the server namespace: every ICMP echo request arriving on IFACE whose total length
exceeds MTU is answered with an ICMP destination-unreachable / fragmentation-needed
(RFC 1191) carrying MTU and quoting the request (as much as RFC 1812 allows: 576 bytes of
error in all). The server's nft rule drops those requests, so they are never answered.

  pmtu_ptb_responder.py IFACE MTU good|badnonce|short

good      a faithful quote (tunshim must use it as a hint)
badnonce  the quote's first payload byte (the probe's nonce) altered: a forged error
          that guessed identifier and sequence (tunshim must ignore it)
short     only the IP header and 8 bytes of ICMP quoted (RFC 792 minimum: no nonce to
          check; tunshim must still accept it on identifier and sequence)

Prints "ready" once listening, then one line per error sent.
"""
import socket
import struct
import sys

ETH_P_IP = 0x0800
PACKET_OUTGOING = 4


def csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def main() -> None:
    iface, mtu, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    rx = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    rx.bind((iface, 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    print("ready", flush=True)
    while True:
        pkt, addr = rx.recvfrom(65535)
        if addr[2] == PACKET_OUTGOING or len(pkt) < 28 or pkt[0] >> 4 != 4 or pkt[9] != 1:
            continue
        ihl = (pkt[0] & 15) * 4
        total = struct.unpack("!H", pkt[2:4])[0]
        if pkt[ihl] != 8 or total <= mtu:
            continue
        if mode == "short":
            quote = bytearray(pkt[: ihl + 8])
        else:
            quote = bytearray(pkt[: 576 - 20 - 8])
        if mode == "badnonce":
            quote[ihl + 8] ^= 0xFF
        body = struct.pack("!BBHHH", 3, 4, 0, 0, mtu) + bytes(quote)
        body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
        src = socket.inet_ntoa(pkt[12:16])
        tx.sendto(body, (src, 0))
        print(f"frag-needed mtu {mtu} to {src} for {total} bytes ({mode})", flush=True)


if __name__ == "__main__":
    main()
