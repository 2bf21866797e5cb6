#!/usr/bin/env bash
# Runs the load benchmark (cmd/rempart-bench) against a freshly built
# Rempart, once on SQLite and once on PostgreSQL, each on an empty database,
# and leaves the JSON results and server logs in $OUT (default
# /tmp/rempart-bench). Any extra arguments are passed to rempart-bench
# (sizes, --scenarios…); docs/BENCHMARKS.md gives the ones used for the
# published figures. Not a test: nothing here runs in CI.
#   scripts/bench.sh --users 5000 --small-rooms 1000 --duration 30s
# Environment:
#   KEEP_DATA=1      reuse the data set of an earlier run (the SQLite data
#                    directory, the PostgreSQL database and the accounts and
#                    rooms listed in $DATA_DIR/state-$backend.json) instead of
#                    starting empty; sizes larger than the data set's extend it
#   DATA_DIR         where data sets live (default $OUT)
#   PG_DB            PostgreSQL database (default rempart_bench)
#   BENCH_PPROF=1    serve /debug/pprof on the admin listener (127.0.0.1:18009)
#   BENCH_SEARCH_ALL=1  user_directory.search_all_users: true
#   PORT             client listener port (default 18008; the admin listener
#                    takes PORT+1)
#   BENCH_HASH_KIB   argon2id memory of new password hashes (default 1024)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/rempart-bench}
BACKENDS=${BACKENDS:-"sqlite postgres"}
DATA_DIR=${DATA_DIR:-$OUT}
PG_DB=${PG_DB:-rempart_bench}
PORT=${PORT:-18008}
mkdir -p "$OUT" "$DATA_DIR"
export CGO_ENABLED=0
go build -o "$OUT/rempart" ./cmd/rempart
go build -o "$OUT/rempart-bench" ./cmd/rempart-bench
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
echo "commit $commit; $(nproc) cores; $(uname -r); $(go version)" | tee "$OUT/machine.txt"
for backend in $BACKENDS; do
  data="$DATA_DIR/data-$backend"
  state="$DATA_DIR/state-$backend.json"
  if [ "${KEEP_DATA:-}" != 1 ]; then
    rm -rf "$data" "$state"
  fi
  db=""
  if [ "$backend" = postgres ]; then
    scripts/postgres.sh
    if [ "${KEEP_DATA:-}" != 1 ]; then
      psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)"
    fi
    if psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" | grep -q 1; then
      # A kept data set: give the planner fresh statistics, which a server
      # with autovacuum off (as on CI machines) never gathers by itself.
      psql -h 127.0.0.1 -U postgres -d "$PG_DB" -qc "ANALYZE"
    else
      psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $PG_DB"
    fi
    db=$'database:\n  url: postgres://postgres@127.0.0.1:5432/'"$PG_DB"'?sslmode=disable'
  fi
  cat > "$OUT/$backend.yaml" <<YAML
server_name: bench.local
public_baseurl: http://127.0.0.1:$PORT/
listen: 127.0.0.1:$PORT
admin_listen: 127.0.0.1:$((PORT + 1))
data_dir: $data
registration:
  mode: closed
  shared_secret: bench-secret
rate_limits:
  enabled: false
limits:
  # Cheap password hashes, so that registering 300,000 accounts takes
  # minutes rather than hours (argon2id at 64 MiB: about 40/s on 2 cores).
  password_hash_memory_kib: ${BENCH_HASH_KIB:-1024}
log:
  level: warn
admin_pprof: ${BENCH_PPROF:+true}
user_directory:
  search_all_users: ${BENCH_SEARCH_ALL:+true}
$db
YAML
  echo "== $backend"
  "$OUT/rempart-bench" --server-cmd "$OUT/rempart serve --config $OUT/$backend.yaml" \
    --server-log "$OUT/server-$backend.log" --url http://127.0.0.1:$PORT --shared-secret bench-secret \
    --prefix "b$backend" --json "$OUT/$backend.json" --state "$state" "$@" | tee "$OUT/$backend.txt"
done
