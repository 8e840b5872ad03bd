#!/usr/bin/env bash
# Fuzzes every decoder and validator of client input (server/fuzz_test.go),
# one target after another, each for the given number of seconds, or of
# inputs when the number ends in x.
#
#   scripts/fuzz.sh          5 s per target
#   scripts/fuzz.sh 2000x    2,000 inputs per target: the CI smoke run
#   scripts/fuzz.sh 600      10 minutes per target: run this after changing
#                            server/wire.go, and before a release
#
# CI counts inputs rather than seconds because Go 1.26's fuzzing
# coordinator can fail a target with a bare "context deadline exceeded"
# when its time is up while a worker on a loaded machine is still running
# an input (go.dev/issue/75804, fixed in Go 1.27): no crasher, nothing to
# reproduce (CI, FuzzCredentials after 2,443 inputs in 3 s). A count has
# no deadline to race.
#
# Targets run one at a time, each on GOMAXPROCS workers (set FUZZ_PARALLEL to
# change). A failure stops the script; the crashing input is saved under
# server/testdata/fuzz/<FuzzName>/ and becomes a regression test that plain
# `go test ./server/` runs from then on: commit it with the fix. The
# corpus the fuzzer grows while running stays in the Go build cache
# ($(go env GOCACHE)/fuzz), not in the repository.
set -euo pipefail
cd "$(dirname "$0")/.."

budget=${1:-5}
case $budget in
'' | x | *[!0-9x]* | *x?*)
	echo "usage: $0 [seconds per target, or inputs per target followed by x]" >&2
	exit 2
	;;
*x) ;;
*) budget="${budget}s" ;;
esac
parallel=()
if [ -n "${FUZZ_PARALLEL:-}" ]; then
	parallel=(-parallel "$FUZZ_PARALLEL")
fi

targets=$(go test -list '^Fuzz' ./server/ | grep '^Fuzz')
for target in $targets; do
	printf '\n\033[1m== %s (%s)\033[0m\n' "$target" "$budget"
	go test -run '^$' -fuzz "^${target}\$" -fuzztime "$budget" "${parallel[@]}" ./server/
done
