#!/usr/bin/env bash
# Runs the official Socket.IO v5 and Engine.IO v4 protocol test suites
# against our server/socketio and server/socketio/engineio, configured as the
# chat server configures them (see README.md).
#
#   test/conformance/run.sh
#
# Environment:
#   CONFORMANCE_SUITES   directory holding sio/test-suite and eio/test-suite
#                        (default /tmp/conf); without it the run is SKIPPED
#   CONFORMANCE_CONFIGS  configurations to run (default
#                        "sio sio-noeio3 eio"; also available:
#                        sio-authdelay, a diagnostic)
#   CONFORMANCE_RUNS     runs of each configuration (default 1); the races
#                        of the suites show up better over several
#   CONFORMANCE_OUT      where reports and server logs go (default: a new
#                        temporary directory, kept and printed)
#
# The suites hard-code http://localhost:3000, so port 3000 must be free; the
# script refuses to start otherwise. The exit status is 0 when every failure
# is listed in known-failures.tsv (and when the run is skipped), 1 otherwise.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

suites=${CONFORMANCE_SUITES:-/tmp/conf}
configs=${CONFORMANCE_CONFIGS:-"sio sio-noeio3 eio"}
runs=${CONFORMANCE_RUNS:-1}
port=3000

skip() {
	echo "run.sh: $*" >&2
	echo "SKIPPED: protocol conformance suites not run"
	exit 0
}

# config → "suite binary flags..."
config_spec() {
	case "$1" in
	sio) echo "sio sioserver" ;;                            # server/socketio as the chat server sets it: AllowEIO3
	sio-noeio3) echo "sio sioserver -eio3=false" ;;         # as sio, but EIO=3 refused
	sio-authdelay) echo "sio sioserver -auth-delay=20ms" ;; # diagnostic for the suite's auth race
	eio) echo "eio eioserver" ;;                            # the bare engine, server/socketio/engineio
	*) return 1 ;;
	esac
}

needed=()
for c in $configs; do
	spec=$(config_spec "$c") || {
		echo "run.sh: unknown configuration $c" >&2
		exit 2
	}
	s=${spec%% *}
	[[ " ${needed[*]-} " == *" $s "* ]] || needed+=("$s")
done
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || {
	echo "run.sh: CONFORMANCE_RUNS must be a positive integer" >&2
	exit 2
}

for s in "${needed[@]}"; do
	if [ ! -f "$suites/$s/test-suite/test-suite.js" ]; then
		cat >&2 <<EOF
run.sh: no test suite at $suites/$s/test-suite (set CONFORMANCE_SUITES).
The suites are the test-suite folders of two public repositories; CI cannot
fetch them, so get them by hand, e.g.:

  mkdir -p /tmp/conf/sio /tmp/conf/eio
  git clone --depth 1 https://github.com/socketio/socket.io-protocol /tmp/conf/sio-repo
  git clone --depth 1 https://github.com/socketio/engine.io-protocol /tmp/conf/eio-repo
  cp -r /tmp/conf/sio-repo/test-suite /tmp/conf/sio/
  cp -r /tmp/conf/eio-repo/test-suite /tmp/conf/eio/

Keep them outside this repository; never copy their code into it.
EOF
		skip "suite $s missing"
	fi
done
command -v node >/dev/null && command -v npm >/dev/null || skip "node and npm are needed to run the suites"

port_busy() {
	# Something answering on either loopback address would get the
	# suite's requests for localhost:3000.
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
	(exec 3<>"/dev/tcp/::1/$port") 2>/dev/null && return 0
	return 1
}
if port_busy; then
	echo "run.sh: port $port is in use; the suites only talk to localhost:$port. Stop whatever listens there and run again:" >&2
	(command -v ss >/dev/null && ss -ltnp "sport = :$port") >&2 || true
	exit 1
fi

out=${CONFORMANCE_OUT:-$(mktemp -d /tmp/conformance.XXXXXX)}
mkdir -p "$out/bin"
server_pid=""

stop_server() {
	[ -n "$server_pid" ] || return 0
	if kill -0 "$server_pid" 2>/dev/null; then
		kill "$server_pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$server_pid" 2>/dev/null || true
	fi
	wait "$server_pid" 2>/dev/null || true
	server_pid=""
}
trap stop_server EXIT
trap 'exit 130' INT TERM

echo "run.sh: building the test servers"
(cd "$repo" && go build -o "$out/bin/" ./test/conformance/sioserver ./test/conformance/eioserver)

for s in "${needed[@]}"; do
	dir="$suites/$s/test-suite"
	if [ ! -x "$dir/node_modules/.bin/mocha" ]; then
		echo "run.sh: installing the $s suite's dependencies (npm ci in $dir)"
		(cd "$dir" && { npm ci --no-audit --no-fund || npm install --no-audit --no-fund; }) >"$out/npm-$s.log" 2>&1 || {
			echo "run.sh: npm failed in $dir; see $out/npm-$s.log" >&2
			exit 1
		}
	fi
done

start_server() { # log binary flags...
	local log=$1 bin=$2
	shift 2
	if port_busy; then
		echo "run.sh: port $port was taken by someone else meanwhile" >&2
		exit 1
	fi
	"$out/bin/$bin" -addr "127.0.0.1:$port" "$@" >"$log" 2>&1 &
	server_pid=$!
	for _ in $(seq 100); do
		if ! kill -0 "$server_pid" 2>/dev/null; then
			echo "run.sh: $bin exited at start:" >&2
			tail -n 20 "$log" >&2
			server_pid=""
			exit 1
		fi
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "run.sh: $bin did not start listening within 10 s" >&2
	exit 1
}

for c in $configs; do
	read -r s bin flags <<<"$(config_spec "$c")"
	dir="$suites/$s/test-suite"
	for i in $(seq "$runs"); do
		# shellcheck disable=SC2086 # flags is a word list
		start_server "$out/$c.$i.server.log" "$bin" $flags
		report="$out/$c.$i.json"
		rm -f "$report"
		(cd "$dir" && timeout 600 node_modules/.bin/mocha test-suite.js --exit \
			--reporter json --reporter-option "output=$report") >"$out/$c.$i.mocha.log" 2>&1 || true
		stop_server
		if [ -s "$report" ]; then
			node -e 'const r=require(process.argv[1]).stats; console.log(`run.sh: ${process.argv[2]} run ${process.argv[3]}: ${r.passes} passed, ${r.failures} failed of ${r.tests}`)' \
				"$report" "$c" "$i"
		else
			echo "run.sh: $c run $i: no report; see $out/$c.$i.mocha.log"
		fi
	done
done

status=0
node "$here/summarize.mjs" "$here/known-failures.tsv" "$out" $configs || status=$?
echo
echo "run.sh: reports and server logs in $out"
exit "$status"
