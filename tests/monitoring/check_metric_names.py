#!/usr/bin/env python3
"""Checks that every metric name the shipped monitoring uses is one a running tunshim exports.

    check_metric_names.py SCRAPE FILE...
    check_metric_names.py --self-test

SCRAPE is a /metrics exposition taken from a running daemon. Each FILE is a Prometheus
rules file (.yml/.yaml: every rule's expr) or a Grafana dashboard (.json: every "expr" and
every templating query, panels nested in rows included). From each PromQL expression the
metric names are extracted (string literals, label matchers, range selectors, grouping
clauses, functions, keywords and Grafana variables taken out); each must be the name of a
sample in SCRAPE. Series Prometheus makes itself (up) are known without a scrape. A name
ending in _bucket/_sum/_count also counts when SCRAPE declares its base as a histogram or
summary. Prints each expression's names with a verdict; exits 1 if any name is unknown or
a file yields no expression at all.
"""
import json
import re
import sys

import yaml

# Series Prometheus creates for every target or alert, never in an exposition.
SYNTHETIC = {"up", "ALERTS", "ALERTS_FOR_STATE"}

KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "atan2", "inf", "nan", "start", "end",
}

IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr):
    """The metric names a PromQL expression (or a Grafana label_values() query) reads."""
    e = expr
    # Grafana: label_values(metric{...}, label) reads the metric; label_values(label) none.
    e = re.sub(
        r"\blabel_values\s*\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*(\{[^}]*\})?\s*(,\s*[a-zA-Z_][a-zA-Z0-9_]*)?\s*\)",
        lambda m: f" {m.group(1) or ''}{m.group(2) or ''} " if m.group(3) else " ",
        e,
    )
    e = re.sub(r"\bquery_result\s*\((.*)\)", r" \1 ", e)
    # Grafana variables: $var, ${var}, ${var:fmt}, [[var]].
    e = re.sub(r"\$\{[^}]*\}|\$[a-zA-Z_][a-zA-Z0-9_]*|\[\[[^\]]*\]\]", " ", e)
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', e)  # strings
    e = re.sub(r"#[^\n]*", " ", e)                                          # comments
    e = re.sub(r"\{[^}]*\}", " ", e)                                        # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)                                       # ranges, subqueries
    e = re.sub(r"\boffset\s+-?[0-9a-z]+", " ", e)
    e = re.sub(r"@\s*(?:start\(\)|end\(\)|[0-9.]+)", " ", e)
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = []
    for m in IDENT.finditer(e):
        word = m.group(0)
        before = e[: m.start()]
        after = e[m.end():]
        if before and (before[-1].isdigit() or before[-1] == "."):
            continue  # part of a number or duration (1e3, 5m)
        if re.match(r"\s*\(", after):
            continue  # a function or aggregation
        if word.lower() in KEYWORDS:
            continue
        names.append(word)
    return names


def scrape_names(path):
    samples, families = set(), {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("# TYPE "):
                parts = line.split()
                if len(parts) >= 4:
                    families[parts[2]] = parts[3]
            elif line and not line.startswith("#"):
                samples.add(re.match(r"[^{\s]+", line).group(0))
    return samples, families


def known(name, samples, families):
    if name in samples or name in SYNTHETIC:
        return True
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)] if name.endswith(suffix) else None
        if base and families.get(base) in ("histogram", "summary"):
            return True
    return False


def rule_exprs(path):
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("alert") or rule.get("record")
            yield f"{group.get('name')}/{name}", str(rule["expr"])


def dashboard_exprs(path):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)

    def walk(node, where):
        if isinstance(node, dict):
            title = node.get("title") or node.get("name") or where
            for k, v in node.items():
                if k == "expr" and isinstance(v, str) and v.strip():
                    yield title, v
                elif k == "query" and isinstance(v, str) and "label_values" in v:
                    yield title, v
                elif k == "query" and isinstance(v, dict) and isinstance(v.get("query"), str):
                    yield title, v["query"]
                else:
                    yield from walk(v, title)
        elif isinstance(node, list):
            for v in node:
                yield from walk(v, where)

    yield from walk(doc, "dashboard")


# Expressions of the kinds the rules and the dashboard use, with the names they read.
SELF_TEST = [
    ('up{job="tunshim"} == 0', ["up"]),
    ('absent(tunshim_build_info{job="tunshim"}) unless on (job) up{job="tunshim"} == 0',
     ["tunshim_build_info", "up"]),
    ('sum without (to) (increase(a_total{to=~"down|absent"}[30m])) >= 3', ["a_total"]),
    ('sum by (tunnel, hook, result) (increase(b_total{x="sum(c)"}[$__rate_interval])) > 0',
     ["b_total"]),
    ("c_bytes < max_over_time(c_bytes[1h] offset 5m)", ["c_bytes", "c_bytes"]),
    ("clamp_min(1 - rate(r_total[5m]) / rate(s_total[5m]), 0) * 1e3", ["r_total", "s_total"]),
    ("histogram_quantile(0.9, sum by (le) (rate(h_seconds_bucket[5m])))", ["h_seconds_bucket"]),
    ("time() - t_seconds{instance=~\"$instance\"}", ["t_seconds"]),
    ("x_total and on (tunnel) group_left (version) y_info", ["x_total", "y_info"]),
    ("rate(z_total[${__range}])", ["z_total"]),
    ("label_values(tunshim_interface_present{instance=~\"$instance\"}, tunnel)",
     ["tunshim_interface_present"]),
    ("label_values(instance)", []),
    ('label_values(m_info{a="1",b=~"x,y"}, tunnel)', ["m_info"]),
]


def self_test():
    bad = 0
    for expr, want in SELF_TEST:
        got = metric_names(expr)
        if got != want:
            print(f"FAIL: {expr!r}: got {got}, want {want}")
            bad += 1
    samples = {"h_seconds_bucket", "plain"}
    families = {"h_seconds": "histogram", "s": "summary"}
    for name, want in [("plain", True), ("up", True), ("h_seconds_bucket", True),
                       ("h_seconds_count", True), ("s_sum", True), ("h_seconds", False),
                       ("plain_total", False), ("s_bucketx", False)]:
        if known(name, samples, families) != want:
            print(f"FAIL: known({name!r}) != {want}")
            bad += 1
    print(f"self-test: {len(SELF_TEST)} expressions, {bad} wrong")
    return 1 if bad else 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    samples, families = scrape_names(argv[1])
    if not samples:
        print(f"FAIL: {argv[1]} holds no sample", file=sys.stderr)
        return 1
    unknown, used = 0, set()
    for path in argv[2:]:
        exprs = list(dashboard_exprs(path) if path.endswith(".json") else rule_exprs(path))
        if not exprs:
            print(f"FAIL: {path}: no expression found")
            unknown += 1
        for where, expr in exprs:
            names = metric_names(expr)
            if not names:
                print(f"FAIL: {path}: {where}: no metric name in: {expr.strip()}")
                unknown += 1
                continue
            for n in names:
                used.add(n)
                if known(n, samples, families):
                    print(f"ok   {path}: {where}: {n}")
                else:
                    print(f"FAIL: {path}: {where}: {n} is not in the scrape")
                    unknown += 1
    print(f"{len(used)} metric names used, {unknown} unknown; the scrape has {len(samples)} names")
    return 1 if unknown else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
