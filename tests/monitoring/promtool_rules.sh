#!/usr/bin/env bash
# The shipped alerting rules: promtool accepts them, and their unit tests
# (conf/prometheus/tunshim.rules.test.yml) pass. No root, no network.
set -euo pipefail
dir=${TUNSHIM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}/conf/prometheus
command -v promtool >/dev/null || { echo "promtool missing: apt-get install prometheus (scripts/deps.sh)" >&2; exit 1; }
cd "$dir"
promtool check rules tunshim.rules.yml
promtool test rules tunshim.rules.test.yml
