#!/usr/bin/env bash
# Scale-out benchmark: 1, 2 and 3 Go servers on one database, relaying over
# each bus (PostgreSQL LISTEN/NOTIFY, NATS), under the same load from
# loadtest/cmd/loadgen; keeps the raw results in loadtest/results/SCALE.jsonl
# (a run replaces only the workload/bus/size combinations it measured) and
# writes loadtest/SCALE.md from them.
#
#   loadtest/scale.sh            # full: 3 workloads x 2 buses x 1..3 servers x RUNS runs (about 21 min)
#   loadtest/scale.sh --quick    # 200 clients x 10 msg/s x 5 s, 1 run each (about 1 min); prints the report only
#
# Every run gets a fresh database lt_scale_<pid>_<n> on 127.0.0.1:5432 (user
# postgres, trust auth) shared by its N servers, started one after the other
# (the first creates the schema), each on the first free port of 3700-3799,
# ADDR=127.0.0.1. The generator spreads the clients (senders included)
# round-robin over the servers, sums their CPU and RSS (-server-pid), and
# scrapes their /metrics before and after the messages for the bus lag
# (-bus-lag). Servers are stopped (SIGTERM, SIGKILL after 10 s) and the
# database dropped after each run, and on any exit or interrupt (trap).
# The whole script is capped by MAX_TOTAL seconds (a watchdog ends it).
#
# Environment (all optional):
#   RUNS=3                 runs per (workload, bus, servers); the report takes medians
#   MSG_SECONDS=15         sending phase of the base workload
#   BUSES="postgres nats"  buses to measure
#   SERVERS="1 2 3"        cluster sizes
#   SCENARIOS="c1000r20 c1000r100 c2000r100"
#   NATS_URL=nats://127.0.0.1:4222   (loopback only)
#   GO_BIN=path            use this chatd binary instead of building the working tree
#   MAX_TOTAL=3000         hard cap on the whole script, seconds
#   KEEP_LOGS=1            keep server and generator logs (/tmp/lt-scale-logs.<pid>)
#
# Loopback only. Exits 0 when every run was exact (delivered = expected, no
# duplicates, nothing dropped), 1 otherwise (the report says which).
set -uo pipefail

mode=full
case "${1:-}" in
  --quick) mode=quick ;;
  "") ;;
  *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
tmp="$(mktemp -d /tmp/lt-scale.XXXXXX)"
results="$tmp/results.jsonl"
: >"$results"
RUNS="${RUNS:-3}"
MSG_SECONDS="${MSG_SECONDS:-15}"
BUSES="${BUSES:-postgres nats}"
SERVERS="${SERVERS:-1 2 3}"
SCENARIOS="${SCENARIOS:-c1000r20 c1000r100 c2000r100}"
NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"
MAX_TOTAL="${MAX_TOTAL:-3000}"
if [ "$mode" = quick ]; then
  RUNS=1
  MSG_SECONDS=5
  SCENARIOS=c200r10
fi
PGURL_BASE="postgres://postgres@127.0.0.1:5432"
store="$here/results/SCALE.jsonl"
batch="$(date -u '+%Y-%m-%dT%H:%M:%SZ')"

srv_pids=()
srv_ports=()
lg_pid=""
db=""
dbn=0
failed=0
watchdog=""

LT_NAME=scale
# shellcheck source=lib.sh
. "$here/lib.sh"

stop_cluster() {
  local pid
  for pid in "${srv_pids[@]}"; do
    kill "$pid" 2>/dev/null # all at once: they drain in parallel
  done
  for pid in "${srv_pids[@]}"; do
    stop_pid "$pid"
  done
  srv_pids=()
  srv_ports=()
  if [ -n "$db" ]; then
    drop_db "$db"
    db=""
  fi
}

cleanup() {
  if [ -n "$lg_pid" ]; then # the generator of an interrupted run
    kill "$lg_pid" 2>/dev/null
    wait "$lg_pid" 2>/dev/null
  fi
  stop_cluster
  if [ -n "$watchdog" ]; then
    kill "$watchdog" 2>/dev/null
    wait "$watchdog" 2>/dev/null
  fi
  keep_logs
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The watchdog: whatever happens, the script ends after MAX_TOTAL seconds
# (SIGTERM to this shell, whose trap stops the servers).
(
  trap 'kill "$sp" 2>/dev/null; exit 0' TERM
  sleep "$MAX_TOTAL" &
  sp=$!
  wait "$sp" && log "MAX_TOTAL=${MAX_TOTAL}s reached, stopping" && kill -TERM $$
) 2>/dev/null &
watchdog=$!

case "$NATS_URL" in
  nats://127.0.0.1:* | nats://localhost:*) ;;
  *) die "NATS_URL must be on loopback (nats://127.0.0.1:<port>)" ;;
esac

# start_cluster <bus> <n>: a fresh database and n servers on it, started
# one after the other; sets srv_pids, srv_ports, db.
start_cluster() {
  local bus="$1" n="$2" i port pid slog
  dbn=$((dbn + 1))
  db="lt_scale_$$_$dbn"
  create_db "$db"
  local busenv=(-u BUS_URL)
  # A subject of this run's own: other chatds on the same NATS stay out.
  [ "$bus" = nats ] && busenv=(BUS_URL="$NATS_URL" BUS_SUBJECT="chatd.lt-scale.$$")
  for i in $(seq 1 "$n"); do
    port="$(free_port 3700 3799)" || die "no free port in 3700-3799"
    slog="$tmp/server-$dbn-$bus-$i.log"
    env -u SQLITE_PATH "${busenv[@]}" ADDR=127.0.0.1 PORT="$port" \
      DATABASE_URL="$PGURL_BASE/$db?sslmode=disable" \
      BCRYPT_COST=4 MESSAGE_RATE=-1 MAX_CONNS_PER_IP=-1 AUTH_BURST_PER_IP=100000 \
      "$chatd" >"$slog" 2>&1 &
    pid=$!
    srv_pids+=("$pid")
    srv_ports+=("$port")
    wait_ready "$pid" "http://127.0.0.1:$port/healthz" 30 "server $i ($bus)" "$slog"
  done
  if [ "$n" -gt 1 ]; then
    sleep 1 # let every bus subscription settle
  fi
}

# scenario_args <name>: the generator's workload flags.
scenario_args() {
  case "$1" in
    c1000r20) echo "-clients 1000 -senders 10 -rate 20 -duration ${MSG_SECONDS}s -drain 30s" ;;
    c1000r100) echo "-clients 1000 -senders 10 -rate 100 -duration ${MSG_SECONDS}s -drain 60s" ;;
    c2000r100) echo "-clients 2000 -senders 10 -rate 100 -duration ${MSG_SECONDS}s -drain 60s" ;;
    c200r10) echo "-clients 200 -senders 10 -rate 10 -duration ${MSG_SECONDS}s -drain 30s" ;;
    *) return 1 ;;
  esac
}

scenario_title() {
  case "$1" in
    c1000r20) echo "1,000 clients × 20 msg/s for ${MSG_SECONDS} s (20,000 deliveries/s offered)" ;;
    c1000r100) echo "1,000 clients × 100 msg/s for ${MSG_SECONDS} s (100,000 deliveries/s offered)" ;;
    c2000r100) echo "2,000 clients × 100 msg/s for ${MSG_SECONDS} s (200,000 deliveries/s offered: about what the 2 cores can do, generator included)" ;;
    c200r10) echo "200 clients × 10 msg/s for ${MSG_SECONDS} s (quick)" ;;
  esac
}

# run_one <scenario> <bus> <n> <run>: one generator run against the running
# cluster; its JSON line goes to $results.
run_one() {
  local scen="$1" bus="$2" n="$3" run="$4"
  local urls="" pids="" i
  for i in "${!srv_ports[@]}"; do
    urls+="${urls:+,}http://127.0.0.1:${srv_ports[$i]}"
    pids+="${pids:+,}${srv_pids[$i]}"
  done
  local lglog="$tmp/loadgen-$scen-$bus-$n-$run.log" outf="$tmp/out.json" out status
  # In the background and waited for, so that a signal's trap runs at
  # once (and stops it) instead of after it.
  # shellcheck disable=SC2046 # the workload flags are words
  timeout 300 "$loadgen" -url "$urls" -server-pid "$pids" -bus-lag -server-name "$bus" \
    -scenario "$scen" -label "run $run" $(scenario_args "$scen") -max-run 240s >"$outf" 2>"$lglog" &
  lg_pid=$!
  wait "$lg_pid"
  status=$?
  lg_pid=""
  out="$(cat "$outf")"
  if [ -z "$out" ]; then
    tail -20 "$lglog" >&2
    log "$scen $bus $n servers run $run: the load generator failed (status $status)"
    failed=1
    return 1
  fi
  out="$(printf '%s\n' "$out" | jq -c --arg g "$scen/$bus/$n" --arg b "$batch" '. + {group: $g, batch: $b}')"
  printf '%s\n' "$out" >>"$results"
  # The servers' own errors during the run (before they are stopped: the
  # shutdown's own "context canceled" does not count), for the report.
  local errs first
  errs="$(cat "$tmp"/server-"$dbn"-"$bus"-*.log 2>/dev/null | grep -c 'level=ERROR')"
  first="$(cat "$tmp"/server-"$dbn"-"$bus"-*.log 2>/dev/null | grep -m1 'level=ERROR' | cut -c1-300)"
  jq -nc --arg s "$scen" --arg b "$bus" --argjson n "$n" --arg l "run $run" --argjson e "${errs:-0}" --arg f "$first" --arg batch "$batch" \
    '{tool:"serverlog", scenario:$s, server_name:$b, n_servers:$n, label:$l, errors:$e, first_error:$f, group:"\($s)/\($b)/\($n)", batch:$batch}' >>"$results"
  printf '%s\n' "$out" | jq -r --arg s "$scen" --arg b "$bus" --arg n "$n" --arg r "$run" \
    '"\($s) \($b) \($n) server(s) run \($r): ok=\(.ok) delivered=\(.delivered)/\(.expected) dups=\(.duplicates) \(.deliveries_per_s|floor)/s fanout p50=\(.fanout.p50_ms)ms p99=\(.fanout.p99_ms)ms server=\(.server.cpu_us_per_delivery)us/delivery (\(.server.cpu_messages_pct|floor)%) bus_lag=\(if .bus_lag then "p50 \(.bus_lag.p50_ms)ms p99 \(.bus_lag.p99_ms)ms n=\(.bus_lag.n)" else "-" end)\(if (.problems|length)>0 then " PROBLEMS: \(.problems|join("; "))" else "" end)"' >&2
  if [ "$status" != 0 ]; then
    failed=1
  fi
  return "$status"
}

# ---- build ----
bin="$tmp/bin"
mkdir -p "$bin"
if [ -n "${GO_BIN:-}" ]; then
  chatd="$GO_BIN"
else
  (cd "$root" && go build -o "$bin/chatd" .) || die "go build of the server failed"
  chatd="$bin/chatd"
fi
(cd "$root" && go build -o "$bin/loadgen" ./loadtest/cmd/loadgen && go build -o "$bin/scalereport" ./loadtest/cmd/scalereport) ||
  die "go build of the generator failed"
loadgen="$bin/loadgen"
hard="$(ulimit -Hn)"
ulimit -n "$hard" 2>/dev/null

# ---- preflight ----
psql "$PGURL_BASE/postgres" -qtAc 'select 1' >/dev/null 2>&1 || die "PostgreSQL not reachable on 127.0.0.1:5432 (user postgres, trust auth)"
nats_version=""
case " $BUSES " in
  *" nats "*)
    natshp="${NATS_URL#nats://}"
    nats_info="$(timeout 3 bash -c "exec 3<>/dev/tcp/${natshp%:*}/${natshp##*:} && head -n 1 <&3" 2>/dev/null)"
    if [ -z "$nats_info" ]; then
      die "NATS not reachable at $NATS_URL (set BUSES=postgres to skip it)"
    fi
    nats_version="$(printf '%s' "$nats_info" | sed -n 's/.*"version":"\([^"]*\)".*/\1/p')"
    ;;
esac
others="$(pgrep -x chatd | wc -l)"

commit=""
if [ -f "$root/.git/HEAD" ]; then # read, not git: the working tree is what was built
  githead="$(cat "$root/.git/HEAD")"
  case "$githead" in
    "ref: "*)
      ref="${githead#ref: }"
      if [ -f "$root/.git/$ref" ]; then
        commit="$(head -c 7 "$root/.git/$ref")"
      elif [ -f "$root/.git/packed-refs" ]; then
        commit="$(awk -v r="$ref" '$2 == r { print substr($1, 1, 7) }' "$root/.git/packed-refs")"
      fi
      ;;
    *) commit="${githead:0:7}" ;;
  esac
  [ -n "$commit" ] && commit="$commit (working tree as built; uncommitted changes not checked)"
fi

log "mode $mode: scenarios [$SCENARIOS], buses [$BUSES], servers [$SERVERS], $RUNS run(s) each; logs in $tmp"
loadavg_start="$(cut -d' ' -f1-3 /proc/loadavg)"
start_s=$SECONDS

# ---- runs: interleaved (run, then scenario, then bus, then size) so that
# drift in the machine's load hits every configuration alike ----
for run in $(seq 1 "$RUNS"); do
  for scen in $SCENARIOS; do
    scenario_args "$scen" >/dev/null || die "unknown scenario $scen"
    for bus in $BUSES; do
      for n in $SERVERS; do
        start_cluster "$bus" "$n"
        run_one "$scen" "$bus" "$n" "$run"
        stop_cluster
      done
    done
  done
done
log "all runs done in $((SECONDS - start_s)) s"

# ---- report ----
notes="Processes: each server is its own process with the default GOMAXPROCS (2); the generator is one more process. The PostgreSQL bus is per database (NOTIFY channel \`chatd_events\` of the run's fresh database); the NATS bus is a subject of the script's own (\`chatd.lt-scale.<pid>\`) on the local NATS server."
if [ "$others" -gt 0 ]; then
  notes+=" $others other chatd process(es) were running when this started: on NATS their events would show as extra bus events."
fi
notes+=" Servers started with BCRYPT_COST=4 MESSAGE_RATE=-1 MAX_CONNS_PER_IP=-1 AUTH_BURST_PER_IP=100000 (the generator gives each client its own X-Forwarded-For address); everything else default (100 messages of history, log level info, heartbeat 3 s / 5 s)."
meta_args=""
[ "$mode" = quick ] && meta_args=" --quick"
jq -nc --arg args "$meta_args" --arg date "$(date -u '+%Y-%m-%d %H:%M UTC')" \
  --arg cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" --arg nproc "$(nproc)" \
  --arg ram "$(awk '/MemTotal/ { printf "%.1f GB", $2 / 1048576 }' /proc/meminfo)" \
  --arg kernel "$(uname -r)" --arg go "$(go version | cut -d' ' -f3-)" \
  --arg postgres "$(psql "$PGURL_BASE/postgres" -qtAc 'show server_version' 2>/dev/null)" \
  --arg nats "${nats_version:+nats-server $nats_version}" --arg commit "$commit" \
  --arg la0 "$loadavg_start (1, 5, 15 min; $(nproc) cores)" --arg la1 "$(cut -d' ' -f1-3 /proc/loadavg)" \
  --arg settings "RUNS=$RUNS MSG_SECONDS=$MSG_SECONDS BUSES=\"$BUSES\" SERVERS=\"$SERVERS\"; $((SECONDS - start_s)) s in all" \
  --arg notes "$notes" \
  --arg batch "$batch" \
  '{tool:"meta", batch:$batch, meta:{args:$args, date:$date, cpu:$cpu, nproc:$nproc, ram:$ram, kernel:$kernel, go:$go,
    postgres:$postgres, nats:$nats, commit:$commit, loadavg_start:$la0, loadavg_end:$la1, settings:$settings, notes:$notes}}' >>"$results"
for scen in $SCENARIOS; do
  jq -nc --arg k "scenario.$scen" --arg v "$(scenario_title "$scen")" --arg batch "$batch" '{tool:"meta", batch:$batch, meta:{($k):$v}}' >>"$results"
done

if [ "$mode" = quick ]; then
  "$bin/scalereport" <"$results" || die "report failed"
else
  keep_results "$store" "$results" || die "could not merge into $store"
  "$bin/scalereport" <"$store" >"$tmp/SCALE.md" || die "report failed"
  cp "$tmp/SCALE.md" "$here/SCALE.md"
  cp "$results" "$tmp/scale-results.log" # kept with the logs if asked
  log "kept the raw results in $store; wrote $here/SCALE.md from them"
fi
[ "$failed" = 0 ] || log "some runs were not exact or failed: see the report"
exit "$failed"
