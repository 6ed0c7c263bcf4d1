#!/usr/bin/python3
"""Writes tests/data/sample.pcap: a small, deterministic Ethernet capture of a realistic
session mix for `tunshim clamp --mtu 1400 tests/data/sample.pcap OUT`.

IPv4 and IPv6 handshakes with MSS 1460/1440 (clamped), a SYN without MSS (an MSS gets
inserted), a SYN already below the target (unchanged), HTTP-ish data, a DNS query and
answer, ping and ping6, ARP. Run: /usr/bin/python3 tests/data/make_sample.py [OUT]
"""
import os
import sys

from scapy.all import (ARP, DNS, DNSQR, DNSRR, ICMP, IP, IPv6, ICMPv6EchoReply,
                       ICMPv6EchoRequest, TCP, UDP, Ether, Raw, wrpcap)

CLIENT_MAC, GW_MAC = "02:00:00:00:00:01", "02:00:00:00:00:fe"
C4, S4, DNS4 = "192.168.10.20", "203.0.113.80", "192.168.10.1"
C6, S6 = "2001:db8:10::20", "2001:db8:80::80"
OPTS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1000, 0)), ("NOP", None), ("WScale", 7)]


def out(p):
    return Ether(src=CLIENT_MAC, dst=GW_MAC) / p


def back(p):
    return Ether(src=GW_MAC, dst=CLIENT_MAC) / p


def tcp_session(ip_out, ip_back, sport, mss_syn, mss_synack, payloads):
    """Handshake, request, response in 1448-byte segments, FIN exchange."""
    c, s = 1000, 5000
    syn_opts = [("MSS", mss_syn)] + OPTS[1:] if mss_syn else [("SAckOK", b""), ("NOP", None), ("WScale", 7)]
    pkts = [
        out(ip_out / TCP(sport=sport, dport=80, flags="S", seq=c, options=syn_opts)),
        back(ip_back / TCP(sport=80, dport=sport, flags="SA", seq=s, ack=c + 1,
                           options=[("MSS", mss_synack), ("SAckOK", b""), ("WScale", 7)])),
        out(ip_out / TCP(sport=sport, dport=80, flags="A", seq=c + 1, ack=s + 1)),
    ]
    c += 1
    s += 1
    req = b"GET / HTTP/1.1\r\nHost: app.example\r\n\r\n"
    pkts.append(out(ip_out / TCP(sport=sport, dport=80, flags="PA", seq=c, ack=s) / Raw(req)))
    c += len(req)
    for n in payloads:
        pkts.append(back(ip_back / TCP(sport=80, dport=sport, flags="A", seq=s, ack=c) / Raw(b"x" * n)))
        s += n
    pkts.append(out(ip_out / TCP(sport=sport, dport=80, flags="A", seq=c, ack=s)))
    pkts.append(out(ip_out / TCP(sport=sport, dport=80, flags="FA", seq=c, ack=s)))
    pkts.append(back(ip_back / TCP(sport=80, dport=sport, flags="FA", seq=s, ack=c + 1)))
    return pkts


def main():
    dest = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "sample.pcap")
    v4o, v4b = IP(src=C4, dst=S4, id=1), IP(src=S4, dst=C4, id=2)
    v6o, v6b = IPv6(src=C6, dst=S6), IPv6(src=S6, dst=C6)
    pkts = [
        out(ARP(op=1, hwsrc=CLIENT_MAC, psrc=C4, pdst=DNS4)),
        back(ARP(op=2, hwsrc=GW_MAC, psrc=DNS4, hwdst=CLIENT_MAC, pdst=C4)),
        out(IP(src=C4, dst=DNS4) / UDP(sport=53001, dport=53) / DNS(rd=1, qd=DNSQR(qname="app.example"))),
        back(IP(src=DNS4, dst=C4) / UDP(sport=53, dport=53001) /
             DNS(qr=1, ra=1, qd=DNSQR(qname="app.example"), an=DNSRR(rrname="app.example", rdata=S4))),
        out(IP(src=C4, dst=S4) / ICMP(type=8, id=7, seq=1) / Raw(b"p" * 56)),
        back(IP(src=S4, dst=C4) / ICMP(type=0, id=7, seq=1) / Raw(b"p" * 56)),
    ]
    pkts += tcp_session(v4o, v4b, 40001, 1460, 1440, [1448, 1448, 612])      # both clamped
    pkts += [out(v6o / ICMPv6EchoRequest(id=9, seq=1)), back(v6b / ICMPv6EchoReply(id=9, seq=1))]
    pkts += tcp_session(v6o, v6b, 40002, 1440, 1440, [1428, 900])            # both clamped
    pkts += tcp_session(v4o, v4b, 40003, 0, 1460, [300])                     # MSS inserted
    pkts += tcp_session(v4o, v4b, 40004, 1200, 1200, [200])                  # already small
    for i, p in enumerate(pkts):
        p.time = 1700000000 + i * 0.0125
    wrpcap(dest, pkts)
    print(f"{dest}: {len(pkts)} packets")


if __name__ == "__main__":
    main()
