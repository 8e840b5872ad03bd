#!/usr/bin/env bash
# Compares the Go server with the Node reference under the same load, on the
# same PostgreSQL, with the same load generator (loadtest/cmd/loadgen), and
# writes loadtest/RESULTS.md from the raw results kept in
# loadtest/results/RESULTS.jsonl.
#
#   loadtest/compare.sh            # the full comparison (about 55 min)
#   loadtest/compare.sh --quick    # one small scenario on both servers (< 2 min), for CI
#
# Full: 1,000 clients x 20 msg/s, 5,000 x 5, 5,000 x 20, 5,000 x 50 (RUNS runs each,
# A/B alternated), the browser's path: clients that start on long-polling
# and upgrade to WebSocket (1,000 x 20, 5,000 x 5, 5,000 x 20, 5,000 x 50) and long-polling only
# through the seed report's nginx block (1,000 x 20), 10,000 idle connections (RUNS runs), the most idle
# connections held (10k -> 15k -> 19.5k, stop at the first failure), a
# heartbeat check (2,000 idle for 30 s) and the report's 450-user mocha
# test (RUNS runs). Every server start gets a fresh database lt_<kind>_<pid>_<n>
# on 127.0.0.1:5432 (user postgres, trust auth), dropped when the server stops.
#
# Environment (all optional):
#   RUNS=3            runs per scenario and server (full mode)
#   MSG_SECONDS=20    sending phase of each message scenario
#   PONG_DELAY=0s     how late the generator answers pings (see README: the heartbeat race)
#   SCENARIOS="c1000r20 c5000r5 c5000r20 c5000r50 up1000r20 up5000r5 up5000r20 up5000r50 pollnginx1000r20 idle10k maxidle race mocha"
#                     subset to run; each replaces only its own lines in
#                     results/RESULTS.jsonl, and RESULTS.md is regenerated
#                     from all kept lines
#   NGINX_WORKER_CONNECTIONS=N   pollnginx1000r20: the one change made to the
#                     report's block (worker_connections 1024 as printed); the
#                     report says which value was used
#   GO_BIN=path       use this chatd binary instead of building the working tree
#   KEEP_LOGS=1       keep server and generator logs (/tmp/lt-compare-logs.<pid>)
#
# Ports 3500-3599, loopback only. Exits 0 when every run completed (full) or
# when every run was exact (quick); 1 otherwise.
set -uo pipefail

mode=full
case "${1:-}" in
  --quick) mode=quick ;;
  "") ;;
  *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
tmp="$(mktemp -d /tmp/lt-compare.XXXXXX)"
results="$tmp/results.jsonl"
: >"$results"
RUNS="${RUNS:-3}"
MSG_SECONDS="${MSG_SECONDS:-20}"
PONG_DELAY="${PONG_DELAY:-0s}"
SCENARIOS="${SCENARIOS:-c1000r20 c5000r5 c5000r20 c5000r50 up1000r20 up5000r5 up5000r20 up5000r50 pollnginx1000r20 idle10k maxidle race mocha}"
NGINX_WORKER_CONNECTIONS="${NGINX_WORKER_CONNECTIONS:-}"
store="$here/results/RESULTS.jsonl"
batch="$(date -u '+%Y-%m-%dT%H:%M:%SZ')"
group=""  # the SCENARIOS word being run: every line is tagged with it
PGURL_BASE="postgres://postgres@127.0.0.1:5432"

server_pid=""
server_db=""
server_port=""
server_log=""
server_ready=""
target_port="" # what the generator dials: the server, or nginx in front of it
nginx_pid=""
nginx_note=""
dbn=0
failed=0

LT_NAME=compare
# shellcheck source=lib.sh
. "$here/lib.sh"

stop_server() {
  if [ -n "$nginx_pid" ]; then
    stop_pid "$nginx_pid"
    nginx_pid=""
  fi
  if [ -n "$server_pid" ]; then
    stop_pid "$server_pid"
    server_pid=""
  fi
  if [ -n "$server_db" ]; then
    drop_db "$server_db"
    server_db=""
  fi
}

cleanup() {
  stop_server
  keep_logs
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server go|node: a fresh database and a fresh process; sets
# server_pid, server_port, server_db, server_log.
start_server() {
  local kind="$1"
  dbn=$((dbn + 1))
  server_db="lt_${kind}_$$_$dbn"
  server_port="$(free_port 3500 3599)" || die "no free port in 3500-3599"
  server_log="$tmp/server-$kind-$dbn.log"
  create_db "$server_db"
  local ready_path
  if [ "$kind" = go ]; then
    env -u SQLITE_PATH ADDR=127.0.0.1 PORT="$server_port" \
      DATABASE_URL="$PGURL_BASE/$server_db?sslmode=disable" "$chatd" >"$server_log" 2>&1 &
    server_pid=$!
    ready_path=/healthz
  else
    # The reference listens on every interface; the preload pins it to
    # 127.0.0.1. start.sh execs node, so $! is node's pid.
    NODE_OPTIONS="--require $tmp/loopback.js" PORT="$server_port" \
      DATABASE_URL="$PGURL_BASE/$server_db" "$here/reference/start.sh" >"$server_log" 2>&1 &
    server_pid=$!
    ready_path=/socket.io/socket.io.js
  fi
  wait_ready "$server_pid" "http://127.0.0.1:$server_port$ready_path" 60 "$kind server" "$server_log"
  server_ready="$ready_path"
  target_port="$server_port"
  # The reference reads its tables asynchronously after listening.
  sleep 0.5
}

# start_report_nginx: nginx in front of the running server with the seed
# report's block (test/report-nginx.conf) as printed, only its ports
# rewritten (listen 80 -> a free port; the primary 127.0.0.1:3000 -> the
# server; the backup 127.0.0.1:3001 -> a free port nothing listens on), run
# with its own -p prefix as test/failover does. NGINX_WORKER_CONNECTIONS,
# when set, is the one further change (nginx_note says so).
start_report_nginx() {
  local ngx conf prefix port backup
  ngx="$(command -v nginx || echo /usr/sbin/nginx)"
  [ -x "$ngx" ] || ngx="$(bash "$root/scripts/ensure-nginx.sh")" || die "nginx is needed (scripts/ensure-nginx.sh installs it)"
  port="$(free_port 3500 3599)" || die "no free port in 3500-3599"
  backup="$(free_port $((port + 1)) 3599)" || die "no free port in 3500-3599"
  prefix="$tmp/nginx-$dbn"
  mkdir -p "$prefix/logs"
  chmod 755 "$tmp"
  chmod 777 "$prefix" # workers run as nobody when started by root
  conf="$(cat "$root/test/report-nginx.conf")"
  for want in "listen 80;" "127.0.0.1:3000" "127.0.0.1:3001" "worker_connections 1024;"; do
    case "$conf" in *"$want"*) ;; *) die "test/report-nginx.conf has no '$want' to rewrite" ;; esac
  done
  conf="${conf//127.0.0.1:3000/@@PRIMARY@@}"
  conf="${conf//127.0.0.1:3001/@@BACKUP@@}"
  conf="${conf//listen 80;/listen 127.0.0.1:$port;}"
  conf="${conf//@@PRIMARY@@/127.0.0.1:$server_port}"
  conf="${conf//@@BACKUP@@/127.0.0.1:$backup}"
  nginx_note="nginx with test/report-nginx.conf as printed (ports rewritten only)"
  if [ -n "$NGINX_WORKER_CONNECTIONS" ]; then
    conf="${conf//worker_connections 1024;/worker_connections $NGINX_WORKER_CONNECTIONS;}"
    nginx_note="nginx with test/report-nginx.conf, ports rewritten and one change: worker_connections $NGINX_WORKER_CONNECTIONS instead of 1024"
  fi
  printf '%s\n' "$conf" >"$prefix/nginx.conf"
  "$ngx" -p "$prefix" -c "$prefix/nginx.conf" \
    -g "daemon off; pid $prefix/nginx.pid; error_log $prefix/error.log;" >"$tmp/nginx-$dbn.log" 2>&1 &
  nginx_pid=$!
  wait_ready "$nginx_pid" "http://127.0.0.1:$port$server_ready" 20 "nginx" "$tmp/nginx-$dbn.log"
  target_port="$port"
}

# loadgen <kind> <scenario> <label> args...: one generator run against the
# running server; its JSON line goes to $results.
run_loadgen() {
  local kind="$1" scen="$2" label="$3"
  shift 3
  local extra=()
  [ "$kind" = node ] && extra+=(-ack=false)
  local lglog="$tmp/loadgen-$scen-$kind-${label// /_}.log"
  local out
  out="$("$loadgen" -url "http://127.0.0.1:$target_port" -server-pid "$server_pid" -server-name "$kind" \
    -scenario "$scen" -label "$label" -pong-delay "$PONG_DELAY" "${extra[@]}" "$@" 2>"$lglog")"
  local status=$?
  if [ -z "$out" ]; then
    tail -20 "$lglog" >&2
    log "$scen $kind $label: the load generator failed (status $status)"
    failed=1
    return 1
  fi
  if [ -n "$nginx_pid" ]; then
    # What nginx said (worker_connections, upstream errors) goes with the run.
    local ngerr="" ngn=""
    ngerr="$(grep -h -m3 -E '\[(alert|crit|error)\]' "$tmp/nginx-$dbn"/error.log 2>/dev/null | cut -c1-300 | jq -Rsc 'split("\n") | map(select(. != ""))')"
    ngn="$(grep -c -E '\[(alert|crit|error)\]' "$tmp/nginx-$dbn"/error.log 2>/dev/null)"
    out="$(printf '%s\n' "$out" | jq -c --arg v "$nginx_note" --argjson e "${ngerr:-[]}" --argjson n "${ngn:-0}" \
      '. + {via: $v, nginx_errors: $n, nginx_first_errors: $e}')"
  fi
  out="$(printf '%s\n' "$out" | jq -c --arg g "$group" --arg b "$batch" '. + {group: $g, batch: $b}')"
  printf '%s\n' "$out" >>"$results"
  printf '%s\n' "$out" | jq -r --arg s "$scen" --arg k "$kind" --arg l "$label" \
    '"\($s) \($k) \($l): ok=\(.ok) clients=\(.clients) transport=\(.transport) delivered=\(.delivered)/\(.expected) dups=\(.duplicates) fanout_p50=\(.fanout.p50_ms)ms p99=\(.fanout.p99_ms)ms server=\(.server.cpu_us_per_delivery)us/delivery loadgen=\(.loadgen.cpu_us_per_delivery)us/delivery rss_peak=\(.server.rss_peak_mb)MB\(if .upgrade then " upgrades=\(.upgrade.completed)/\(.upgrade.attempted) failed=\(.upgrade.failed)" else "" end)\(if .via then " nginx_errors=\(.nginx_errors)" else "" end)\(if .idle then " idle: \(.idle.server_kb_per_conn)KB/conn alive=\(.idle.alive)" else "" end)\(if (.problems|length)>0 then " PROBLEMS: \(.problems|join("; "))" else "" end)"' >&2
  return "$status"
}

# scenario <name> <runs> args...: RUNS runs on each server, A/B alternated.
# With VIA=report-nginx the generator goes through the report's nginx block.
scenario() {
  local scen="$1" runs="$2"
  shift 2
  group="$scen"
  for run in $(seq 1 "$runs"); do
    local order="go node"
    [ $((run % 2)) = 0 ] && order="node go"
    for kind in $order; do
      start_server "$kind"
      [ "${VIA:-}" = report-nginx ] && start_report_nginx
      run_loadgen "$kind" "$scen" "run $run" "$@"
      local st=$?
      stop_server
      [ "$mode" = quick ] && [ "$st" != 0 ] && failed=1
    done
  done
}

# maxidle: 10k -> 15k -> 19.5k idle connections per server, stop at the
# first failure. 19.5k is the most the hard open-files limit allows a
# process (the generator holds one descriptor per connection, as does the
# server).
maxidle() {
  group=maxidle
  local hard steps=""
  hard="$(ulimit -Hn)"
  for n in 10000 15000 19500 30000 50000; do
    [ "$n" -le $((hard - 400)) ] && steps="$steps $n"
  done
  for kind in go node; do
    for n in $steps; do
      start_server "$kind"
      run_loadgen "$kind" "maxidle" "$n" -idle -clients "$n" -hold 30s -ramp 2000 -source-ips 4 -settle 2s
      local st=$?
      stop_server
      [ "$st" = 0 ] || break
    done
  done
}

# mocha: the report's 450-user test, timed two ways: mocha's own wall time
# (it fails at its 30 s timeout on a busy machine), and the time until the
# 450th row is in user_table (polled every 0.25 s, at most 120 s): the
# registrations themselves, whether or not mocha gave up first.
mocha() {
  group=mocha
  [ -d "$here/node_modules" ] || (cd "$here" && npm ci --no-audit --no-fund) || die "npm ci failed in $here"
  for run in $(seq 1 "$RUNS"); do
    local order="go node"
    [ $((run % 2)) = 0 ] && order="node go"
    for kind in $order; do
      start_server "$kind"
      local start end st mpid reg="null" n el now la0 last_n=0 last_t
      la0="$(cut -d' ' -f1-3 /proc/loadavg)"
      start="$EPOCHREALTIME"
      last_t="$start"
      (cd "$here" && TARGET_URL="http://127.0.0.1:$server_port" timeout -k 5 180 npx mocha >"$tmp/mocha-$kind-$run.log" 2>&1) &
      mpid=$!
      end=""
      for _ in $(seq 1 480); do
        n="$(psql "$PGURL_BASE/$server_db" -tAc 'SELECT count(*) FROM user_table' 2>/dev/null)"
        now="$EPOCHREALTIME"
        case "$n" in '' | *[!0-9]*) n=0 ;; esac
        if [ "$n" -gt "$last_n" ]; then
          last_n="$n"
          last_t="$now"
        fi
        if [ -z "$end" ] && ! kill -0 "$mpid" 2>/dev/null; then
          end="$now"
        fi
        [ "$n" -ge 450 ] && break
        # mocha is done and nothing was stored for 5 s: no more will come.
        [ -n "$end" ] && awk -v a="$last_t" -v b="$now" 'BEGIN { exit !(b - a > 5) }' && break
        sleep 0.25
      done
      reg="$(awk -v a="$start" -v b="$last_t" 'BEGIN { printf "%.3f", b - a }')"
      wait "$mpid"
      st=$?
      [ -n "$end" ] || end="$EPOCHREALTIME"
      stop_server
      el="$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }')"
      log "mocha450 $kind run $run: mocha status $st, ${el}s; $last_n users stored, the last after ${reg}s"
      [ "$st" = 0 ] || tail -8 "$tmp/mocha-$kind-$run.log" >&2
      printf '{"tool":"mocha","server_name":"%s","scenario":"mocha450","label":"run %d","status":%d,"elapsed_s":%s,"registered_s":%s,"registered":%d,"loadavg_start":"%s","group":"mocha","batch":"%s"}\n' \
        "$kind" "$run" "$st" "$el" "$reg" "$last_n" "$la0" "$batch" >>"$results"
    done
  done
}

want() { case " $SCENARIOS " in *" $1 "*) return 0 ;; esac; return 1; }

# ---- preparation ----

for tool in go node psql curl jq ss; do
  command -v "$tool" >/dev/null || die "$tool is needed"
done
psql "$PGURL_BASE/postgres" -tAc 'SELECT 1' >/dev/null 2>&1 || die "PostgreSQL not reachable as postgres@127.0.0.1:5432 (trust auth)"

# One descriptor per connection in both the server and the generator.
ulimit -n "$(ulimit -Hn)" 2>/dev/null
log "open files limit $(ulimit -n) (hard $(ulimit -Hn))"

write_loopback_preload "$tmp/loopback.js"

[ -d "$here/reference/node_modules" ] || (cd "$here/reference" && npm ci --no-audit --no-fund) || die "npm ci failed in reference/"

log "building"
if [ -n "${GO_BIN:-}" ]; then
  chatd="$GO_BIN"
else
  chatd="$tmp/chatd"
  (cd "$root" && go build -o "$chatd" .) || die "go build of the server failed"
fi
loadgen="$tmp/loadgen"
(cd "$root" && go build -o "$loadgen" ./loadtest/cmd/loadgen && go build -o "$tmp/ltreport" ./loadtest/cmd/ltreport) ||
  die "go build of the load generator failed"

commit="$(cd "$root" && git rev-parse --short HEAD 2>/dev/null)"
if [ -n "$(cd "$root" && git --no-optional-locks status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  commit="$commit + uncommitted changes"
fi
loadavg_start="$(cut -d' ' -f1-3 /proc/loadavg)"
nproc_="$(nproc)"
load1="${loadavg_start%% *}"
if awk -v l="$load1" -v n="$nproc_" 'BEGIN { exit !(l > n) }'; then
  log "WARNING: load average $loadavg_start on $nproc_ cores: other work shares the CPU; timings will be noisy"
fi

# ---- scenarios ----

start_ts="$(date -u '+%Y-%m-%d %H:%M UTC')"
if [ "$mode" = quick ]; then
  scenario quick 1 -clients 200 -senders 5 -rate 10 -duration 10s -polling 0.1 -drain 20s
else
  want c1000r20 && scenario c1000r20 "$RUNS" -clients 1000 -senders 10 -rate 20 -duration "${MSG_SECONDS}s" -drain 60s
  want c5000r5 && scenario c5000r5 "$RUNS" -clients 5000 -senders 10 -rate 5 -duration "${MSG_SECONDS}s" -drain 60s -source-ips 4
  want c5000r20 && scenario c5000r20 "$RUNS" -clients 5000 -senders 10 -rate 20 -duration "${MSG_SECONDS}s" -drain 90s -source-ips 4
  # Well past what Node sustains on this machine: how far each server
  # gets when 250,000 deliveries a second are asked of it.
  want c5000r50 && scenario c5000r50 "$RUNS" -clients 5000 -senders 10 -rate 50 -duration "${MSG_SECONDS}s" -drain 90s -source-ips 4
  # The browser's path: the stock io() client starts on long-polling and
  # upgrades (every client, senders included, as engine.io-client does).
  want up1000r20 && scenario up1000r20 "$RUNS" -transport upgrade -clients 1000 -senders 10 -rate 20 -duration "${MSG_SECONDS}s" -drain 60s
  want up5000r5 && scenario up5000r5 "$RUNS" -transport upgrade -clients 5000 -senders 10 -rate 5 -duration "${MSG_SECONDS}s" -drain 60s -source-ips 4
  want up5000r20 && scenario up5000r20 "$RUNS" -transport upgrade -clients 5000 -senders 10 -rate 20 -duration "${MSG_SECONDS}s" -drain 90s -source-ips 4
  want up5000r50 && scenario up5000r50 "$RUNS" -transport upgrade -clients 5000 -senders 10 -rate 50 -duration "${MSG_SECONDS}s" -drain 90s -source-ips 4
  # Behind the report's nginx block no Upgrade is forwarded, so browsers
  # stay on long-polling; they send no X-Forwarded-For either (-xff=false).
  want pollnginx1000r20 && VIA=report-nginx scenario pollnginx1000r20 "$RUNS" -transport polling -xff=false -clients 1000 -senders 10 -rate 20 -duration "${MSG_SECONDS}s" -drain 60s
  # 30 s: longer than either server's ping interval (Node's is 25 s).
  want idle10k && scenario idle10k "$RUNS" -idle -clients 10000 -hold 30s -ramp 2000 -source-ips 4
  want maxidle && maxidle
  if want race; then
    group=race
    for kind in go node; do
      start_server "$kind"
      PONG_DELAY=0s run_loadgen "$kind" race "pongs at once" -idle -clients 2000 -hold 30s
      stop_server
    done
  fi
  want mocha && mocha
fi

# ---- report ----

loadavg_end="$(cut -d' ' -f1-3 /proc/loadavg)"
args=""
[ "$mode" = quick ] && args=" --quick"
jq -nc \
  --arg args "$args" --arg date "$start_ts" \
  --arg cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')" \
  --arg nproc "$nproc_" \
  --arg ram "$(awk '/MemTotal/ { printf "%.1f GB", $2 / 1048576 }' /proc/meminfo)" \
  --arg kernel "$(uname -r)" --arg go "$(go version | cut -d' ' -f3-)" --arg node "$(node --version)" \
  --arg postgres "$(psql "$PGURL_BASE/postgres" -tAc 'SHOW server_version' 2>/dev/null)" \
  --arg nofile "ulimit -n $(ulimit -n) (hard $(ulimit -Hn))" --arg commit "$commit" \
  --arg la0 "$loadavg_start (1, 5, 15 min; $nproc_ cores)" --arg la1 "$loadavg_end" \
  --arg settings "RUNS=$RUNS MSG_SECONDS=$MSG_SECONDS PONG_DELAY=$PONG_DELAY${NGINX_WORKER_CONNECTIONS:+ NGINX_WORKER_CONNECTIONS=$NGINX_WORKER_CONNECTIONS}; both servers with their defaults (bcrypt 10; heartbeats below)" \
  --arg batch "$batch" --arg scen "$SCENARIOS" \
  '{tool:"meta", batch:$batch, meta:{args:$args, date:$date, cpu:$cpu, nproc:$nproc, ram:$ram, kernel:$kernel, go:$go, node:$node,
    postgres:$postgres, nofile:$nofile, commit:$commit, loadavg_start:$la0, loadavg_end:$la1, settings:$settings, scenarios:$scen}}' >>"$results"

if [ "$mode" = quick ]; then
  "$tmp/ltreport" -in "$results" || failed=1
else
  keep_results "$store" "$results" || die "could not merge into $store"
  "$tmp/ltreport" -in "$store" -out "$here/RESULTS.md" || die "ltreport failed"
  log "kept the raw results in $store; wrote $here/RESULTS.md from them"
fi
exit "$failed"
