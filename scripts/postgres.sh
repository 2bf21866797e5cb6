#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 with trust
# authentication for the postgres user, as the test suite expects
# (REMPART_TEST_PG_URL overrides the address and skips this).
set -euo pipefail
if [ -n "${REMPART_TEST_PG_URL:-}" ]; then exit 0; fi
answers() { pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1; }
if command -v pg_isready >/dev/null 2>&1 && answers; then exit 0; fi
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  echo "installing PostgreSQL from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
fi
if command -v pg_lsclusters >/dev/null 2>&1 && [ -n "$(pg_lsclusters -h 2>/dev/null)" ]; then
  ver=$(pg_lsclusters -h | awk 'NR==1{print $1}'); name=$(pg_lsclusters -h | awk 'NR==1{print $2}')
  pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start || true
fi
for _ in $(seq 1 30); do answers && break; sleep 1; done
if ! answers; then
  # No cluster could be started: run a private one in a temporary directory.
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  dir=$(mktemp -d /tmp/rempart-pg.XXXXXX); chown postgres "$dir" 2>/dev/null || true
  as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
  as_pg "$bin/initdb -D $dir/data -A trust -U postgres >/dev/null"
  as_pg "$bin/pg_ctl -D $dir/data -o '-k $dir -h 127.0.0.1 -p 5432' -l $dir/log -w start >/dev/null"
fi
answers || { echo "PostgreSQL did not start"; exit 1; }
# Trust authentication for local TCP connections is what the image ships;
# make sure the postgres role can connect without a password.
psql "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable" -qAtc 'SELECT 1' >/dev/null
