#!/usr/bin/env python3
"""Writes the seed corpora of the io harnesses (nfqueue_msg, rtnl_msg, icmp_reply), built by
hand from the kernel's formats (linux/netfilter/nfnetlink_queue.h, linux/rtnetlink.h,
RFC 792/4443), so they are reproducible: python3 tests/fuzz/make_seeds.py"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def put(name, sub, data):
    d = os.path.join(HERE, "corpus", sub)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def align4(b):
    return b + b"\0" * (-len(b) % 4)


def nla(t, payload):
    return align4(struct.pack("=HH", 4 + len(payload), t) + payload)


def nlmsg(t, payload, flags=0, seq=0, pid=0):
    return align4(struct.pack("=IHHII", 16 + len(payload), t, flags, seq, pid) + payload)


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src, dst, proto, payload, df=True, ttl=64):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0x4000 if df else 0, ttl,
                    proto, 0, bytes(src), bytes(dst))
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload


def ipv6(src, dst, nh, payload):
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), nh, 64, bytes(src), bytes(dst)) + payload


def syn(mss=1460):
    return struct.pack("!HHIIBBHHHBBH", 40000, 80, 1, 0, 6 << 4, 0x02, 64240, 0, 0, 2, 4, mss)


C4, S4 = [172, 30, 0, 1], [172, 30, 0, 2]
C6 = [0xfd, 0x77, 0, 0x30] + [0] * 11 + [1]
S6 = [0xfd, 0x77, 0, 0x30] + [0] * 11 + [2]

IDENT, SEQ, NONCE = 0x4242, 0x0107, bytes(range(1, 9))


def echo(t, size_payload=32):
    return struct.pack("!BBHHH", t, 0, 0, IDENT, SEQ) + NONCE + bytes(size_payload)


# ---- NFQUEUE packet messages (NFQNL_MSG_PACKET = 0, subsystem 3) -------------------------
NFQ_PACKET = (3 << 8) | 0
NFQA_PACKET_HDR, NFQA_IFINDEX_INDEV, NFQA_IFINDEX_OUTDEV, NFQA_PAYLOAD, NFQA_CAP_LEN = 1, 4, 5, 10, 17
NF_PRE, NF_POST = 0, 4


def nfq_packet(pid, hook, payload, indev=0, outdev=0, cap_len=None):
    body = struct.pack("=BBH", 2, 0, struct.unpack("=H", struct.pack("!H", 4770))[0])
    body += nla(NFQA_PACKET_HDR, struct.pack("!IHB", pid, 0x0800, hook) + b"\0")
    if indev:
        body += nla(NFQA_IFINDEX_INDEV, struct.pack("!I", indev))
    if outdev:
        body += nla(NFQA_IFINDEX_OUTDEV, struct.pack("!I", outdev))
    if cap_len is not None:
        body += nla(NFQA_CAP_LEN, struct.pack("!I", cap_len))
    body += nla(NFQA_PAYLOAD, payload)
    return nlmsg(NFQ_PACKET, body)


out_syn = ipv4(C4, S4, 6, syn())
put("syn_out", "nfqueue_msg", nfq_packet(7, NF_POST, out_syn, outdev=5))
put("synack_in", "nfqueue_msg", nfq_packet(8, NF_PRE, ipv4(S4, C4, 6, syn(1400)), indev=5))
put("syn6_out", "nfqueue_msg", nfq_packet(9, NF_POST, ipv6(C6, S6, 6, syn()), outdev=5))
put("truncated_copy", "nfqueue_msg", nfq_packet(10, NF_POST, out_syn[:40], outdev=5, cap_len=60))
# A probe of odd size queued by the guard rule: the kernel does not pad the last attribute,
# so the message length is not a multiple of 4.
odd = nfq_packet(11, NF_POST, ipv4(C4, S4, 1, echo(8, 1409 - 36)), outdev=5)[:-3]
put("odd_payload", "nfqueue_msg", struct.pack("=I", len(odd)) + odd[4:])
put("burst", "nfqueue_msg", b"".join(nfq_packet(i, NF_POST, out_syn, outdev=5) for i in range(20, 24)))
err = struct.pack("=i", -2) + struct.pack("=IHHII", 32, (3 << 8) | 1, 0, 1, 0)
put("error_enoent", "nfqueue_msg", nlmsg(2, err))
put("no_packet_hdr", "nfqueue_msg", nlmsg(NFQ_PACKET, struct.pack("=BBH", 2, 0, 0) + nla(NFQA_PAYLOAD, out_syn)))

# ---- rtnetlink (RTM_NEWLINK 16, RTM_DELLINK 17, RTM_NEWADDR 20, RTM_DELADDR 21) --------
IFLA_IFNAME, IFLA_MTU, IFLA_STATS, IFLA_STATS64 = 3, 4, 7, 23


def ifinfo(index, flags):
    return struct.pack("=BxHiII", 0, 65534, index, flags, 0xFFFFFFFF)


def link(t, index, name, mtu=1500, flags=0x11 | 0x40 | 0x10000, stats64=True):
    body = ifinfo(index, flags) + nla(IFLA_IFNAME, name + b"\0") + nla(IFLA_MTU, struct.pack("=I", mtu))
    if stats64:
        body += nla(IFLA_STATS64, struct.pack("=24Q", 120, 80, 9000, 7000, *([0] * 20)))
    else:
        body += nla(IFLA_STATS, struct.pack("=24I", 12, 8, 900, 700, *([0] * 20)))
    return nlmsg(t, body)


def addr(t, index, a):
    body = struct.pack("=BBBBI", 2, 30, 0, 0, index) + nla(1, bytes(a)) + nla(2, bytes(a))
    return nlmsg(t, body)


put("newlink", "rtnl_msg", link(16, 5, b"ppp0"))
put("dellink", "rtnl_msg", link(17, 5, b"ppp0", flags=0))
put("newlink_stats32", "rtnl_msg", link(16, 6, b"tun0", mtu=1400, stats64=False))
put("newaddr", "rtnl_msg", addr(20, 5, C4))
put("deladdr", "rtnl_msg", addr(21, 5, C4))
put("burst", "rtnl_msg", link(16, 5, b"ppp0") + addr(20, 5, C4) + link(16, 7, b"wg0", mtu=1420))
put("name_unterminated", "rtnl_msg", nlmsg(16, ifinfo(5, 1) + nla(IFLA_IFNAME, b"ppp0")))

# ---- ICMP read by the prober ------------------------------------------------------------
# Input of fuzz_icmp_reply: family (4 or 6), perturbation flags, the probe's size (2 bytes,
# big-endian), then the datagram as the raw socket returns it (IPv4: from the IP header;
# IPv6: from the ICMPv6 header). Flags 0x10: the socket's sender is the target.
def icmp4(t, code, rest, payload):
    m = struct.pack("!BBH", t, code, 0) + rest + payload
    return m[:2] + struct.pack("!H", csum(m)) + m[4:]


probe4 = ipv4(C4, S4, 1, echo(8))
put("v4_echo_reply", "icmp_reply", b"\x04\x10\x00\x44" + ipv4(S4, C4, 1, icmp4(0, 0, struct.pack("!HH", IDENT, SEQ), NONCE + bytes(32))))
put("v4_frag_needed", "icmp_reply", b"\x04\x10\x00\x44" + ipv4([10, 77, 1, 254], C4, 1, icmp4(3, 4, struct.pack("!HH", 0, 1372), probe4)))
put("v4_frag_needed_short_quote", "icmp_reply", b"\x04\x10\x00\x44" + ipv4([10, 77, 1, 254], C4, 1, icmp4(3, 4, struct.pack("!HH", 0, 0), probe4[:28])))
put("v4_port_unreach", "icmp_reply", b"\x04\x10\x00\x44" + ipv4(S4, C4, 1, icmp4(3, 3, bytes(4), probe4)))
probe6 = ipv6(C6, S6, 58, echo(128))
put("v6_echo_reply", "icmp_reply", b"\x06\x10\x00\x58" + echo(129))
put("v6_packet_too_big", "icmp_reply", b"\x06\x10\x00\x58" + struct.pack("!BBHI", 2, 0, 0, 1280) + probe6)
put("v6_packet_too_big_huge_mtu", "icmp_reply", b"\x06\x10\x00\x58" + struct.pack("!BBHI", 2, 0, 0, 0x10000) + probe6[:48])
