#!/usr/bin/env bash
# Runs every test of the project, installing or starting what they need:
# PostgreSQL and nats-server (scripts/ensure-services.sh), npm packages, nginx
# and Chromium (from Debian's packages when missing). CI runs exactly this.
#
#   scripts/test.sh            everything
#   scripts/test.sh go         only the Go checks and tests
#
# Each step's output goes to the terminal and to a log file of its own in
# ${TMPDIR:-/tmp}/chatd-test-<time>-<pid>/ (TEST_LOG_DIR to choose another).
# A failed run ends with a summary: the step that failed, the failing tests
# named in its log, and where that log is. A run that passes removes its logs
# (unless TEST_LOG_DIR was given).
set -euo pipefail
cd "$(dirname "$0")/.."
only=${1:-all}

started=$(date +%s)
keep_logs=${TEST_LOG_DIR:+1}
LOG_DIR=${TEST_LOG_DIR:-${TMPDIR:-/tmp}/chatd-test-$(date +%Y%m%d-%H%M%S)-$$}
mkdir -p "$LOG_DIR"
step_no=0
step_name=
step_log=

# step NAME: prints the step's header and starts its log.
step() {
	printf '\n\033[1m== %s\033[0m\n' "$*"
	quiet_step "$*"
}
# quiet_step NAME: a step without a header (it prints nothing when all is well).
quiet_step() {
	step_no=$((step_no + 1))
	step_name=$*
	local slug
	slug=$(printf '%s' "$*" | tr -c 'A-Za-z0-9.' '-' | tr -s '-' | cut -c1-50)
	step_log=$LOG_DIR/$(printf '%02d' "$step_no")-${slug%-}.log
	printf '== %s\n' "$*" >"$step_log"
}
# run CMD...: runs CMD (a command or a function) for the current step, its
# output and errors to the terminal and to the step's log. Under set -e and
# pipefail, CMD's failure ends the script.
run() { "$@" 2>&1 | tee -a "$step_log"; }

# The output reaches the terminal through tee, so the Node tools that look
# for a terminal would change their look: keep colours and node --test's
# spec reporter as they are on one. Under CI (no terminal) nothing changes.
if [ -t 1 ]; then
	export FORCE_COLOR=${FORCE_COLOR:-1}
	case " ${NODE_OPTIONS:-} " in
	*" --test-reporter"*) ;;
	*) export NODE_OPTIONS="--test-reporter=spec${NODE_OPTIONS:+ $NODE_OPTIONS}" ;;
	esac
fi

# failing_tests LOG: the lines of LOG that name what failed: Go's `--- FAIL:`,
# `FAIL <package>`, panics (and the tests a timeout caught running), compiler
# and vet errors (file.go:line:), a fuzzer's saved input, node --test's
# `not ok` (TAP) or `✖` (spec), mocha's `1) title` and `N failing`.
failing_tests() {
	sed -e 's/\x1b\[[0-9;]*[A-Za-z]//g' -e 's/\r$//' "$1" |
		grep -E -e '^[[:space:]]*--- FAIL: ' -e '^FAIL[[:space:]]' -e '^panic: ' \
			-e '^[[:space:]]+(Test|Fuzz)[^[:space:]]* \([0-9.hms]+\)$' \
			-e '^[^[:space:]]+\.go:[0-9]+(:[0-9]+)?: ' -e 'Failing input written to ' \
			-e '^[[:space:]]*not ok [0-9]+ - ' -e '^[[:space:]]*✖ ' \
			-e '^[[:space:]]*[0-9]+\) ' -e '^[[:space:]]*[0-9]+ failing' |
		grep -v -e '✖ failing tests:' | sed 's/^[[:space:]]*//' | awk '!seen[$0]++' | head -n 40
}

# summary runs on every exit: quiet on success, the failure's essentials otherwise.
summary() {
	local status=$?
	set +e
	if [ "$status" = 0 ]; then
		[ -n "$keep_logs" ] || rm -rf "$LOG_DIR"
		exit 0
	fi
	printf '\n\033[1m== FAILED (exit status %s after %ss)\033[0m\n' "$status" "$(($(date +%s) - started))"
	if [ -z "$step_name" ]; then
		echo "before the first step"
		exit "$status"
	fi
	echo "step:     $step_name"
	local names
	names=$(failing_tests "$step_log")
	if [ -n "$names" ]; then
		echo "failed:"
		printf '%s\n' "$names" | sed 's/^/  /'
	else
		echo "no failing test named in the log; its last lines:"
		sed -e 's/\x1b\[[0-9;]*[A-Za-z]//g' "$step_log" | tail -n 15 | sed 's/^/  /'
	fi
	echo "full log: $step_log"
	echo "all logs: $LOG_DIR/"
	exit "$status"
}
trap summary EXIT
trap 'exit 130' INT TERM

# PostgreSQL and NATS: the tests run against real servers (the second bus
# implementation against NATS). Installed and started when missing; silent
# when both answer. The URLs can be overridden; the services are then left
# alone. Locally a test that cannot reach them skips; under CI=true it fails.
export TEST_DATABASE_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
export TEST_NATS_URL=${TEST_NATS_URL:-nats://127.0.0.1:4222}
quiet_step "PostgreSQL and NATS (scripts/ensure-services.sh)"
if [ "${CI:-}" = true ]; then
	run bash scripts/ensure-services.sh
else
	run bash scripts/ensure-services.sh || echo "scripts/test.sh: going on without them; the tests that need them will skip"
fi

step "nginx (Debian package) for the failover tests"
run bash scripts/ensure-nginx.sh

step "gofmt"
check_gofmt() {
	local unformatted
	# shellcheck disable=SC2046 # one argument per file name
	unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './node_modules/*'))
	if [ -n "$unformatted" ]; then
		echo "not gofmt'ed:"; echo "$unformatted"; exit 1
	fi
}
run check_gofmt

step "go vet"
run go vet ./...

step "go test -race"
run go test -race -count=1 -timeout 10m ./...

step "fuzz every client-input decoder briefly (scripts/fuzz.sh 600 for a long run)"
run bash scripts/fuzz.sh 2000x

step "socket.io-client bundle matches its checksums"
run bash scripts/update-socketio-client.sh --check

[ "$only" = go ] && { echo "Go checks passed in $(( $(date +%s) - started ))s"; exit 0; }

step "protocol compatibility with the npm socket.io-client 4.x and 2.x (PostgreSQL, incl. a Node-made database)"
run bash test/compat/run.sh --pg "$TEST_DATABASE_URL"

step "the report's 450-user mocha test (loadtest/)"
run bash loadtest/run-mocha.sh go

step "browser end-to-end (playwright-core + Debian Chromium)"
run bash e2e/browser/run.sh

echo
echo "all tests passed in $(( $(date +%s) - started ))s"
