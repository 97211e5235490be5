#!/usr/bin/env bash
# Runs every fuzz target of the module for a short time (FUZZTIME, default 5s
# each): `make test` calls it so decoders of untrusted bytes are fuzzed on
# every run. Go runs one fuzz target per invocation, hence the loop.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-5s}
count=0
while IFS=: read -r file _ line; do
  name=$(sed -E 's/^func (Fuzz[A-Za-z0-9_]*)\(.*/\1/' <<<"$line")
  pkg=./$(dirname "$file")
  echo "  fuzz $pkg $name ($fuzztime)"
  go test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" "$pkg" >/tmp/lethe-fuzz.log 2>&1 || { cat /tmp/lethe-fuzz.log; exit 1; }
  count=$((count + 1))
done < <(git grep -n -E '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' -- '*_test.go')
echo "==> $count fuzz targets passed"
