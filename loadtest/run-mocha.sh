#!/usr/bin/env bash
# Runs the seed report's 450-user mocha test (test/scalability.test.js)
# against a freshly started server with a fresh, empty store, then stops it.
#
#   loadtest/run-mocha.sh              # the Go server, embedded SQLite store
#   loadtest/run-mocha.sh reference    # the Node reference, fresh PostgreSQL db
#
# go:        builds the repo root with `go build` into a temp dir, runs it as
#            PORT=<port> SQLITE_PATH=<tmp>/chat.db, waits for GET /healthz 200.
# reference: creates database lt_mocha_<pid> on 127.0.0.1:5432 (user postgres,
#            PostgreSQL 13+ for DROP ... WITH (FORCE)),
#            runs reference/start.sh, waits for /socket.io/socket.io.js 200,
#            drops the database afterwards.
#
# The port is the first free one in 3200-3299. Prints the elapsed time of the
# mocha run and exits with mocha's status. The server is stopped on any exit.
set -uo pipefail

mode="${1:-go}"
case "$mode" in
  go|reference) ;;
  *) echo "usage: $0 [go|reference]" >&2; exit 2 ;;
esac

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
tmp="$(mktemp -d /tmp/chatd-mocha.XXXXXX)"
server_pid=""
db=""

cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null
    for _ in $(seq 1 50); do # at most 10 s, then SIGKILL
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -9 "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
  fi
  if [ -n "$db" ]; then
    psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 ||
      echo "run-mocha: could not drop database $db" >&2
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# show_log prints the end of the server log and keeps a copy of all of it,
# since $tmp is removed on exit.
show_log() {
  [ -s "$tmp/server.log" ] || return 0
  local keep="/tmp/run-mocha-$mode-server.$$.log"
  cp "$tmp/server.log" "$keep"
  echo "--- last lines of the server log (all of it: $keep) ---" >&2
  tail -n 30 "$tmp/server.log" >&2
}

fail() {
  echo "run-mocha: $*" >&2
  show_log
  exit 1
}

port=""
for p in $(seq 3200 3299); do
  if [ -z "$(ss -Htln "sport = :$p" 2>/dev/null)" ]; then
    port="$p"
    break
  fi
done
[ -n "$port" ] || fail "no free port in 3200-3299"

if [ ! -d "$here/node_modules" ]; then
  (cd "$here" && npm ci --no-audit --no-fund) || fail "npm ci failed in $here"
fi

if [ "$mode" = go ]; then
  echo "run-mocha: building the Go server"
  (cd "$root" && go build -o "$tmp/chatd" .) || fail "go build failed"
  # DATABASE_URL is removed so that the server cannot pick PostgreSQL.
  env -u DATABASE_URL PORT="$port" SQLITE_PATH="$tmp/chat.db" "$tmp/chatd" >"$tmp/server.log" 2>&1 &
  server_pid=$!
  ready_path=/healthz
else
  db="lt_mocha_$$"
  psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $db" || { db=""; fail "could not create database"; }
  PORT="$port" DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db" "$here/reference/start.sh" >"$tmp/server.log" 2>&1 &
  server_pid=$!
  # The reference has no /healthz; the client bundle is served once it listens.
  ready_path=/socket.io/socket.io.js
fi

echo "run-mocha: waiting for $mode server on 127.0.0.1:$port$ready_path"
ready=""
for _ in $(seq 1 300); do # at most 60 s: the reference may run npm ci first
  kill -0 "$server_pid" 2>/dev/null || fail "server exited before it was ready"
  if curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$port$ready_path"; then
    ready=1
    break
  fi
  sleep 0.2
done
[ -n "$ready" ] || fail "server not ready after 60 s"

echo "run-mocha: running mocha against http://127.0.0.1:$port"
start="$EPOCHREALTIME"
(cd "$here" && TARGET_URL="http://127.0.0.1:$port" timeout -k 5 180 npx mocha)
status=$?
end="$EPOCHREALTIME"
elapsed="$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')"
echo "run-mocha: $mode server, mocha exit status $status, elapsed ${elapsed}s"
[ "$status" -eq 0 ] || show_log
exit "$status"
