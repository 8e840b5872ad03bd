# Shared by compare.sh, scale.sh and maxrate.sh (sourced, not run): the pieces the
# benchmark scripts need to start servers on throwaway PostgreSQL databases
# on loopback and to stop them again. The sourcing script sets LT_NAME (its
# log prefix), PGURL_BASE, tmp and failed before using them.

log() { printf '%s %s: %s\n' "$(date +%H:%M:%S)" "$LT_NAME" "$*" >&2; }

die() { log "$*"; failed=1; exit 1; }

# free_port <lo> <hi>: prints the first port in lo..hi nobody listens on.
free_port() {
  local p
  for p in $(seq "$1" "$2"); do
    if [ -z "$(ss -Htln "sport = :$p" 2>/dev/null)" ]; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

# create_db <name>: a fresh database, or the script dies.
create_db() {
  psql "$PGURL_BASE/postgres" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $1" >/dev/null ||
    die "could not create a database (is PostgreSQL on 127.0.0.1:5432 with trust auth?)"
}

# drop_db <name>: drops it, even with servers still connected.
drop_db() {
  psql "$PGURL_BASE/postgres" -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null 2>&1 ||
    log "could not drop database $1"
}

# stop_pid <pid>: SIGTERM, at most 10 s for it to exit, then SIGKILL.
stop_pid() {
  if kill -0 "$1" 2>/dev/null; then
    kill "$1" 2>/dev/null
    for _ in $(seq 1 50); do
      kill -0 "$1" 2>/dev/null || break
      sleep 0.2
    done
    kill -9 "$1" 2>/dev/null
  fi
  wait "$1" 2>/dev/null
}

# wait_ready <pid> <url> <seconds> <what> <log>: until url answers 2xx; dies
# (with the end of log) if the process exits first or time runs out.
wait_ready() {
  local pid="$1" url="$2" secs="$3" what="$4" plog="$5"
  for _ in $(seq 1 $((secs * 5))); do
    kill -0 "$pid" 2>/dev/null || { tail -20 "$plog" >&2; die "$what exited before it was ready"; }
    curl -fs -o /dev/null --max-time 2 "$url" && return 0
    sleep 0.2
  done
  die "$what not ready after $secs s"
}

# write_loopback_preload <file>: writes the script preloaded into the Node
# reference (NODE_OPTIONS=--require file) so that its listen(PORT) binds
# 127.0.0.1 only, not every interface.
write_loopback_preload() {
  cat >"$1" <<'EOF'
'use strict';
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' && (args.length === 1 || typeof args[1] === 'function')) {
    args.splice(1, 0, '127.0.0.1');
  }
  return listen.apply(this, args);
};
EOF
}

# keep_logs: copies the run's logs and results to /tmp/lt-<name>-logs.<pid>
# when asked (KEEP_LOGS=1) or when something failed.
keep_logs() {
  if [ "${KEEP_LOGS:-}" = 1 ] || [ "$failed" != 0 ]; then
    local keep="/tmp/lt-$LT_NAME-logs.$$"
    mkdir -p "$keep" && cp "$tmp"/*.log "$tmp"/results.jsonl "$keep"/ 2>/dev/null
    log "logs kept in $keep"
  fi
}

# keep_results <store> <new>: merges the JSON lines of this run (<new>)
# into the kept raw results (<store>, created if missing). Every line
# carries "group" (what a subset run names: a scenario, a ladder, a
# workload/bus/size) and "batch" (the run of the script it came from); a
# group this run measured replaces that group's old lines, every other
# group's lines are kept. Meta lines (tool "meta") stay while a line of
# their batch does. The Markdown report is then generated from <store>.
keep_results() {
  local store="$1" new="$2" merged
  mkdir -p "$(dirname "$store")"
  [ -f "$store" ] || : >"$store"
  merged="$(mktemp "$store.XXXXXX")" || return 1
  jq -nc --slurpfile old "$store" --slurpfile new "$new" '
    ($new | map(select(.tool != "meta") | .group) | unique) as $groups
    | ($old | map(select(.tool == "meta" or (.group as $g | $groups | index($g) | not)))) as $kept
    | ($kept | map(select(.tool != "meta") | .batch) | unique) as $live
    | ($kept | map(select(.tool != "meta" or (.batch as $b | $live | index($b))))) + $new
    | .[]' >"$merged" && mv "$merged" "$store"
}
