#!/usr/bin/env bash
# The import rules of docs/architecture.md: imports point inward.
#  - eventstore, keystore, forgettable (the domain) import no adapter and no
#    driver: standard library, golang.org/x and each other only.
#  - api (and its wire types and client) imports neither pgx nor Vault; its
#    PostgreSQL adapter api/postgres may use pgx, never Vault.
#  - adapters (eventstore/postgres, keystore/vault) do not import each other.
set -euo pipefail
cd "$(dirname "$0")/.."
mod=$(go list -m)
fail=0
check() { # package, forbidden-regexp, why
  local pkg=$1 re=$2 why=$3
  go list "$pkg" >/dev/null 2>&1 || return 0
  local bad
  bad=$(go list -deps "$pkg" | grep -E "$re" || true)
  if [ -n "$bad" ]; then
    echo "import rule broken: $pkg depends on $(echo $bad | tr '\n' ' ')($why)"
    fail=1
  fi
}
for p in eventstore keystore forgettable projection; do
  check "$mod/$p" "^($mod/(api|cmd|internal)|$mod/.*/(postgres|vault)$|github.com/jackc/|github.com/hashicorp/|github.com/go-chi/)" "the domain must not import adapters, drivers or the HTTP layer"
done
for p in api api/wire api/client; do
  check "$mod/$p" "^(github.com/jackc/|github.com/hashicorp/|$mod/eventstore/postgres|$mod/keystore/vault|$mod/api/postgres)" "api must not import pgx, Vault or adapters"
done
if go list "$mod/api/wire" >/dev/null 2>&1; then
  bad=$(go list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' "$mod/api/wire" | grep -v "^$mod/api/wire\$" || true)
  if [ -n "$bad" ]; then
    echo "import rule broken: $mod/api/wire depends on $(echo $bad | tr '\n' ' ')(the wire types depend on the standard library only)"
    fail=1
  fi
fi
check "$mod/api/postgres" "^(github.com/hashicorp/|$mod/keystore/vault)" "adapters must not import each other"
check "$mod/eventstore/postgres" "^($mod/keystore/vault|github.com/hashicorp/)" "adapters must not import each other"
check "$mod/keystore/vault" "^($mod/eventstore/postgres|github.com/jackc/)" "adapters must not import each other"
check "$mod/projection/postgres" "^($mod/keystore/vault|$mod/eventstore/postgres|$mod/api/postgres|github.com/hashicorp/)" "adapters must not import each other"
exit $fail
