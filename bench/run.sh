#!/usr/bin/env bash
# Runs the Go benchmarks whose figures the docs cite, keeps their raw
# `go test -bench` output in bench/results/<section>.txt (what benchstat
# reads, plus "# key: value" lines saying when, where and how), and writes
# bench/RESULTS.md from every kept file (bench/cmd/benchreport).
#
#   bench/run.sh                       # every section (about 5 min on 2 cores)
#   BENCH=search bench/run.sh          # only the sections whose name matches
#   BENCH='fanout|room' COUNT=10 bench/run.sh
#
# Sections, in order:
#   fanout   BenchmarkFanout: the hub's pass over 1 .. 10,000 sockets (./server/)
#   room     BenchmarkRoomFanout: a room of 10 against general on 5,000 sockets (./server/)
#   send     BenchmarkSendPrepared: the engine's WebSocket write (./server/socketio/engineio/)
#   codec    Socket.IO decode / encode / prepare (./server/socketio/)
#   limit    the rate limiter's Allow and memory per key (./server/limit/)
#   bcrypt   bcrypt cost 10, one core and all (./server/)
#   bus      bus publish -> delivery on PostgreSQL NOTIFY and NATS, NATS publish confirmation (./bus/...)
#   search   SearchMessages over SEARCH_MESSAGES messages, PostgreSQL and SQLite (./store/...);
#            seeding 1,000,000 takes about 15 s on PostgreSQL, 8 s on SQLite
#
# Environment (all optional):
#   BENCH=regexp           sections to run (grep -E on the names above; default all).
#                          Each section run replaces only its own file in
#                          bench/results/; RESULTS.md is regenerated from all files
#   COUNT=6                runs of each benchmark (go test -count; benchstat wants 6
#                          or more for a confidence interval)
#   SEARCH_MESSAGES=1000000  messages seeded per store (CHAT_BENCH_MESSAGES)
#   TEST_DATABASE_URL      PostgreSQL for bus and search
#                          (default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable)
#   TEST_NATS_URL          NATS for bus (default nats://127.0.0.1:4222)
#
# bus and search need PostgreSQL (and bus NATS): scripts/ensure-services.sh
# is run first, which starts them on loopback if they are not up (installing
# them needs root). Benchmarks run with CI=true, so a missing service fails
# the section instead of skipping it, and one package at a time (-p 1).
# A section whose go test fails keeps its old file; its output is left in
# /tmp and the script exits 1 after the other sections. Not part of CI:
# the report generator's own test is (go test ./bench/...).
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root" || exit 1

ALL="fanout room send codec limit bcrypt bus search"
BENCH="${BENCH:-.}"
COUNT="${COUNT:-6}"
SEARCH_MESSAGES="${SEARCH_MESSAGES:-1000000}"
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
export TEST_NATS_URL="${TEST_NATS_URL:-nats://127.0.0.1:4222}"

log() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "$*"; exit 1; }

case "$COUNT" in '' | *[!0-9]* | 0) die "COUNT=$COUNT: want a number of runs, 1 or more" ;; esac
case "$SEARCH_MESSAGES" in '' | *[!0-9]* | 0) die "SEARCH_MESSAGES=$SEARCH_MESSAGES: want a number of messages" ;; esac

chosen=""
for s in $ALL; do
  if printf '%s\n' "$s" | grep -Eq -- "$BENCH"; then
    chosen="$chosen $s"
  fi
done
[ -n "$chosen" ] || die "BENCH=$BENCH matches no section of: $ALL"
log "sections:$chosen (COUNT=$COUNT)"

# SendPrepared/10000 needs 20,200 descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null

case " $chosen " in
  *" bus "* | *" search "*)
    bash scripts/ensure-services.sh || die "PostgreSQL/NATS not available (scripts/ensure-services.sh)"
    ;;
esac

# Described once, before anything is written: the tree as it is.
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git --no-optional-locks status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  commit="$commit + uncommitted changes"
fi
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//; s/ *$//')"
ram="$(awk '/MemTotal/ { printf "%.1f GB", $2 / 1048576 }' /proc/meminfo)"
gov="$(go version | cut -d' ' -f3-)"
pgv=""
natsv=""

# q quotes an argument for the "# command:" line when the shell needs it.
q() {
  case "$1" in
    *[!A-Za-z0-9_./=:,-]*) printf "'%s'" "$1" ;;
    *) printf '%s' "$1" ;;
  esac
}

out=""   # the section's new raw file
errs=""  # its go test stderr
# gobench [VAR=value ...] go-test-args...: one go test -bench run appended to
# $out, its command line first.
gobench() {
  local envs=() line="" a
  while [ $# -gt 0 ] && [[ "$1" == [A-Z_]*=* ]]; do
    envs+=("$1")
    shift
  done
  local cmd=(go test -p 1 -run '^$' -count "$COUNT" "$@")
  for a in "${envs[@]}" "${cmd[@]}"; do line="$line $(q "$a")"; done
  printf '# command:%s\n' "$line" >>"$out"
  log "$line"
  env CI=true "${envs[@]}" "${cmd[@]}" >>"$out" 2>>"$errs"
}

sec_fanout() { gobench -bench '^BenchmarkFanout$' -benchmem ./server/; }
sec_room() { gobench -bench '^BenchmarkRoomFanout$' -benchmem -benchtime 2000x ./server/; }
sec_send() { gobench -bench '^BenchmarkSendPrepared$' -benchmem ./server/socketio/engineio/; }
sec_codec() { gobench -bench '^Benchmark(Decode|Encode|Prepare)Event$' -benchmem ./server/socketio/; }
sec_limit() { gobench -bench . -benchmem ./server/limit/; }
sec_bcrypt() { gobench -bench '^BenchmarkBcryptHash' -benchtime 20x ./server/; }
sec_bus() {
  gobench -bench '^BenchmarkPublishDeliver$' -benchtime 3000x ./bus/pgbus/ ./bus/natsbus/ &&
    gobench -bench '^BenchmarkPublish$' -benchtime 2000x ./bus/natsbus/
}
sec_search() {
  gobench CHAT_BENCH_MESSAGES="$SEARCH_MESSAGES" -bench '^BenchmarkSearch$' -benchtime 20x -timeout 60m ./store/postgres/ ./store/sqlite/
}

failed=0
mkdir -p "$here/results"
for s in $chosen; do
  case "$s" in
    bus | search)
      [ -n "$pgv" ] || pgv="$(psql "$TEST_DATABASE_URL" -tAc 'SHOW server_version' 2>/dev/null || true)"
      ;;
  esac
  if [ "$s" = bus ] && [ -z "$natsv" ]; then
    natsv="$(nats-server --version 2>/dev/null | sed 's/^nats-server: //' || true)"
  fi
  out="$(mktemp "/tmp/bench-$s.XXXXXX.txt")"
  errs="${out%.txt}.stderr"
  start="$(date +%s)"
  {
    echo "# Raw go test -bench output of bench/run.sh section $s; bench/RESULTS.md is generated from it. Lines starting with # describe the run (benchstat skips them)."
    echo "# section: $s"
    echo "# date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "# commit: $commit"
    echo "# count: $COUNT"
    echo "# go: $gov"
    echo "# cpu: $cpu"
    echo "# nproc: $(nproc)"
    echo "# ram: $ram"
    echo "# kernel: $(uname -r)"
    echo "# nofile: $(ulimit -n)"
    [ "$s" = bus ] || [ "$s" = search ] && echo "# postgres: ${pgv:-unknown}"
    [ "$s" = bus ] && echo "# nats-server: ${natsv:-unknown}"
    [ "$s" = search ] && echo "# search-messages: $SEARCH_MESSAGES"
    echo "# loadavg-start: $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min; $(nproc) cores)"
  } >"$out"
  log "section $s: load average $(cut -d' ' -f1-3 /proc/loadavg)"
  "sec_$s"
  st=$?
  {
    echo "# loadavg-end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# seconds: $(($(date +%s) - start))"
  } >>"$out"
  if [ "$st" != 0 ] || grep -q -- '^--- FAIL' "$out"; then
    grep -E -- '^--- FAIL|^FAIL|panic:' "$out" >&2
    tail -20 "$errs" >&2
    log "section $s FAILED (status $st): kept the old results/$s.txt; this run's output is in $out and $errs"
    failed=1
    continue
  fi
  chmod 644 "$out" && mv "$out" "$here/results/$s.txt"
  rm -f "$errs"
  log "section $s: done in $(($(date +%s) - start)) s, kept in bench/results/$s.txt"
done

go run ./bench/cmd/benchreport -in bench/results -out bench/RESULTS.md || die "benchreport failed"
log "wrote bench/RESULTS.md from bench/results/"
exit "$failed"
