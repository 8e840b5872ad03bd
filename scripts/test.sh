#!/usr/bin/env bash
# Runs every test of the project, installing or starting what they need:
# PostgreSQL (must be installed; started if down), npm packages, nginx and
# Chromium (from Debian's packages when missing). CI runs exactly this.
#
#   scripts/test.sh            everything
#   scripts/test.sh go         only the Go checks and tests
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
only=${1:-all}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
started=$(date +%s)

# PostgreSQL: the tests run against a real server. Locally, start it if it is
# installed but down; the URL can be overridden.
export TEST_DATABASE_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
	step "starting PostgreSQL"
	if command -v pg_ctlcluster >/dev/null; then
		pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
	fi
	for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi

# NATS: the second bus implementation is tested against a real server.
export TEST_NATS_URL=${TEST_NATS_URL:-nats://127.0.0.1:4222}
if ! (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; then
	step "starting NATS"
	if [ -x /usr/sbin/nats-server ]; then
		start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
			-a 127.0.0.1 -p 4222 -l /tmp/nats-server.log || true
		for _ in $(seq 1 20); do (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null && break; sleep 0.5; done
	fi
fi

step "nginx (Debian package) for the failover tests"
bash scripts/ensure-nginx.sh

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './node_modules/*'))
if [ -n "$unformatted" ]; then
	echo "not gofmt'ed:"; echo "$unformatted"; exit 1
fi

step "go vet"
go vet ./...

step "go test -race"
go test -race -count=1 -timeout 10m ./...

step "fuzz every client-input decoder briefly (scripts/fuzz.sh 600 for a long run)"
bash scripts/fuzz.sh 3

step "socket.io-client bundle matches its checksums"
bash scripts/update-socketio-client.sh --check

[ "$only" = go ] && { echo "Go checks passed in $(( $(date +%s) - started ))s"; exit 0; }

step "protocol compatibility with the npm socket.io-client 4.x and 2.x (PostgreSQL, incl. a Node-made database)"
bash test/compat/run.sh --pg "$TEST_DATABASE_URL"

step "the report's 450-user mocha test (loadtest/)"
bash loadtest/run-mocha.sh go

step "browser end-to-end (playwright-core + Debian Chromium)"
bash e2e/browser/run.sh

echo
echo "all tests passed in $(( $(date +%s) - started ))s"
