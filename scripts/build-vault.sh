#!/usr/bin/env bash
# Builds the Vault server used by `make test` and `make run` into bin/vault.
#
# There is no Vault package for this machine kind, so we build Vault from its Go
# module with the wrapper module in tools/vaultdev (pinned versions, committed
# go.sum). The first build is slow (~3 min of module downloads, ~15-20 min of
# compiling, ~5 GB of memory); later runs reuse bin/vault while the wrapper's
# go.mod/go.sum are unchanged. Set VAULT_BIN to use an existing Vault instead.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${VAULT_BIN:-}" ]; then
  "$VAULT_BIN" version >/dev/null || { echo "VAULT_BIN=$VAULT_BIN does not run" >&2; exit 1; }
  exit 0
fi

out=bin/vault
stamp=bin/.vault.stamp
want=$(cat tools/vaultdev/go.mod tools/vaultdev/go.sum tools/vaultdev/main.go | sha256sum | cut -c1-16)
if [ -x "$out" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi

mkdir -p bin
start=$(date +%s)
ticker() {
  while sleep 60; do
    echo "  ... still building Vault ($(( ($(date +%s) - start) / 60 )) min so far)"
  done
}
ticker & tick=$!
trap 'kill $tick 2>/dev/null || true' EXIT

echo "==> building the Vault dev server into bin/vault (first time only: ~3 min download, ~15-20 min compile, ~5 GB RAM)"
cd tools/vaultdev
echo "  downloading Vault's modules..."
go mod download
echo "  compiling Vault (this is the slow part)..."
go build -mod=mod -trimpath -ldflags='-s -w' -o ../../bin/vault.tmp .
cd ../..
mv bin/vault.tmp "$out"
echo "$want" > "$stamp"
echo "==> built $("$out" version) in $(( ($(date +%s) - start) / 60 )) min"
