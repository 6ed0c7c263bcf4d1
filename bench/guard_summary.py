#!/usr/bin/python3
"""Summary table of bench/guard_bench.sh's raw lines (one per iperf3 transfer).

usage: guard_summary.py RAW.tsv CLK_TCK

Raw columns: case, direction, seconds, bytes received, receiver bit/s, sender retransmits,
tunshim CPU ticks, queue packets, guard passed, socat CPU ticks (both ends), load before,
load after, iperf3 client's own CPU % (iperf3 -J host_total: the kernel work of queueing,
segmenting and reinjecting runs partly in the sender's context, not in tunshim's), busy CPU
ticks of the whole host (/proc/stat; includes anything else running on it). Throughput, retransmits and per-transfer counts are medians over the runs; the
"per GB" columns divide the sums over all runs by the sum of bytes (GB = 1e9 bytes), so a
short or slow run weighs what it moved.
"""
import statistics
import sys


def main() -> None:
    raw, hz = sys.argv[1], float(sys.argv[2])
    rows: dict[tuple[str, str], list[list[str]]] = {}
    with open(raw) as f:
        for line in f:
            r = line.rstrip("\n").split("\t")
            rows.setdefault((r[0], r[1]), []).append(r)
    head = ("case", "dir", "n", "Mbit/s med", "min..max", "retr", "tunshim CPU s",
            "tunshim s/GB", "us/pkt", "queue pkts", "queue pkts/GB", "guard passed", "socat s/GB", "client CPU%", "host s/GB", "load")
    out = [head]
    for (case, d), rs in rows.items():
        num = lambda i: [float(r[i]) for r in rs]  # noqa: E731
        gb = sum(num(3)) / 1e9
        mbit = [x / 1e6 for x in num(4)]
        loads = num(10) + num(11)
        out.append((
            case, d, str(len(rs)),
            f"{statistics.median(mbit):.1f}", f"{min(mbit):.1f}..{max(mbit):.1f}",
            f"{statistics.median(num(5)):.0f}",
            f"{statistics.median(num(6)) / hz:.2f}",
            f"{sum(num(6)) / hz / gb:.2f}" if gb else "-",
            f"{sum(num(6)) / hz / sum(num(7)) * 1e6:.1f}" if sum(num(7)) >= 1000 else "-",
            f"{statistics.median(num(7)):.0f}",
            f"{sum(num(7)) / gb:.0f}" if gb else "-",
            f"{statistics.median(num(8)):.0f}",
            f"{sum(num(9)) / hz / gb:.2f}" if gb else "-",
            f"{statistics.median(num(12)):.0f}",
            f"{sum(num(13)) / hz / gb:.2f}" if gb else "-",
            f"{min(loads):.2f}..{max(loads):.2f}",
        ))
    widths = [max(len(r[i]) for r in out) for i in range(len(head))]
    for r in out:
        print("  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))


if __name__ == "__main__":
    main()
