#!/usr/bin/env bash
# Installs what `make cluster` (and the fault drills) need beyond `make run`:
# Patroni, etcd and HAProxy from Debian's packages, with the Python modules
# Patroni uses (psycopg2, python3-etcd). Nothing is done if they are there.
# Their system services are not started: the project starts its own.
set -euo pipefail
need=()
command -v etcd >/dev/null || need+=(etcd-server)
command -v haproxy >/dev/null || need+=(haproxy)
[ -x /usr/bin/patroni ] || need+=(patroni)
/usr/bin/python3 -c 'import psycopg2' 2>/dev/null || need+=(python3-psycopg2)
/usr/bin/python3 -c 'import etcd' 2>/dev/null || need+=(python3-etcd)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "missing: ${need[*]}; install them with: sudo apt-get install --no-install-recommends ${need[*]}" >&2
  exit 1
fi
echo "==> installing ${need[*]} (apt; about 20 s)"
export DEBIAN_FRONTEND=noninteractive
# Debian would start etcd and haproxy as services on install: the project
# runs its own, on other ports. policy-rc.d tells invoke-rc.d not to start
# anything while the packages install.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && made_policy=1
fi
trap '[ $made_policy = 1 ] && rm -f "$policy"' EXIT
apt_install() { apt-get install -y -qq -o DPkg::Lock::Timeout=600 --no-install-recommends "${need[@]}" >/dev/null; }
if ! apt_install; then
  echo "    (apt-get update first)"
  apt-get update -qq -o DPkg::Lock::Timeout=600
  apt_install
fi
for svc in etcd haproxy patroni; do
  systemctl stop "$svc" >/dev/null 2>&1 || service "$svc" stop >/dev/null 2>&1 || true
done
