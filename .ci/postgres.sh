#!/usr/bin/env bash
# Start a throwaway PostgreSQL server from the Debian packages, on loopback, and print the
# TEST_POSTGRES_DSN for it. Idempotent: a server already running from this script is reused.
#   eval "$(bash .ci/postgres.sh)"      # exports TEST_POSTGRES_DSN
set -euo pipefail
PORT=${PGTEST_PORT:-55432}
DATA=${PGTEST_DATA:-/tmp/cgs-pgdata}
PASS=cgs-test
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
  echo "postgres.sh: no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)" >&2
  exit 1
fi
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if ! as_pg "$bindir/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  if [ ! -s "$DATA/PG_VERSION" ]; then
    rm -rf "$DATA"; mkdir -p "$DATA"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$DATA"
    pwfile=$(mktemp); echo "$PASS" > "$pwfile"; chmod 644 "$pwfile"
    as_pg "$bindir/initdb" -D "$DATA" -U postgres --pwfile="$pwfile" -A scram-sha-256 >/dev/null
    rm -f "$pwfile"
  fi
  as_pg "$bindir/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k /tmp -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" start >/dev/null
fi
echo "export TEST_POSTGRES_DSN='postgres://postgres:$PASS@127.0.0.1:$PORT/postgres?sslmode=disable'"
