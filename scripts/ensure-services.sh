#!/usr/bin/env bash
# Makes sure the two services the tests talk to are up on loopback, installing
# and starting them when they are not:
#
#   PostgreSQL   127.0.0.1:5432, user postgres, no password (trust on loopback
#                TCP, as on the CI machines); Debian package `postgresql`
#   NATS         127.0.0.1:4222; Debian package `nats-server`
#
#   bash scripts/ensure-services.sh
#
# When both already answer it prints nothing and changes nothing. Otherwise it
# says on stderr what it does: install a missing package (apt-get, as root or
# through `sudo -n`), create the cluster if the package made none, start the
# cluster with pg_ctlcluster, add two `trust` lines for user postgres on
# 127.0.0.1/::1 to the top of that cluster's pg_hba.conf when a password-less
# login is refused, start nats-server on 127.0.0.1 in the background (log in
# ${TMPDIR:-/tmp}/nats-server.log). Both stay running afterwards, as a
# database server normally does; nothing listens beyond loopback.
#
# The packages must not start services of their own (nats-server's unit would
# listen on every interface): the install runs under a policy-rc.d that
# forbids it, as scripts/ensure-nginx.sh does, and a unit started regardless
# is stopped.
#
# A TEST_DATABASE_URL or TEST_NATS_URL pointing anywhere else than the
# defaults above means "use that one": that service is left alone.
#
# Exit status: 0 when both answer at the end, 1 otherwise (with the reason).
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT=5432
NATS_HOST=127.0.0.1
NATS_PORT=4222

say() { printf 'ensure-services: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# Privileges for apt-get, pg_ctlcluster and pg_hba.conf.
SUDO=()
have_root() {
	[ "$(id -u)" = 0 ] && return 0
	command -v sudo >/dev/null && sudo -n true 2>/dev/null && { SUDO=(sudo -n); return 0; }
	return 1
}

# apt_install installs Debian packages without starting their services.
made_policy=
cleanup() {
	if [ -n "$made_policy" ]; then "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d || true; fi
}
trap cleanup EXIT
apt_install() {
	have_root || die "$* missing, and installing it needs root or password-less sudo; install the Debian package(s) '$*' and run again"
	export DEBIAN_FRONTEND=noninteractive
	# policy-rc.d exit 101 = "do not start services", honoured by
	# invoke-rc.d and deb-systemd-invoke. An existing one (Docker images
	# ship one) is kept; ours is removed on exit.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		"${SUDO[@]}" sh -c "printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d"
		made_policy=1
	fi
	local log
	log=$(mktemp "${TMPDIR:-/tmp}/ensure-services-apt.XXXXXX")
	say "installing $* (Debian package; apt-get output in $log)"
	# The package lists may be missing or stale (404s): update once and retry.
	if ! "${SUDO[@]}" apt-get install -y -q --no-install-recommends "$@" >"$log" 2>&1; then
		"${SUDO[@]}" apt-get update -q >>"$log" 2>&1 || true
		"${SUDO[@]}" apt-get install -y -q --no-install-recommends "$@" >>"$log" 2>&1 || {
			tail -n 20 "$log" >&2
			die "apt-get install $* failed (full output: $log)"
		}
	fi
}

# stop_unit stops a systemd unit a package started despite policy-rc.d.
stop_unit() {
	command -v systemctl >/dev/null || return 0
	if systemctl is-active --quiet "$1" 2>/dev/null; then
		say "stopping the $1 service the package started"
		"${SUDO[@]}" systemctl stop "$1" || true
	fi
}

# ---------------------------------------------------------------- PostgreSQL

pg_manage() {
	case "${TEST_DATABASE_URL:-}" in
	"" | "postgres://postgres@$PG_HOST:$PG_PORT/"* | "postgres://postgres@localhost:$PG_PORT/"*) return 0 ;;
	*) return 1 ;;
	esac
}

# pg_login: does the server take user postgres without a password? A
# ~/.pgpass or PGPASSWORD would hide the answer, so neither is used.
pg_login() {
	command -v psql >/dev/null || return 1
	env -u PGPASSWORD PGPASSFILE=/nonexistent/pgpass PGCONNECT_TIMEOUT=3 \
		psql -X -w -q -At -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -c 'SELECT 1' >/dev/null 2>&1
}

pg_up() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; }

# pg_cluster prints "<version> <name>" of the Debian cluster on port 5432.
pg_cluster() {
	command -v pg_lsclusters >/dev/null || return 1
	pg_lsclusters -h 2>/dev/null | awk -v port="$PG_PORT" '$3 == port { print $1, $2; found = 1; exit } END { exit !found }'
}

pg_installed() {
	command -v pg_ctlcluster >/dev/null && compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

ensure_postgres() {
	pg_login && return 0
	if ! pg_installed; then
		apt_install postgresql
		stop_unit postgresql
	fi
	local cluster ver name
	if ! cluster=$(pg_cluster); then
		[ -z "$(pg_lsclusters -h 2>/dev/null)" ] ||
			die "no PostgreSQL cluster on port $PG_PORT (pg_lsclusters lists others); create one or set TEST_DATABASE_URL"
		ver=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)
		say "creating PostgreSQL cluster $ver main on port $PG_PORT"
		have_root || true
		"${SUDO[@]}" pg_createcluster "$ver" main --port "$PG_PORT" >/dev/null ||
			die "pg_createcluster $ver main failed"
		cluster="$ver main"
	fi
	read -r ver name <<<"$cluster"
	have_root || true # sets SUDO when sudo works; as the postgres user it is not needed
	if ! pg_up; then
		say "starting PostgreSQL $ver/$name"
		local out
		out=$(mktemp "${TMPDIR:-/tmp}/ensure-services-pg.XXXXXX")
		"${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start </dev/null >"$out" 2>&1 || {
			cat "$out" >&2
			die "pg_ctlcluster $ver $name start failed (server log: /var/log/postgresql/postgresql-$ver-$name.log)"
		}
		rm -f "$out"
		for _ in $(seq 1 30); do pg_up && break; sleep 1; done
		pg_up || die "PostgreSQL $ver/$name started but $PG_HOST:$PG_PORT does not answer after 30 s"
	fi
	pg_login && return 0

	# Up, but it wants a password: trust user postgres on loopback TCP.
	local hba=/etc/postgresql/$ver/$name/pg_hba.conf
	have_root || die "PostgreSQL on $PG_HOST:$PG_PORT refuses user postgres without a password, and changing $hba needs root; add 'host all postgres 127.0.0.1/32 trust' at its top, or set TEST_DATABASE_URL"
	[ -f "$hba" ] || die "PostgreSQL on $PG_HOST:$PG_PORT refuses user postgres without a password and $hba does not exist; set TEST_DATABASE_URL"
	say "allowing user postgres on 127.0.0.1 and ::1 without a password (trust lines added at the top of $hba)"
	"${SUDO[@]}" sed -i '1i # Added by chatd scripts/ensure-services.sh: the tests log in as postgres from loopback without a password.\nhost    all    postgres    127.0.0.1/32    trust\nhost    all    postgres    ::1/128         trust' "$hba"
	"${SUDO[@]}" pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" reload </dev/null >/dev/null 2>&1 || true
	for _ in $(seq 1 10); do pg_login && return 0; sleep 0.5; done
	die "PostgreSQL on $PG_HOST:$PG_PORT still refuses user postgres without a password after the change to $hba"
}

# ---------------------------------------------------------------------- NATS

nats_manage() {
	case "${TEST_NATS_URL:-}" in
	"" | "nats://$NATS_HOST:$NATS_PORT" | "nats://localhost:$NATS_PORT") return 0 ;;
	*) return 1 ;;
	esac
}

nats_up() { (exec 3<>"/dev/tcp/$NATS_HOST/$NATS_PORT") 2>/dev/null; }

nats_bin() {
	command -v nats-server 2>/dev/null && return 0
	[ -x /usr/sbin/nats-server ] && { echo /usr/sbin/nats-server; return 0; }
	return 1
}

ensure_nats() {
	nats_up && return 0
	local bin
	if ! bin=$(nats_bin); then
		apt_install nats-server
		stop_unit nats-server
		bin=$(nats_bin) || die "nats-server installed, but no nats-server binary found"
	fi
	local log=${TMPDIR:-/tmp}/nats-server.log
	say "starting nats-server on $NATS_HOST:$NATS_PORT (log: $log)"
	# In a session of its own and detached from this shell's output, so a
	# caller reading that through a pipe (scripts/test.sh tees every step)
	# is not held open. Not start-stop-daemon --exec: it takes any running
	# nats-server, on whatever port, for this one and starts nothing.
	setsid "$bin" -a "$NATS_HOST" -p "$NATS_PORT" -l "$log" </dev/null >/dev/null 2>&1 &
	disown
	for _ in $(seq 1 20); do nats_up && return 0; sleep 0.5; done
	die "nats-server does not answer on $NATS_HOST:$NATS_PORT after 10 s (log: $log)"
}

if pg_manage; then ensure_postgres; fi
if nats_manage; then ensure_nats; fi
