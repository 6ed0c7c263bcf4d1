#!/usr/bin/python3
"""Figures of bench/pattern_bench.sh for one tunshim (interface = "ppp+", a fixed mss) with
N sessions ppp0..pppN-1 made by tests/e2e/tun_farm.py (imported: this process is every
peer and answers echo). Runs inside the namespace of the daemon; prints one JSON line.

  appear   K new interfaces one after another: the time from the interface being up to the
           first SYN of a connect() through it arriving on the TUN device with the clamped
           MSS (a SYN that arrives unclamped makes that sample wait for the retransmission)
  syn      raw SYNs (MSS 1460) round-robin over every session's peer for S seconds: SYNs
           sent, and clamped per second by tunshim's own pattern counter, and the daemon's
           CPU time per SYN clamped
  scrape   GET /metrics M times: wall time per scrape, size
  idle     context switches of every tunshim thread over S seconds, nothing sent (the farm
           answers keepalives): voluntary (its wake-ups) and involuntary (preemptions)
"""
import argparse
import json
import os
import select
import socket
import struct
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
sys.path.insert(0, HERE)
import tun_farm  # noqa: E402
import daemon_synflood  # noqa: E402  (bench/: its syn() builds the raw SYNs)


def metrics(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


def metric(url, name):
    for line in metrics(url).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def wait_metric(url, name, want, seconds):
    """None once `name` reads `want`; otherwise its last value."""
    end = time.monotonic() + seconds
    v = None
    while time.monotonic() < end:
        v = metric(url, name)
        if v == want:
            return None
        # Not more often: at 1,000 tunnels a scrape holds the daemon's loop for ~80 ms, and
        # polling every 0.2 s left it too little time for the interfaces' notifications.
        tun_farm.serve(1.0)
    return v if v is not None else "none"


def tcp_mss(p):
    """The MSS option of an IPv4 TCP SYN, None for anything else."""
    if len(p) < 40 or p[0] >> 4 != 4 or p[9] != 6:
        return None
    ihl = (p[0] & 0xF) * 4
    tcp = p[ihl:]
    if len(tcp) < 20 or not tcp[13] & 0x02 or tcp[13] & 0x10:
        return None
    off, end = 20, min((tcp[12] >> 4) * 4, len(tcp))
    while off < end:
        kind = tcp[off]
        if kind == 0:
            break
        if kind == 1:
            off += 1
            continue
        if off + 1 >= end or tcp[off + 1] < 2:
            break
        if kind == 2 and tcp[off + 1] == 4 and off + 4 <= end:
            return struct.unpack("!H", tcp[off + 2:off + 4])[0]
        off += tcp[off + 1]
    return None


def appear(first, count, want_mss):
    lat, unclamped_first = [], 0
    for i in range(first, first + count):
        tun_farm.create(i)
        t0 = time.monotonic()
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex((tun_farm.peer(i), 9))
        fd = tun_farm.fds[i]
        got, first_syn = None, True
        end = t0 + 3.5  # past the first retransmission (1 s) and the second (3 s)
        while got is None and time.monotonic() < end:
            r, _, _ = select.select([fd], [], [], max(0.0, end - time.monotonic()))
            if not r:
                break
            try:
                p = os.read(fd, 65535)
            except BlockingIOError:
                continue
            mss = tcp_mss(p)
            if mss is None:
                continue
            if mss == want_mss:
                got = time.monotonic() - t0
            elif first_syn:
                unclamped_first += 1
            first_syn = False
        s.close()
        tun_farm.delete(i)
        lat.append(got if got is not None else float("inf"))
        # Ten new interfaces in a row whose SYNs stay unclamped: the rest would only take
        # 3.5 s each to say the same.
        if len(lat) >= 10 and all(x == float("inf") for x in lat[-10:]):
            break
        time.sleep(0.02)
    lat.sort()
    n = len(lat)
    pick = lambda q: lat[min(n - 1, int(q * n))] * 1000.0  # noqa: E731
    return {"samples": n, "p50_ms": pick(0.50), "p99_ms": pick(0.99), "max_ms": lat[-1] * 1000.0,
            "unclamped_first": unclamped_first,
            "never": sum(1 for x in lat if x == float("inf"))}


def synflood(url, pid, n, seconds):
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    src = socket.inet_aton(tun_farm.LOCAL)
    # 60,000 distinct SYNs, round-robin over the sessions' peers, built before the clock runs.
    pkts = []
    for k in range(60000):
        dst = tun_farm.peer(k % n)
        pkts.append((daemon_synflood.syn(src, socket.inet_aton(dst), 1024 + k, 9, 1460), (dst, 0)))
    name = 'tunshim_pattern_syn_total{pattern="ppp+",direction="out",action="clamped"}'
    c0 = metric(url, name) or 0
    cpu0 = cpu_seconds(pid)
    send = raw.sendto
    sent = 0
    t0 = time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end:
        for i in range(0, len(pkts), 512):
            for p, addr in pkts[i:i + 512]:
                try:
                    send(p, addr)
                    sent += 1
                except OSError:
                    pass  # a full device queue: never left, not counted
            if time.monotonic() >= end:
                break
    elapsed = time.monotonic() - t0
    time.sleep(0.5)  # the last verdicts
    cpu1 = cpu_seconds(pid)
    c1 = metric(url, name) or 0
    # The daemon's CPU per SYN: what it would take at full speed, whatever the sender offered
    # (a single Python thread, slower with more destinations).
    return {"seconds": round(elapsed, 2), "sent_per_s": round(sent / elapsed),
            "clamped_per_s": round((c1 - c0) / elapsed),
            "cpu_us_per_syn": round((cpu1 - cpu0) * 1e6 / max(1, c1 - c0), 2)}


def scrape(url, count):
    times, size = [], 0
    for _ in range(count):
        t0 = time.monotonic()
        size = len(metrics(url))
        times.append((time.monotonic() - t0) * 1000.0)
        tun_farm.serve(0.05)
    times.sort()
    return {"scrapes": count, "median_ms": round(times[len(times) // 2], 1),
            "max_ms": round(times[-1], 1), "bytes": size}


def ctx(pid):
    """(voluntary, involuntary) context switches summed over every thread of `pid`."""
    v = i = 0
    for t in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/status" % (pid, t)) as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches"):
                    v += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches"):
                    i += int(line.split()[1])
    return v, i


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def idle(pid, seconds):
    """Voluntary switches are the daemon's own wake-ups (it slept and something woke it);
    involuntary ones are preemptions, which a loaded machine adds to any work it does."""
    v0, i0 = ctx(pid)
    tun_farm.serve(seconds)
    v1, i1 = ctx(pid)
    return {"seconds": seconds, "wakeups_per_s": round((v1 - v0) / seconds, 2),
            "preempted_per_s": round((i1 - i0) / seconds, 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--url", default="http://127.0.0.1:9477/metrics")
    ap.add_argument("--mss", type=int, default=1200)
    ap.add_argument("--appear", type=int, default=200)
    ap.add_argument("--syn-seconds", type=float, default=10)
    ap.add_argument("--scrapes", type=int, default=20)
    ap.add_argument("--idle-seconds", type=float, default=30)
    ap.add_argument("--settle", type=float, default=10)
    a = ap.parse_args()
    out = {"n": a.n}
    t0 = time.monotonic()
    for start in range(0, a.n, 100):
        for i in range(start, min(a.n, start + 100)):
            tun_farm.create(i)
        tun_farm.serve(0.1)
    last = wait_metric(a.url, 'tunshim_pattern_interfaces{pattern="ppp+"}', a.n, 120)
    if last is not None:
        out["error"] = "tunshim saw %s of %d interfaces after 120 s" % (last, a.n)
        print(json.dumps(out), flush=True)
        return 1
    out["all_seen_s"] = round(time.monotonic() - t0, 1)
    tun_farm.serve(a.settle)
    out["idle"] = idle(a.pid, a.idle_seconds)
    out["scrape"] = scrape(a.url, a.scrapes)
    out["appear"] = appear(a.n, a.appear, a.mss)
    out["syn"] = synflood(a.url, a.pid, a.n, a.syn_seconds)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
