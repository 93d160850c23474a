#!/usr/bin/env bash
# Checks that every C source and header of certflow is formatted as .clang-format says.
# Prints the files that differ and exits 1; exits 0 when all are clean.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || { echo "clang-format is not installed (tools/deps.sh installs it)"; exit 1; }
bad=0
while IFS= read -r -d '' f; do
  if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
    echo "not formatted: $f (fix with: clang-format -i $f)"
    bad=1
  fi
done < <(git ls-files -z -- '*.c' '*.h' 2>/dev/null || find engine tasks tools tests -name '*.[ch]' -print0)
[ "$bad" = 0 ] && echo "format: all C files clean"
exit $bad
