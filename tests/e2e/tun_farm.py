#!/usr/bin/env python3
"""A concentrator's sessions without a concentrator: TUN interfaces ppp0..pppN-1, each a
point-to-point link like a pppd session on an L2TP/PPTP server (the same local address on
every one, a peer address of its own), with this process as every peer. It answers ICMP
echo requests (tunshim's path-MTU probes) on all of them and drops everything else.

Each interface's MTU differs (mtu(i)), so each one's measured path MTU, and so its MSS
target, is its own. Creating the devices here (TUNSETIFF) instead of with `ip tuntap` makes
a thousand of them in well under a second; closing a device's descriptor deletes it.

Commands on stdin, one a line; each answers "ok ..." on stdout when done:
  create A B [BURST PAUSE]   create ppp{A..B-1}, BURST at a time with PAUSE s between
  churn SECONDS RATE LO HI   delete and re-create random interfaces of ppp{LO..HI-1},
                             RATE of each per second, for SECONDS; says how many, and
                             how many distinct interfaces
  quit
"""
import array
import errno
import fcntl
import os
import random
import select
import socket
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
SIOCSIFFLAGS = 0x8914
SIOCGIFFLAGS = 0x8913
SIOCSIFADDR = 0x8916
SIOCSIFDSTADDR = 0x8918
SIOCSIFNETMASK = 0x891C
SIOCSIFMTU = 0x8922
IFF_UP = 0x1

LOCAL = "10.64.0.1"


def peer(i):
    return "10.65.%d.%d" % (i // 250, i % 250 + 1)


def mtu(i):
    return 1300 + (i * 37) % 180


ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ep = select.epoll()
fds = {}  # index -> fd
by_fd = {}  # fd -> index
answered = 0


def ifreq_addr(name, addr):
    sa = struct.pack("HH4s8x", socket.AF_INET, 0, socket.inet_aton(addr))
    return struct.pack("16s16s8x", name.encode(), sa)


def create(i):
    name = "ppp%d" % i
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI))
    fcntl.ioctl(ctl, SIOCSIFMTU, struct.pack("16si20x", name.encode(), mtu(i)))
    fcntl.ioctl(ctl, SIOCSIFADDR, ifreq_addr(name, LOCAL))
    fcntl.ioctl(ctl, SIOCSIFNETMASK, ifreq_addr(name, "255.255.255.255"))
    fcntl.ioctl(ctl, SIOCSIFDSTADDR, ifreq_addr(name, peer(i)))
    flags = struct.unpack("16sH22x", fcntl.ioctl(ctl, SIOCGIFFLAGS, struct.pack("16sH22x", name.encode(), 0)))[1]
    fcntl.ioctl(ctl, SIOCSIFFLAGS, struct.pack("16sH22x", name.encode(), flags | IFF_UP))
    fds[i] = fd
    by_fd[fd] = i
    ep.register(fd, select.EPOLLIN)


def delete(i):
    fd = fds.pop(i)
    del by_fd[fd]
    ep.unregister(fd)
    os.close(fd)  # a non-persistent TUN device goes with its last descriptor


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(array.array("H", b))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def answer(fd):
    global answered
    while True:
        try:
            p = os.read(fd, 65535)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EBADF):
                return
            raise
        if len(p) < 28 or p[0] >> 4 != 4 or p[9] != 1:
            continue
        ihl = (p[0] & 0xF) * 4
        if len(p) < ihl + 8 or p[ihl] != 8:
            continue
        ip = bytearray(p[:ihl])
        ip[12:16], ip[16:20] = p[16:20], p[12:16]
        ip[8] = 64
        ip[10:12] = b"\0\0"
        ip[10:12] = struct.pack("=H", csum(bytes(ip)))
        icmp = bytearray(p[ihl:])
        icmp[0] = 0
        icmp[2:4] = b"\0\0"
        icmp[2:4] = struct.pack("=H", csum(bytes(icmp)))
        try:
            os.write(fd, bytes(ip) + bytes(icmp))
            answered += 1
        except OSError:
            pass


def serve(seconds):
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        for fd, _ in ep.poll(min(left, 0.05)):
            if fd in by_fd:
                answer(fd)


def main():
    inp = sys.stdin.fileno()
    os.set_blocking(inp, False)
    buf = b""
    while True:
        serve(0.02)
        try:
            chunk = os.read(inp, 4096)
        except BlockingIOError:
            continue
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            w = line.decode().split()
            if not w:
                continue
            t0 = time.monotonic()
            if w[0] == "create":
                a, b = int(w[1]), int(w[2])
                burst = int(w[3]) if len(w) > 3 else b - a
                pause = float(w[4]) if len(w) > 4 else 0.0
                for start in range(a, b, burst):
                    for i in range(start, min(b, start + burst)):
                        if i not in fds:
                            create(i)
                    if pause:
                        serve(pause)
                print("ok created %d in %.2f s" % (b - a, time.monotonic() - t0), flush=True)
            elif w[0] == "churn":
                secs, rate, lo, hi = float(w[1]), float(w[2]), int(w[3]), int(w[4])
                n = 0
                distinct = set()
                end = t0 + secs
                while time.monotonic() < end:
                    i = random.randrange(lo, hi)
                    if i in fds:
                        delete(i)
                    create(i)
                    n += 1
                    distinct.add(i)
                    serve(max(0.0, t0 + n / rate - time.monotonic()))
                print("ok churned %d in %.2f s, %d distinct" % (n, time.monotonic() - t0, len(distinct)),
                      flush=True)
            elif w[0] == "quit":
                print("ok quit answered=%d" % answered, flush=True)
                return


if __name__ == "__main__":
    main()
