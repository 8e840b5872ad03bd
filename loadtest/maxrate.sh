#!/usr/bin/env bash
# The highest message rate at which 5,000 clients still get every message
# with fan-out p99 under 250 ms, for the Go server and the Node reference,
# on the same PostgreSQL with the same load generator.
#
#   loadtest/maxrate.sh
#
# Each server climbs its own ladder of rates (10 s of messages at each,
# a fresh server and database per step) and stops at the first step that
# misses: p99 at or over 250 ms, or a delivery missing. The answer for each
# server lies between its last passing step and the step that missed.
#
# Every step's result is kept as one JSON line in loadtest/results/MAXRATE.jsonl
# (a new ladder of a server replaces that server's old one) and
# loadtest/MAXRATE.md is generated from those lines.
#
# Environment (all optional):
#   LADDERS="go node"              which servers climb
#   GO_RATES="50 75 100 150 200"   steps for the Go server, msg/s
#   NODE_RATES="10 15 20 25 30 40" steps for the Node reference
#   CLIENTS=5000  P99_MS=250  MSG_SECONDS=10
#   GO_BIN=path   use this chatd binary instead of building the working tree
#
# Ports 3600-3699, loopback only; every step is bounded by the generator's
# own caps (-duration, -drain 60s). Prints one line per step, then a summary.
# Exits 0 when every ladder was climbed (whatever its answer), 1 otherwise.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
LT_NAME=maxrate
PGURL_BASE="${PGURL_BASE:-postgres://postgres@127.0.0.1:5432}"
failed=0
tmp="$(mktemp -d)"
# shellcheck source=lib.sh
. "$here/lib.sh"

GO_RATES="${GO_RATES:-50 75 100 150 200}"
NODE_RATES="${NODE_RATES:-10 15 20 25 30 40}"
CLIENTS="${CLIENTS:-5000}"
P99_MS="${P99_MS:-250}"
MSG_SECONDS="${MSG_SECONDS:-10}"
LADDERS="${LADDERS:-go node}"
store="$here/results/MAXRATE.jsonl"
batch="$(date -u '+%Y-%m-%dT%H:%M:%SZ')"
results="$tmp/results.jsonl"
: >"$results"

pid="" db=""
cleanup() {
  [ -n "$pid" ] && stop_pid "$pid"
  [ -n "$db" ] && drop_db "$db"
  rm -rf "$tmp"
}
trap cleanup EXIT

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
command -v jq >/dev/null || die "needs jq"
log "building"
loadgen="$tmp/loadgen"
(cd "$root" && go build -o "$loadgen" ./loadtest/cmd/loadgen && go build -o "$tmp/maxratereport" ./loadtest/cmd/maxratereport) || die "build failed"
chatd="${GO_BIN:-}"
if [ -z "$chatd" ]; then
  chatd="$tmp/chatd"
  (cd "$root" && go build -o "$chatd" .) || die "build failed"
fi
[ -d "$here/reference/node_modules" ] || (cd "$here/reference" && npm ci --no-audit --no-fund) >&2
write_loopback_preload "$tmp/loopback.js"

n=0
# step <kind> <rate>: one server, one run; prints its line, returns 0 if it passed.
step() {
  local kind="$1" rate="$2" port out extra=() ready=/healthz
  n=$((n + 1))
  db="lt_maxrate_$$_$n"
  port="$(free_port 3600 3699)" || die "no free port in 3600-3699"
  create_db "$db"
  if [ "$kind" = go ]; then
    env -u SQLITE_PATH ADDR=127.0.0.1 PORT="$port" MESSAGE_RATE=-1 \
      DATABASE_URL="$PGURL_BASE/$db?sslmode=disable" "$chatd" >"$tmp/server.log" 2>&1 &
  else
    NODE_OPTIONS="--require $tmp/loopback.js" PORT="$port" \
      DATABASE_URL="$PGURL_BASE/$db" "$here/reference/start.sh" >"$tmp/server.log" 2>&1 &
    extra=(-ack=false)
    ready=/socket.io/socket.io.js
  fi
  pid=$!
  wait_ready "$pid" "http://127.0.0.1:$port$ready" 60 "$kind server" "$tmp/server.log"
  sleep 0.5
  out="$("$loadgen" -url "http://127.0.0.1:$port" -server-pid "$pid" -clients "$CLIENTS" -senders 10 \
    -rate "$rate" -duration "${MSG_SECONDS}s" -drain 60s -source-ips 4 -quiet "${extra[@]}" 2>"$tmp/loadgen.log" | tail -1)" || true
  stop_pid "$pid"
  pid=""
  drop_db "$db"
  db=""
  if [ -z "$out" ]; then
    tail -5 "$tmp/loadgen.log" >&2
    log "$kind $rate msg/s: the load generator failed"
    return 1
  fi
  out="$(printf '%s\n' "$out" | jq -c --arg g "$kind" --arg b "$batch" --argjson p "$P99_MS" '. + {group: $g, batch: $b, p99_limit_ms: $p}')"
  printf '%s\n' "$out" >>"$results"
  printf '%s\n' "$out" | jq -r --arg k "$kind" --arg r "$rate" \
    '"\($k) \($r) msg/s: delivered \(.delivered)/\(.expected) (\(.deliveries_per_s|floor)/s), fan-out p50 \(.fanout.p50_ms) ms, p99 \(.fanout.p99_ms) ms, server \(.server.cpu_us_per_delivery) µs/delivery"'
  printf '%s\n' "$out" | jq -e --argjson p "$P99_MS" '.missing == 0 and .duplicates == 0 and .delivered == .expected and .fanout.p99_ms < $p' >/dev/null
}

commit="$(cd "$root" && git rev-parse --short HEAD 2>/dev/null)"
if [ -n "$(cd "$root" && git --no-optional-locks status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  commit="$commit + uncommitted changes"
fi
[ -n "${GO_BIN:-}" ] && commit="$commit (Go server: GO_BIN=$GO_BIN)"
loadavg_start="$(cut -d' ' -f1-3 /proc/loadavg)"
start_date="$(date -u '+%Y-%m-%d %H:%M UTC')"

declare -A best missed
for kind in $LADDERS; do
  rates="$GO_RATES"
  [ "$kind" = node ] && rates="$NODE_RATES"
  best[$kind]="no step"
  missed[$kind]="no step (every step passed)"
  for rate in $rates; do
    if step "$kind" "$rate"; then
      best[$kind]="$rate"
    else
      missed[$kind]="$rate"
      break
    fi
  done
done

echo
echo "highest rate with every message delivered and fan-out p99 < ${P99_MS} ms, ${CLIENTS} clients:"
for kind in $LADDERS; do
  echo "  $kind: highest passing step ${best[$kind]} msg/s, first missing step ${missed[$kind]}"
done

jq -nc --arg batch "$batch" --arg date "$start_date" --arg commit "$commit" \
  --arg la0 "$loadavg_start (1, 5, 15 min; $(nproc) cores)" --arg la1 "$(cut -d' ' -f1-3 /proc/loadavg)" \
  --arg settings "CLIENTS=$CLIENTS P99_MS=$P99_MS MSG_SECONDS=$MSG_SECONDS GO_RATES=\"$GO_RATES\" NODE_RATES=\"$NODE_RATES\"" \
  '{tool:"meta", batch:$batch, meta:{date:$date, commit:$commit, loadavg_start:$la0, loadavg_end:$la1, settings:$settings}}' >>"$results"
keep_results "$store" "$results" || die "could not merge into $store"
"$tmp/maxratereport" -in "$store" -out "$here/MAXRATE.md" || die "maxratereport failed"
log "kept the raw results in $store; wrote $here/MAXRATE.md from them"
