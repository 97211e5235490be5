#!/usr/bin/env bash
# Runs every fuzz target of the module for a bounded number of executions
# (FUZZTIME, default 100000x each): `make test` calls it so decoders of
# untrusted bytes are fuzzed on every run. Go runs one fuzz target per
# invocation, hence the loop.
#
# The default is a count, not a duration: Go 1.26's fuzz coordinator can
# report a spurious "context deadline exceeded" failure when a duration-based
# -fuzztime expires while a worker is mid-call (golang/go#75804, fixed in Go
# 1.27). A count-based budget has no deadline to race. A real crasher still
# fails the run and is written under testdata/fuzz/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-100000x}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
count=0
while IFS=: read -r file _ line; do
  name=$(sed -E 's/^func (Fuzz[A-Za-z0-9_]*)\(.*/\1/' <<<"$line")
  pkg=./$(dirname "$file")
  echo "  fuzz $pkg $name ($fuzztime)"
  go test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" "$pkg" >"$log" 2>&1 || { cat "$log"; exit 1; }
  count=$((count + 1))
done < <(git grep -n -E '^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' -- '*_test.go')
echo "==> $count fuzz targets passed"
