#!/usr/bin/env bash
# Runs the load benchmark (cmd/rempart-bench) against a freshly built
# Rempart, once on SQLite and once on PostgreSQL, each on an empty database,
# and leaves the JSON results and server logs in $OUT (default
# /tmp/rempart-bench). Any extra arguments are passed to rempart-bench
# (sizes, --scenarios…); docs/BENCHMARKS.md gives the ones used for the
# published figures. Not a test: nothing here runs in CI.
#   scripts/bench.sh --users 5000 --small-rooms 1000 --duration 30s
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/rempart-bench}
BACKENDS=${BACKENDS:-"sqlite postgres"}
mkdir -p "$OUT"
export CGO_ENABLED=0
go build -o "$OUT/rempart" ./cmd/rempart
go build -o "$OUT/rempart-bench" ./cmd/rempart-bench
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
echo "commit $commit; $(nproc) cores; $(uname -r); $(go version)" | tee "$OUT/machine.txt"
for backend in $BACKENDS; do
  data="$OUT/data-$backend"
  rm -rf "$data"
  db=""
  if [ "$backend" = postgres ]; then
    scripts/postgres.sh
    psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS rempart_bench WITH (FORCE)"
    psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE rempart_bench"
    db=$'database:\n  url: postgres://postgres@127.0.0.1:5432/rempart_bench?sslmode=disable'
  fi
  cat > "$OUT/$backend.yaml" <<YAML
server_name: bench.local
public_baseurl: http://127.0.0.1:18008/
listen: 127.0.0.1:18008
admin_listen: 127.0.0.1:18009
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
$db
YAML
  echo "== $backend"
  "$OUT/rempart-bench" --server-cmd "$OUT/rempart serve --config $OUT/$backend.yaml" \
    --server-log "$OUT/server-$backend.log" --url http://127.0.0.1:18008 --shared-secret bench-secret \
    --prefix "b$backend" --json "$OUT/$backend.json" "$@" | tee "$OUT/$backend.txt"
done
