#!/usr/bin/env bash
# Fails when a tracked C/C++ source differs from what clang-format (.clang-format) makes of it.
# Fix with: git ls-files '*.cpp' '*.h' '*.c' | xargs clang-format -i
set -euo pipefail
cd "${TUNSHIM_SRC:-$(dirname "$0")/../..}"
command -v clang-format >/dev/null || { echo "clang-format not installed" >&2; exit 1; }
bad=0
while IFS= read -r f; do
  if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
    echo "not formatted: $f"
    bad=$((bad + 1))
  fi
done < <(git ls-files '*.cpp' '*.h' '*.c' '*.bpf.c')
if [ "$bad" -ne 0 ]; then
  echo "$bad file(s) need clang-format; run: git ls-files '*.cpp' '*.h' '*.c' | xargs clang-format -i" >&2
  exit 1
fi
echo "clang-format: all $(git ls-files '*.cpp' '*.h' '*.c' | wc -l) sources formatted"
