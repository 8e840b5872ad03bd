#!/usr/bin/env bash
# Makes sure an nginx binary exists and prints its path (one line on stdout,
# nothing else). Installs Debian's nginx-light (or, failing that, nginx) when
# none is found; when nginx is already there it only prints the path.
#
#   nginx=$(scripts/ensure-nginx.sh)
#
# Installing needs root (CI runs as root) or sudo. The package must not leave
# a system nginx running: Debian's postinst would start the service with its
# default site on port 80, which then blocks anything else on port 80 and
# lingers after the tests. So the install runs with a policy-rc.d that forbids
# starting services (exit 101, the Debian convention honoured by invoke-rc.d
# and deb-systemd-invoke), and anything started regardless is stopped
# afterwards. Our own nginx runs are always started by hand, with their own
# prefix and config (see the header of nginx.conf).
set -euo pipefail

find_nginx() {
	# /usr/sbin is not on every user's PATH, but that is where Debian puts it.
	command -v nginx 2>/dev/null && return 0
	[ -x /usr/sbin/nginx ] && { echo /usr/sbin/nginx; return 0; }
	return 1
}

if find_nginx; then
	exit 0
fi

SUDO=
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null || { echo "ensure-nginx: nginx is missing and installing it needs root" >&2; exit 1; }
	SUDO="sudo -n"
fi
export DEBIAN_FRONTEND=noninteractive

# policy-rc.d: keep the package from starting its service. Only ours is
# removed afterwards; an existing one (Docker images ship one) is kept.
policy=/usr/sbin/policy-rc.d
made_policy=
if [ ! -e "$policy" ]; then
	$SUDO sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
	made_policy=1
fi
cleanup() { [ -n "$made_policy" ] && $SUDO rm -f "$policy"; true; }
trap cleanup EXIT

install() {
	$SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1
}
# First try with the package lists we have (fast); if they are missing or
# stale (404s), update them once and try again.
if ! { install nginx-light || install nginx; }; then
	$SUDO apt-get update -qq >/dev/null 2>&1 || true
	install nginx-light || install nginx || {
		echo "ensure-nginx: apt-get install nginx-light / nginx failed" >&2
		exit 1
	}
fi

# Belt and braces: if a service manager started nginx anyway, stop it so that
# port 80 is free and no stray master process is left behind.
if [ -s /run/nginx.pid ] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then
	$SUDO /usr/sbin/nginx -s quit 2>/dev/null || $SUDO kill "$(cat /run/nginx.pid)" 2>/dev/null || true
fi

find_nginx || { echo "ensure-nginx: installed, but no nginx binary found" >&2; exit 1; }
