#!/usr/bin/python3
"""Comparator of the differential test (tests/e2e/test_clamp_vs_kernel.sh): the kernel's
TCPMSS output (captured on the far side of a veth) against `tunshim clamp`.

  diff_compare.py CASEDIR KERNEL.pcap SENT.json WORKDIR VERDICTS [TUNSHIM_BIN]

CASEDIR is diff_cases.py's output, SENT.json what the raw socket said for each case
(diff_wire.py send): a kernel drop must be both a netfilter verdict (EPERM) and absent
from the capture. Without TUNSHIM_BIN only the kernel half is checked
(each case against the prediction it declared) and the run records a failure: the
comparison itself did not happen.

tunshim runs twice over the same inputs: once per target group over a whole pcap (the
bytes compared), once per case (so its summary names that case's outcome); both must
agree. Every case gets one verdict line "PASS|FAIL<TAB>name<TAB>detail" in VERDICTS; a
failure also prints a field diff and hex dumps here.
"""
import json
import os
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diff_cases as dc  # noqa: E402

KIND_TITLES = {
    "same": "identical bytes",
    "kernel_drops": "(1) malformed: kernel drops, tunshim passes unchanged",
    "frag_insert": "(2) first fragment without MSS: kernel inserts, tunshim does not",
    "odd_csum": "(3) MSS at odd offset: kernel checksum wrong, tunshim's right",
    "kernel_walks": "(4) malformed options: tunshim passes unchanged, kernel walks them",
    "eol_insert": "(5) MSS hidden after EOL: kernel clamps it, tunshim inserts a visible one",
}


# ---- reading packets ------------------------------------------------------------------
def kernel_packets(path, doc, problems):
    """{(family, key): ip packet} of what the kernel emitted from our source addresses."""
    linktype, frames = dc.read_pcap(path)
    if linktype != dc.LINKTYPE_ETHERNET:
        raise ValueError("kernel capture has link type %d" % linktype)
    got, strangers = {}, []
    for fr in frames:
        etype = struct.unpack("!H", fr[12:14])[0] if len(fr) >= 14 else 0
        pkt = fr[14:]
        if etype not in (0x0800, 0x86DD) or len(pkt) < 20:
            strangers.append("ethertype %#06x" % etype)
            continue
        ip = dc.Ip(pkt)
        if (ip.family, ip.src) not in ((4, doc["src4"]), (6, doc["src6"])):
            strangers.append("IPv%d %s > %s proto %s" % (ip.family, ip.src, ip.dst, ip.proto))  # stack chatter (MLD …)
            continue
        if dc.SENTINEL in pkt:
            continue
        want = (struct.unpack("!H", pkt[2:4])[0] if ip.family == 4
                else 40 + struct.unpack("!H", pkt[4:6])[0])
        if len(pkt) > want:
            # veth does not pad; a longer frame would be a difference we must not hide.
            problems.append("frame for key %#x is %d bytes, IP says %d" % (ip.key, len(pkt), want))
        k = (ip.family, ip.key)
        if k in got:
            problems.append("key %#x seen twice in the kernel capture" % ip.key)
        got[k] = pkt
    return got, strangers


def run_tunshim(binary, group, inp, out):
    g = dc.GROUPS[group]
    cmd = [binary, "clamp", "--mss", str(g["mss4"]), "--mss6", str(g["mss6"]), "--json", inp, out]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return -1, None, "timed out after 10 s", cmd
    summary = None
    try:
        summary = json.loads(p.stdout) if p.stdout.strip() else None
    except ValueError:
        pass
    return p.returncode, summary, p.stdout + p.stderr, cmd


def outcome_counts(summary):
    """The per-outcome counters in tunshim's --json summary, wherever they sit."""
    if isinstance(summary, dict):
        if sum(1 for o in dc.OUTCOMES if isinstance(summary.get(o), int)) >= 5:
            return {o: summary.get(o, 0) for o in dc.OUTCOMES}
        for v in summary.values():
            r = outcome_counts(v)
            if r is not None:
                return r
    return None


# ---- describing differences -----------------------------------------------------------
def fields(pkt):
    """Named fields of an IP/TCP packet, for a readable diff."""
    out = []
    ip = dc.Ip(pkt)
    if ip.family == 4:
        out += [("ip.ihl", pkt[0] & 15), ("ip.tos", pkt[1]), ("ip.tot_len", struct.unpack("!H", pkt[2:4])[0]),
                ("ip.id", ip.key), ("ip.frag", "%#06x" % struct.unpack("!H", pkt[6:8])[0]), ("ip.ttl", pkt[8]),
                ("ip.proto", pkt[9]), ("ip.check", "%#06x" % struct.unpack("!H", pkt[10:12])[0]),
                ("ip.check_ok", dc.ipv4_hdr_ok(pkt))]
    elif ip.family == 6:
        out += [("ip6.flow", ip.key), ("ip6.plen", struct.unpack("!H", pkt[4:6])[0]), ("ip6.nh", pkt[6]),
                ("ip6.hlim", pkt[7]), ("ip6.l4_off", ip.l4)]
    if ip.ok and ip.proto == 6 and not ip.fragoff and len(pkt) >= ip.l4 + 20:
        t = ip.l4
        hl = (pkt[t + 12] >> 4) * 4
        out += [("tcp.sport", struct.unpack("!H", pkt[t:t + 2])[0]), ("tcp.doff", hl // 4),
                ("tcp.flags", "%#04x" % pkt[t + 13]), ("tcp.window", struct.unpack("!H", pkt[t + 14:t + 16])[0]),
                ("tcp.check", "%#06x" % struct.unpack("!H", pkt[t + 16:t + 18])[0]),
                ("tcp.options", pkt[t + 20:t + hl].hex(" ") if hl <= len(pkt) - t else "(cut)"),
                ("tcp.payload_len", len(pkt) - t - hl)]
        if 20 <= hl <= len(pkt) - t:
            out.append(("tcp.mss", [struct.unpack("!H", pkt[t + o + 2:t + o + 4])[0] for o in dc.mss_offsets(pkt)]))
    return out


def hexdump(pkt, indent="      "):
    return "\n".join("%s%04x  %s" % (indent, i, pkt[i:i + 16].hex(" ")) for i in range(0, len(pkt), 16))


def explain(c, inp, kern, tun):
    lines = ["  case %s (%s, group %s, %s)" % (c["name"], c["expect"], c["group"], c["note"] or "")]
    packs = [("input", inp), ("kernel", kern), ("tunshim", tun)]
    fs = {n: dict(fields(p)) if p else {} for n, p in packs}
    names = [f for f, _ in fields(inp)]
    for p in (kern, tun):
        for f, _ in fields(p) if p else []:
            if f not in names:
                names.append(f)
    for f in names:
        vals = [fs[n].get(f, "-") for n, _ in packs]
        if len(set(map(str, vals))) > 1:
            lines.append("    %-16s input=%s kernel=%s tunshim=%s" % (f, *vals))
    if kern is not None and tun is not None:
        if len(kern) == len(tun):
            lines.append("    bytes differing kernel/tunshim at offsets %s" %
                         [i for i in range(len(kern)) if kern[i] != tun[i]])
        else:
            lines.append("    lengths differ: kernel %d, tunshim %d" % (len(kern), len(tun)))
    for n, p in packs:
        lines.append("    %s:%s" % (n, " (dropped)" if p is None else ""))
        if p is not None:
            lines.append(hexdump(p))
    return "\n".join(lines)


def kernel_class(inp, kern, sent="sent"):
    if kern is None:
        return "drop" if sent == "EPERM" else "lost (send: %s)" % sent
    if sent != "sent":
        return "captured although the send reported %s" % sent
    if kern == inp:
        return "none"
    if len(kern) == len(inp) + 4:
        return "insert"
    if len(kern) == len(inp):
        return "clamp"
    return "other"


def walked_summary(inp, kern, sent):
    k = kernel_class(inp, kern, sent)
    if kern is None:
        return "kernel: " + k
    return "kernel: %s; MSS options as the kernel walks them: before %s, after %s" % (
        k, dc.kernel_walk_mss(inp), dc.kernel_walk_mss(kern))


# ---- judging one case -----------------------------------------------------------------
def judge(c, inp, tail, kern, sent, tun, outcome):
    """Returns a list of reasons the case fails (empty: it passes)."""
    why = []
    exp = c["expect"]
    kc = kernel_class(inp, kern, sent)
    if exp != "kernel_walks" and kc != c["kernel"]:
        why.append("kernel did %s, the case declared %s (%s)" % (kc, c["kernel"], c["kernel_detail"]))
    if tun is None:
        return why
    if outcome != c["outcome"]:
        why.append("tunshim reported %s, the case declared %s" % (outcome, c["outcome"]))
    if exp == "same":
        if kern is None:
            why.append("kernel dropped a packet both should pass")
        elif tun != kern:
            why.append("bytes differ")
        if kc in ("clamp", "insert") and tun is not None:
            if dc.tcp_csum_ok(tun, tail) != dc.tcp_csum_ok(inp, tail):
                why.append("tunshim changed whether the TCP checksum verifies")
            if not dc.ipv4_hdr_ok(tun):
                why.append("tunshim's IPv4 header checksum is wrong")
    elif exp in ("kernel_drops", "kernel_walks", "frag_insert"):
        if tun != inp:
            why.append("tunshim changed a packet it must pass unchanged")
    elif exp == "eol_insert":
        if kc != "clamp":
            why.append("kernel did %s, expected it to clamp the MSS after EOL" % kc)
        if tun != bytes.fromhex(c["expected_out"]):
            why.append("tunshim's bytes are not the receiver-view insertion")
        elif dc.tcp_csum_ok(tun, tail) != dc.tcp_csum_ok(inp, tail) or not dc.ipv4_hdr_ok(tun):
            why.append("tunshim's checksums are wrong after the insertion")
    elif exp == "odd_csum":
        l4 = dc.Ip(inp).l4
        if kern is None or len(kern) != len(tun):
            why.append("kernel and tunshim lengths differ")
        else:
            diff = [i for i in range(len(tun)) if tun[i] != kern[i]]
            if not diff or not set(diff) <= {l4 + 16, l4 + 17}:
                why.append("expected a difference in the TCP checksum only, got offsets %s" % diff)
            if not dc.tcp_csum_ok(tun, tail):
                why.append("tunshim's TCP checksum does not verify")
            if dc.tcp_csum_ok(kern, tail):
                why.append("the kernel's TCP checksum verifies (expected its odd-offset fault)")
        if tun == inp:
            why.append("tunshim did not clamp")
    return why


def main(argv):
    if len(argv) not in (6, 7):
        print(__doc__, file=sys.stderr)
        return 2
    casedir, kpcap, sentfile, work, verdicts = argv[1:6]
    binary = argv[6] if len(argv) == 7 else None
    with open(os.path.join(casedir, "cases.json")) as f:
        doc = json.load(f)
    cases = doc["cases"]
    with open(sentfile) as f:
        sent = json.load(f)
    problems = []            # failures not tied to one case
    kern, strangers = kernel_packets(kpcap, doc, problems)
    print("kernel capture: %d case packets, %d other frames ignored%s" % (
        len(kern), len(strangers), (": " + "; ".join(strangers[:4])) if strangers else ""))
    known = {(c["family"], c["key"]) for c in cases}
    for k in kern:
        if k not in known:
            problems.append("kernel emitted a packet with unknown key %#x" % k[1])

    tun_batch, tun_single, outcomes = {}, {}, {}
    if binary:
        os.makedirs(os.path.join(work, "case"), exist_ok=True)
        batch_totals = {o: 0 for o in dc.OUTCOMES}
        for g in sorted(dc.GROUPS):
            members = [c for c in cases if c["group"] == g]
            out = os.path.join(work, "out-%s.pcap" % g)
            rc, summary, text, cmd = run_tunshim(binary, g, os.path.join(casedir, "in-%s.pcap" % g), out)
            counts = outcome_counts(summary)
            if rc != 0 or counts is None:
                problems.append("`%s` exited %d, summary %s:\n%s" % (" ".join(cmd), rc, "unreadable" if counts is None else "ok", text))
                continue
            print("tunshim group %s (--mss %d --mss6 %d): %s" % (
                g, dc.GROUPS[g]["mss4"], dc.GROUPS[g]["mss6"],
                ", ".join("%s %d" % (o, n) for o, n in counts.items() if n)))
            for o in dc.OUTCOMES:
                batch_totals[o] += counts[o]
            lt, recs = dc.read_pcap(out)
            if lt != dc.LINKTYPE_RAW or len(recs) != len(members):
                problems.append("group %s: tunshim wrote %d records of link type %d for %d inputs" % (g, len(recs), lt, len(members)))
                continue
            for c, r in zip(members, recs):
                tun_batch[c["name"]] = r
        single_totals = {o: 0 for o in dc.OUTCOMES}
        deadline = time.monotonic() + 120          # a hung or slow tunshim must not stall CI
        for c in cases:
            if time.monotonic() > deadline:
                problems.append("per-case tunshim runs took over 120 s; stopped at %s" % c["name"])
                break
            out = os.path.join(work, "case", c["name"] + ".pcap")
            rc, summary, text, cmd = run_tunshim(binary, c["group"], os.path.join(casedir, "case", c["name"] + ".pcap"), out)
            counts = outcome_counts(summary)
            if rc != 0 or counts is None:
                problems.append("%s: `%s` exited %d:\n%s" % (c["name"], " ".join(cmd), rc, text))
                continue
            hit = [o for o, n in counts.items() if n] + [x for x in ("not_ip", "truncated") if summary.get(x)]
            outcomes[c["name"]] = hit[0] if len(hit) == 1 and counts[hit[0]] == 1 else "counts %s" % counts
            for o in dc.OUTCOMES:
                single_totals[o] += counts[o]
            _, recs = dc.read_pcap(out)
            tun_single[c["name"]] = recs[0] if len(recs) == 1 else None
        if batch_totals != single_totals:
            problems.append("tunshim's outcome counts differ between the batch runs %s and the per-case runs %s"
                            % (batch_totals, single_totals))

    tally = {k: [0, 0] for k in dc.EXPECTS}     # kind -> [as expected, not]
    identical, walks = 0, []
    with open(verdicts, "w") as vf:
        for c in cases:
            inp, tail = bytes.fromhex(c["input"]), bytes.fromhex(c["tail"])
            kp = kern.get((c["family"], c["key"]))
            tp = tun_batch.get(c["name"]) if binary else None
            why = judge(c, inp, tail, kp, sent.get(c["name"], "not sent"), tp, outcomes.get(c["name"]))
            if binary:
                if tp is None:
                    why.append("no tunshim output for this case")
                elif tun_single.get(c["name"]) != tp:
                    why.append("tunshim's output differs between the batch and the single-packet run")
            if kp is not None and tp is not None and kp == tp:
                identical += 1
            if c["expect"] == "kernel_walks":
                walks.append("%s: %s (model: %s)" % (c["name"], walked_summary(inp, kp, sent.get(c["name"])), c["kernel_detail"]))
            tally[c["expect"]][1 if why else 0] += 1
            detail = c["expect"] if c["expect"] != "same" else "same/" + c["kernel"]
            if why:
                vf.write("FAIL\t%s\t%s: %s\n" % (c["name"], detail, "; ".join(why)))
                print("UNEXPECTED %s: %s" % (c["name"], "; ".join(why)))
                print(explain(c, inp, kp, tp))
            else:
                vf.write("PASS\t%s\t%s\n" % (c["name"], detail))
        for p in problems:
            vf.write("FAIL\t-\t%s\n" % p.replace("\n", " | "))
        if not binary:
            vf.write("FAIL\t-\tkernel-only run: tunshim was not compared\n")

    print()
    print("what the kernel did with malformed option lists (difference kind 4):")
    for w in walks:
        print("  " + w)
    print()
    unexpected = sum(v[1] for v in tally.values())
    print("summary: %d cases, %d identical, unexpected differences %d%s" % (
        len(cases), identical, unexpected, "" if binary else " (kernel half only)"))
    for k in dc.EXPECTS:
        print("  %-13s %3d as expected, %d not   %s" % (k, tally[k][0], tally[k][1], KIND_TITLES[k]))
    for p in problems:
        print("problem: " + p)
    return 0 if unexpected == 0 and not problems and binary else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
