#!/usr/bin/python3
"""Prints the differential corpus of tests/e2e/diff_cases.py for the eBPF unit test, one
case a line: `name mss4 mss6 input-hex` (the case's group targets)."""
import json
import os
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
gen = os.path.join(here, "..", "..", "e2e", "diff_cases.py")
with tempfile.TemporaryDirectory() as d:
    subprocess.run([sys.executable, gen, "generate", d], check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(d, "cases.json")) as f:
        corpus = json.load(f)
for c in corpus["cases"]:
    g = corpus["groups"][c["group"]]
    print(c["name"], g["mss4"], g["mss6"], c["input"])
