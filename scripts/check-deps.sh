#!/usr/bin/env bash
# Checks that this machine has what `make test` and `make run` need, and says
# how to get what is missing. (.ci/run installs it on a fresh machine.)
set -euo pipefail
missing=0
if ! command -v go >/dev/null; then
  echo "missing: Go (https://go.dev/dl/), 1.26 or later"; missing=1
fi
pgbin=""
if command -v pg_config >/dev/null && [ -x "$(pg_config --bindir)/initdb" ]; then
  pgbin=$(pg_config --bindir)
else
  pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
fi
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
  echo "missing: PostgreSQL server binaries (initdb, pg_ctl). On Debian/Ubuntu: apt-get install -y postgresql"
  missing=1
fi
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  echo "missing: the 'postgres' user (PostgreSQL refuses to run as root; the Debian package creates it)"
  missing=1
fi
exit $missing
