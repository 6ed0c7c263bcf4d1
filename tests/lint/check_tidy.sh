#!/usr/bin/env bash
# clang-tidy with the project's small check set (.clang-tidy) over every first-party
# translation unit in the build's compile_commands.json. Fails on any finding.
#   TUNSHIM_SRC=. TUNSHIM_BUILD=build bash tests/lint/check_tidy.sh
set -euo pipefail
src=${TUNSHIM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${TUNSHIM_BUILD:-$src/build}
command -v run-clang-tidy >/dev/null || { echo "run-clang-tidy not installed (clang-tidy)" >&2; exit 1; }
[ -f "$build/compile_commands.json" ] || { echo "no $build/compile_commands.json" >&2; exit 1; }
cd "$src"
# The pure modules and the daemon; tests and benchmarks are left to the compiler's warnings.
files=$(git ls-files 'clamp/*.cpp' 'keepalive/*.cpp' 'proxy/*.cpp' 'diag/*.cpp')
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if run-clang-tidy -quiet -p "$build" -j "$(nproc)" $files >"$out" 2>&1; then
  echo "clang-tidy: $(echo "$files" | wc -w) files, no findings"
else
  grep -E 'warning:|error:' "$out" | sort -u | head -50
  echo "clang-tidy found problems (checks and why: .clang-tidy)" >&2
  exit 1
fi
