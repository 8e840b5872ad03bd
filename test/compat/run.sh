#!/usr/bin/env bash
# Node compatibility suite: the stock socket.io-client from npm (4.8.x over
# WebSocket and polling, 2.x over EIO=3 WebSocket and polling) against the Go
# server, checking every row of docs/protocol.md.
#
#   test/compat/run.sh                         # build the Go server, run it on the
#                                              # embedded SQLite store, test it
#   TARGET_URL=http://127.0.0.1:3000 test/compat/run.sh   # test a running server
#   test/compat/run.sh --pg postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
#       # also prove "same database": create a fresh PostgreSQL database shaped
#       # and filled the way the Node.js server left it (users with Node bcrypt
#       # hashes, history rows), start the Go server on it, and check that old
#       # users log in and the old history is shown (node-db.test.js). The
#       # database is dropped afterwards.
#
# Extra arguments after `--` go to `node --test` (e.g. -- --test-name-pattern=login).
# Environment: COMPAT_PORT_RANGE (default 3300-3399) for the server's port,
# COMPAT_CONCURRENCY (default 1) test files run at once.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$here"

pg_admin=""
node_args=()
while [ $# -gt 0 ]; do
	case "$1" in
	--pg)
		pg_admin=${2:?--pg needs an admin PostgreSQL URL}
		shift 2
		;;
	--)
		shift
		node_args=("$@")
		break
		;;
	*)
		echo "run.sh: unknown argument $1" >&2
		exit 2
		;;
	esac
done

if [ ! -d node_modules ]; then
	npm ci --no-audit --no-fund
fi

tmp=$(mktemp -d)
server_pid=""
pg_db=""
cleanup() {
	local rc=$?
	if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
		kill "$server_pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$server_pid" 2>/dev/null || true
	fi
	if [ -n "$pg_db" ]; then
		node lib/node-db.js drop "$pg_admin" "$pg_db" >/dev/null 2>&1 || echo "run.sh: could not drop database $pg_db" >&2
	fi
	if [ "$rc" -ne 0 ] && [ -s "$tmp/server.log" ]; then
		echo "---- last lines of the server log ----" >&2
		tail -n 40 "$tmp/server.log" >&2
	fi
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${TARGET_URL:-}" ]; then
	echo "run.sh: building the Go server"
	(cd "$repo" && go build -o "$tmp/chatd" .)

	range=${COMPAT_PORT_RANGE:-3300-3399}
	port=$(node -e '
		const net = require("net");
		const [lo, hi] = process.argv[1].split("-").map(Number);
		const ports = Array.from({ length: hi - lo + 1 }, (_, i) => lo + i).sort(() => Math.random() - 0.5);
		(function next() {
			const p = ports.shift();
			if (p === undefined) { console.error("no free port in " + process.argv[1]); process.exit(1); }
			const s = net.createServer().once("error", next).listen(p, "127.0.0.1", () => s.close(() => console.log(p)));
		})();' "$range")

	server_env=(PORT="$port")
	if [ -n "$pg_admin" ]; then
		pg_db="chat_compat_$(node -e 'console.log(require("crypto").randomBytes(5).toString("hex"))')"
		db_url=$(node lib/node-db.js create "$pg_admin" "$pg_db")
		server_env+=(DATABASE_URL="$db_url")
		export COMPAT_DATABASE_URL="$db_url"
		echo "run.sh: PostgreSQL database $pg_db filled as the Node.js server left it"
	else
		server_env+=(SQLITE_PATH="$tmp/chat.db")
	fi

	env "${server_env[@]}" "$tmp/chatd" >"$tmp/server.log" 2>&1 &
	server_pid=$!
	export TARGET_URL="http://127.0.0.1:$port"
	ready=""
	for _ in $(seq 150); do
		if ! kill -0 "$server_pid" 2>/dev/null; then
			echo "run.sh: the server exited during start-up" >&2
			cat "$tmp/server.log" >&2
			exit 1
		fi
		if curl -fsS -o /dev/null --max-time 1 "$TARGET_URL/healthz" 2>/dev/null; then
			ready=1
			break
		fi
		sleep 0.2
	done
	[ -n "$ready" ] || { echo "run.sh: $TARGET_URL/healthz did not answer 200 within 30 s" >&2; exit 1; }
	echo "run.sh: server up at $TARGET_URL (pid $server_pid)"
fi

status=0
# Each test file gets 3 minutes: the EIO3 (socket.io-client 2.x) suites over
# long-polling take close to a minute on a loaded CI machine.
node --test --test-concurrency="${COMPAT_CONCURRENCY:-1}" --test-timeout=180000 "${node_args[@]}" || status=$?
exit "$status"
