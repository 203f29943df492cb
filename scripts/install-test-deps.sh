#!/usr/bin/env bash
# Installs what the test suite needs from Debian's packages: git, a
# PostgreSQL server, PgBouncer, Chromium, node and npm (the Node
# example's tests), and python3 with pip (the pip recipe's test). It only calls apt-get when
# something is missing, so a warm machine pays nothing.
set -euo pipefail

need=()
command -v git >/dev/null || need+=(git)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || need+=(pgbouncer)
command -v chromium >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
/usr/bin/python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing: ${need[*]}; run as root or install them with apt-get" >&2
    exit 1
  fi
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian starts a cluster and a pgbouncer on install; the tests run their
# own on free ports, so stop the packaged ones if they run.
if command -v pg_ctlcluster >/dev/null && [ -z "${KEEP_SYSTEM_POSTGRES:-}" ]; then
  for c in /etc/postgresql/*/main; do
    [ -d "$c" ] && pg_ctlcluster "$(basename "$(dirname "$c")")" main stop 2>/dev/null || true
  done
fi
service pgbouncer stop >/dev/null 2>&1 || true
