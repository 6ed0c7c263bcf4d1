#!/usr/bin/python3
"""The wire half of the differential test (tests/e2e/test_clamp_vs_kernel.sh).

  diff_wire.py send CASES.json RESULT.json
      In the sending namespace: hands every case's bytes, unchanged, to a raw IP socket
      (IPPROTO_RAW: the header is ours), so each packet crosses OUTPUT and POSTROUTING and
      meets the TCPMSS rule; then a sentinel UDP packet that tells the capture it is over.
      RESULT.json maps each case to "sent", or "EPERM" when a netfilter hook dropped it
      (the kernel's verdict, reported to the sender), or another error.
  diff_wire.py capture IFACE OUT.pcap READY TIMEOUT
      In the receiving namespace: records every frame arriving on IFACE (AF_PACKET, so
      nothing in the receiving stack filters or changes it) into OUT.pcap, touches READY
      once bound, and stops shortly after the sentinel or at TIMEOUT seconds.
"""
import json
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diff_cases as dc  # noqa: E402

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_RCVBUFFORCE = 33
SENTINEL_ID = 0xFFF0


def sentinel(src, dst):
    udp = dc.with_l4_csum(4, src, dst, 17, struct.pack("!HHHH", 9, 9, 8 + len(dc.SENTINEL), 0) + dc.SENTINEL)
    return dc.ipv4(src, dst, 17, udp, SENTINEL_ID)


def send(path, result_path):
    with open(path) as f:
        doc = json.load(f)
    s4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)  # implies IPV6_HDRINCL
    result, errors = {}, 0
    for c in doc["cases"]:
        pkt = bytes.fromhex(c["input"])
        try:
            if c["family"] == 4:
                n = s4.sendto(pkt, (c["dst"], 0))
            else:
                n = s6.sendto(pkt, (c["dst"], 0, 0, 0))
            result[c["name"]] = "sent" if n == len(pkt) else "short send: %d of %d" % (n, len(pkt))
        except PermissionError:
            result[c["name"]] = "EPERM"          # NF_DROP on the output path
        except OSError as e:
            result[c["name"]] = str(e)
        if result[c["name"]] not in ("sent", "EPERM"):
            errors += 1
            print("send %s: %s" % (c["name"], result[c["name"]]), file=sys.stderr)
    s4.sendto(sentinel(doc["src4"], doc["groups"]["A"]["dst4"]), (doc["groups"]["A"]["dst4"], 0))
    with open(result_path, "w") as f:
        json.dump(result, f, indent=0)
    dropped = sum(1 for v in result.values() if v == "EPERM")
    print("sent %d cases: %d left the socket, %d dropped by netfilter (EPERM), %d other errors"
          % (len(result), len(result) - dropped - errors, dropped, errors))
    return 1 if errors else 0


def capture(iface, out, ready, timeout):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
    s.bind((iface, 0))
    # Drop what queued between socket() and bind() from other interfaces: none here, but
    # the counter below must start at zero for this capture.
    s.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
    open(ready, "w").close()
    frames, end, seen_end = [], time.monotonic() + timeout, None
    while True:
        now = time.monotonic()
        # After the sentinel, keep listening a little: packets queued on another CPU's
        # backlog may land just after it.
        stop = min(end, seen_end + 0.5) if seen_end else end
        if now >= stop:
            break
        s.settimeout(stop - now)
        try:
            data, addr = s.recvfrom(65535)
        except socket.timeout:
            break
        if addr[2] == PACKET_OUTGOING:
            continue
        frames.append(data)
        if seen_end is None and dc.SENTINEL in data:
            seen_end = time.monotonic()
    packets, drops = struct.unpack("II", s.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    dc.write_pcap(out, frames, dc.LINKTYPE_ETHERNET)
    print("captured %d frames on %s (socket drops %d)%s" % (
        len(frames), iface, drops, "" if seen_end else ", NO SENTINEL: timed out"))
    return 0 if seen_end and drops == 0 else 1


def main(argv):
    if len(argv) == 4 and argv[1] == "send":
        return send(argv[2], argv[3])
    if len(argv) == 6 and argv[1] == "capture":
        return capture(argv[2], argv[3], argv[4], float(argv[5]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
