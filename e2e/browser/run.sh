#!/usr/bin/env bash
# run.sh: the one entry point of the browser end-to-end tests. Installs what
# is missing (Debian's Chromium, the npm packages), builds the Go server,
# runs it on a free loopback port with a throw-away SQLite store, runs the
# tests against it, and stops it. Exits non-zero if anything fails.
#   bash e2e/browser/run.sh
# Screenshots land in e2e/browser/out/ (test/rooms-screens.test.js also
# copies its own to $PAGE_SHOTS when that is set). E2E_PORT_MIN/E2E_PORT_MAX
# bound the ports tried (default 3100..3199). The suite takes about 5.5
# minutes on two shared cores; 600 s is the hard stop. test/node-reference.test.js runs the
# same page against the Node reference server (loadtest/reference) and skips
# itself without PostgreSQL on 127.0.0.1:5432 or that folder's node_modules.
# test/failover*.test.js run a primary and a backup on PostgreSQL (a
# throw-away e2e_fo_* database) behind nginx, kill the primary and watch the
# pages move to the backup; test/report-nginx.test.js does the same behind
# the report's own nginx block (test/report-nginx.conf: no Host, no Upgrade,
# no X-Forwarded-For) and brings the primary back, and
# test/report-nginx-conversations.test.js runs rooms, direct messages,
# typing, edit, delete, search and unread counts there, across a kill of the
# primary. They skip without nginx or PostgreSQL, except under CI=true, where
# they fail.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
export DEBIAN_FRONTEND=noninteractive

log() { printf 'run.sh: %s\n' "$*" >&2; }

if [ ! -x /usr/bin/chromium ]; then
  log "installing chromium"
  apt-get install -y chromium >/dev/null || { apt-get update >/dev/null && apt-get install -y chromium >/dev/null; }
fi

# nginx for test/failover*.test.js (primary + backup behind the repository's
# nginx.conf): scripts/ensure-nginx.sh prints its path, installing Debian's
# package when it is missing. Without it they skip (fail under CI=true).
if nginx_bin="$(bash "$repo/scripts/ensure-nginx.sh")"; then
  export NGINX_BIN="$nginx_bin"
else
  log "no nginx: test/failover*.test.js will skip (and fail under CI=true)"
fi

cd "$here"
if [ ! -d node_modules ]; then
  log "npm ci"
  npm ci --no-audit --no-fund
fi
# The page is also tested against the Node reference server
# (test/node-reference.test.js), which needs its packages.
if [ ! -d "$repo/loadtest/reference/node_modules" ]; then
  log "npm ci in loadtest/reference"
  (cd "$repo/loadtest/reference" && npm ci --no-audit --no-fund)
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/chat-e2e.XXXXXX")"
server_pid=""
cleanup() {
  status=$?
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$server_pid" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ] && [ -f "$tmp/chatd.log" ]; then
    log "server log (last 40 lines):"
    tail -n 40 "$tmp/chatd.log" >&2
  fi
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building the server"
(cd "$repo" && timeout 300 go build -o "$tmp/chatd" .)

port="$(node free-port.js)"
log "starting the server on 127.0.0.1:$port"
env -u DATABASE_URL PORT="$port" ADDR=127.0.0.1 SQLITE_PATH="$tmp/chat.db" \
  "$tmp/chatd" >"$tmp/chatd.log" 2>&1 &
server_pid=$!

base="http://127.0.0.1:$port"
healthy=""
for _ in $(seq 100); do
  if ! kill -0 "$server_pid" 2>/dev/null; then log "the server exited at start-up"; exit 1; fi
  if node -e "fetch('$base/healthz').then(r => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))"; then
    healthy=1; break
  fi
  sleep 0.2
done
[ -n "$healthy" ] || { log "no 200 from $base/healthz in time"; exit 1; }

mkdir -p out
# The files named on the command line, or every test file.
if [ "$#" -gt 0 ]; then files=("$@"); else files=(test/*.test.js); fi
log "running ${#files[@]} test file(s) against $base"
# Every test sets its own timeout (45..180 s). Node 20 also applies
# --test-timeout to each test *file* as a whole, and chat.test.js alone takes
# about 45 s on two idle cores: 240 s keeps a loaded machine from failing a
# file whose tests all pass; `timeout 600` still bounds the run.
BASE_URL="$base" CHATD_BIN="$tmp/chatd" \
  timeout 600 node --test --test-concurrency=1 --test-timeout=240000 "${files[@]}"
