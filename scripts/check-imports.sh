#!/usr/bin/env bash
# The import rules of docs/architecture.md: imports point inward, and an
# adapter imports nothing above its own domain.
#
# Each package below may depend (directly or not) only on the module's
# packages listed beside it. The domain is layered: eventstore and keystore
# at the bottom, forgettable over both, projection over forgettable, the
# HTTP API (api, with its documents api/wire) on top. An adapter
# (X/postgres, X/vault) may use its domain X and what X stands on, never a
# layer above X and never another adapter. Only the composition root
# (internal/app) and the commands (cmd/...) put adapters together.
#
# Third-party rules: the domain uses the standard library and golang.org/x
# only; api, api/wire and api/client never pgx or Vault (api/wire: the
# standard library only); the PostgreSQL adapters never Vault, the Vault
# adapter never pgx.
set -euo pipefail
cd "$(dirname "$0")/.."
mod=$(go list -m)
fail=0

# package | module packages it may depend on
rules='
eventstore           |
keystore             |
eventstore/eventstoretest | eventstore
keystore/keystoretest     | keystore
forgettable          | eventstore keystore
projection           | eventstore keystore forgettable
api/wire             |
api/client           | api/wire
api                  | api/wire eventstore keystore forgettable projection
migrations           |
eventstore/postgres  | eventstore
keystore/vault       | keystore
forgettable/postgres | forgettable eventstore keystore
projection/postgres  | projection forgettable eventstore keystore
api/postgres         | api api/wire eventstore keystore forgettable projection
'

while IFS='|' read -r pkg allowed; do
  pkg=$(echo "$pkg" | xargs)
  [ -z "$pkg" ] && continue
  if ! go list "$mod/$pkg" >/dev/null 2>&1; then
    echo "import rule for a package that does not exist: $pkg (update scripts/check-imports.sh)"
    fail=1
    continue
  fi
  for dep in $(go list -deps "$mod/$pkg" | grep "^$mod/" | sed "s#^$mod/##"); do
    [ "$dep" = "$pkg" ] && continue
    ok=0
    for a in $allowed; do
      [ "$dep" = "$a" ] && ok=1
    done
    if [ $ok = 0 ]; then
      echo "import rule broken: $pkg depends on $dep (allowed: ${allowed:-nothing of the module}; see docs/architecture.md)"
      fail=1
    fi
  done
done <<< "$rules"

# Every package of the module outside the composition root and internal
# tooling, the commands and the examples must have a rule above (the
# behavioural suites eventstoretest and keystoretest included). Test files
# (_test.go) are not checked: tests assemble what they need.
for p in $(go list ./... | sed "s#^$mod/\{0,1\}##"); do
  case "$p" in
    ""|cmd/*|internal/*|examples/*|tools/*) continue ;;
  esac
  if ! echo "$rules" | grep -q "^$p "; then
    echo "no import rule for package $p: add it to scripts/check-imports.sh"
    fail=1
  fi
done

forbid() { # package, forbidden-regexp, why
  local pkg=$1 re=$2 why=$3 bad
  bad=$(go list -deps "$mod/$pkg" | grep -v "^$mod/" | grep -E "$re" || true)
  if [ -n "$bad" ]; then
    echo "import rule broken: $pkg depends on $(echo $bad | tr '\n' ' ')($why)"
    fail=1
  fi
}
for p in eventstore keystore forgettable projection eventstore/eventstoretest keystore/keystoretest; do
  bad=$(go list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' "$mod/$p" | grep -v "^$mod/" | grep -v '^golang\.org/x/' || true)
  if [ -n "$bad" ]; then
    echo "import rule broken: $p depends on $(echo $bad | tr '\n' ' ')(the domain uses the standard library and golang.org/x only)"
    fail=1
  fi
done
for p in api api/client; do
  forbid "$p" '^(github\.com/jackc/|github\.com/hashicorp/)' "the HTTP layer never uses pgx or Vault"
done
bad=$(go list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' "$mod/api/wire" | grep -v "^$mod/api/wire\$" || true)
if [ -n "$bad" ]; then
  echo "import rule broken: api/wire depends on $(echo $bad | tr '\n' ' ')(the wire types depend on the standard library only)"
  fail=1
fi
for p in eventstore/postgres forgettable/postgres projection/postgres api/postgres; do
  forbid "$p" '^github\.com/hashicorp/' "a PostgreSQL adapter never uses Vault"
done
forbid keystore/vault '^github\.com/jackc/' "the Vault adapter never uses pgx"
exit $fail
