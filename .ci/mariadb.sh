#!/usr/bin/env bash
# Start a throwaway MariaDB server (Debian's mariadb-server, Galera-capable build) on
# loopback, with a user that may create databases, and print TEST_MARIADB_DSN for it.
# Idempotent: a server already running from this script is reused.
#   eval "$(bash .ci/mariadb.sh)"      # exports TEST_MARIADB_DSN
set -euo pipefail
PORT=${MARIADBTEST_PORT:-53306}
DATA=${MARIADBTEST_DATA:-/tmp/cgs-mariadb}
SOCK=$DATA/mariadb.sock
USER_NAME=cgs
PASS=cgs-test
if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  echo "mariadb.sh: mariadbd not found (apt-get install mariadb-server)" >&2
  exit 1
fi
MARIADBD=$(command -v mariadbd || echo /usr/sbin/mariadbd)
alive() { mariadb-admin --socket="$SOCK" -uroot ping >/dev/null 2>&1; }
if ! alive; then
  if [ ! -d "$DATA/mysql" ]; then
    rm -rf "$DATA"; mkdir -p "$DATA"
    [ "$(id -u)" = 0 ] && chown mysql:mysql "$DATA"
    mariadb-install-db --datadir="$DATA" --user=mysql --auth-root-authentication-method=socket >/dev/null
  fi
  "$MARIADBD" --no-defaults --datadir="$DATA" --user=mysql --port="$PORT" --bind-address=127.0.0.1 \
    --socket="$SOCK" --pid-file="$DATA/mariadb.pid" --log-error="$DATA/error.log" \
    --innodb-flush-log-at-trx-commit=0 --skip-log-bin --max-connections=300 >/dev/null 2>&1 &
  for _ in $(seq 1 60); do alive && break; sleep 0.5; done
  alive || { echo "mariadb.sh: the server did not start; see $DATA/error.log" >&2; exit 1; }
  mariadb --socket="$SOCK" -uroot -e "
    CREATE USER IF NOT EXISTS '$USER_NAME'@'127.0.0.1' IDENTIFIED BY '$PASS';
    GRANT ALL PRIVILEGES ON *.* TO '$USER_NAME'@'127.0.0.1' WITH GRANT OPTION;
    FLUSH PRIVILEGES;"
fi
echo "export TEST_MARIADB_DSN='$USER_NAME:$PASS@tcp(127.0.0.1:$PORT)/'"
