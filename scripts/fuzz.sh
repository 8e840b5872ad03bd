#!/usr/bin/env bash
# Fuzzes every decoder and validator of client input (server/fuzz_test.go),
# one target after another, each for the given number of seconds.
#
#   scripts/fuzz.sh          5 s per target: the CI smoke run
#   scripts/fuzz.sh 600      10 minutes per target: run this after changing
#                            server/wire.go, and before a release
#
# Targets run one at a time, each on GOMAXPROCS workers (set FUZZ_PARALLEL to
# change). A failure stops the script; the crashing input is saved under
# server/testdata/fuzz/<FuzzName>/ and becomes a regression test that plain
# `go test ./server/` runs from then on: commit it with the fix. The
# corpus the fuzzer grows while running stays in the Go build cache
# ($(go env GOCACHE)/fuzz), not in the repository.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-5}
case $seconds in
'' | *[!0-9]*)
	echo "usage: $0 [seconds per target]" >&2
	exit 2
	;;
esac
parallel=()
if [ -n "${FUZZ_PARALLEL:-}" ]; then
	parallel=(-parallel "$FUZZ_PARALLEL")
fi

targets=$(go test -list '^Fuzz' ./server/ | grep '^Fuzz')
for target in $targets; do
	printf '\n\033[1m== %s (%ss)\033[0m\n' "$target" "$seconds"
	go test -run '^$' -fuzz "^${target}\$" -fuzztime "${seconds}s" "${parallel[@]}" ./server/
done
