#!/usr/bin/env bash
# Runs every Rempart test on both storage backends (embedded SQLite, then
# PostgreSQL), after gofmt, go vet and staticcheck. Starts a PostgreSQL
# server if none answers on 127.0.0.1:5432, installing it from Debian's
# packages when absent, and installs ClamAV's daemon for the antivirus
# tests. Usage: scripts/test.sh [go test flags…]
set -euo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed:"; echo "$unformatted"; exit 1; fi

echo "== go vet"
go vet -tags goolm ./...

echo "== staticcheck"
STATICCHECK_VERSION=v0.8.2
if ! command -v staticcheck >/dev/null 2>&1 && [ ! -x "$(go env GOPATH)/bin/staticcheck" ]; then
  go install "honnef.co/go/tools/cmd/staticcheck@${STATICCHECK_VERSION}"
fi
PATH="$(go env GOPATH)/bin:$PATH" staticcheck -tags goolm ./...

scripts/postgres.sh
scripts/clamav.sh

status=0
echo "== go test (sqlite)"
REMPART_TEST_DB=sqlite go test -tags goolm -count=1 -timeout 20m "$@" ./... || status=1
echo "== go test (postgres)"
REMPART_TEST_DB=postgres go test -tags goolm -count=1 -timeout 20m "$@" ./... || status=1
exit $status
