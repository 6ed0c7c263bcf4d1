#!/usr/bin/python3
"""connect() latency for bench/daemon_bench.sh.
  serve PORT        accept and close connections forever (run in the server namespace)
  measure HOST PORT N   N sequential blocking connects, each timed from connect() to its
                        return (the handshake: SYN out, SYN-ACK in); prints JSON with p50,
                        p90, p99 and max in microseconds, and the number of failures."""
import json
import socket
import struct
import sys
import time


def serve(port: int) -> None:
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(4096)
    while True:
        c, _ = ls.accept()
        c.close()


def measure(host: str, port: int, n: int) -> None:
    lat = []
    fails = 0
    linger = struct.pack("ii", 1, 0)   # close with RST: no TIME_WAIT pile-up over N connects
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2)
        t0 = time.perf_counter_ns()
        try:
            s.connect((host, port))
            lat.append((time.perf_counter_ns() - t0) / 1000.0)
        except OSError:
            fails += 1
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        s.close()
    lat.sort()

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))], 1) if lat else -1.0

    print(json.dumps({"n": len(lat), "fails": fails, "p50_us": pct(0.50), "p90_us": pct(0.90),
                      "p99_us": pct(0.99), "max_us": round(lat[-1], 1) if lat else -1.0}))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    else:
        measure(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
