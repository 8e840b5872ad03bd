#!/usr/bin/env bash
# Starts the Node reference server (the seed report's server, see server.js).
#
#   PORT=3000 DATABASE_URL=postgres://postgres@127.0.0.1:5432/chat ./start.sh
#
# Installs the locked dependencies if node_modules is missing, creates the
# database named in DATABASE_URL if it does not exist (the tables are created
# by server.js), then replaces itself with `node server.js`.
set -euo pipefail
cd "$(dirname "$0")"

: "${PORT:=3000}"
: "${DATABASE_URL:=postgres://postgres@127.0.0.1:5432/chat}"
export PORT DATABASE_URL

if [ ! -d node_modules ]; then
  npm ci --no-audit --no-fund
fi

# postgres://user@host:port/name?opts -> name, and the same server's
# maintenance database to run CREATE DATABASE from.
base="${DATABASE_URL%%\?*}"
db="${base##*/}"
admin_url="${base%/*}/postgres"
case "$db" in
  ''|*[!A-Za-z0-9_]*) echo "start.sh: unexpected database name '$db' in DATABASE_URL" >&2; exit 2 ;;
esac
if [ "$(psql "$admin_url" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
  echo "start.sh: creating database $db"
  psql "$admin_url" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $db"
fi

exec node server.js
