#!/usr/bin/env bash
# update-socketio-client.sh — vendor the stock socket.io-client browser bundle
# into server/socketio/clientjs/dist so the Go binary can serve /socket.io/socket.io.js
# exactly like the Node.js socket.io server does.
#
# Usage:
#   scripts/update-socketio-client.sh            # newest 4.8.x from the npm registry
#   scripts/update-socketio-client.sh 4.8.1      # a given version
#   scripts/update-socketio-client.sh --check    # verify committed files (no network)
#
# The files are copied UNMODIFIED from the npm tarball, after the tarball has been
# checked against the registry's dist.integrity (sha512). VERSION records the
# version, SHA256SUMS the sha256 of every vendored file (the Go package derives
# its ETags from the same digests and its test re-checks them).
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dist="$repo_root/server/socketio/clientjs/dist"

# Files copied from the package's dist/ folder. js_files are required; the
# optional ones are copied when the package ships them. The Node.js socket.io
# server also serves socket.io.esm.min.js (for `import { io } from ...`), so it is
# kept too; the msgpack build is left out (this server speaks the default parser).
js_files=(socket.io.js socket.io.min.js)
optional_files=(socket.io.js.map socket.io.min.js.map socket.io.esm.min.js socket.io.esm.min.js.map)

die() { echo "update-socketio-client: $*" >&2; exit 1; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

check() {
	[ -d "$dist" ] || die "missing $dist"
	[ -s "$dist/VERSION" ] || die "missing $dist/VERSION"
	[ -s "$dist/SHA256SUMS" ] || die "missing $dist/SHA256SUMS"
	local version
	version=$(tr -d '[:space:]' <"$dist/VERSION")
	[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "VERSION is not a version: '$version'"
	for f in "${js_files[@]}" LICENSE; do
		[ -f "$dist/$f" ] || die "missing $dist/$f"
		grep -q "  $f\$" "$dist/SHA256SUMS" || die "$f is not listed in SHA256SUMS"
	done
	# Every listed file must exist and match; every file present must be listed.
	(cd "$dist" && sha256sum --quiet --strict -c SHA256SUMS) || die "SHA256SUMS mismatch in $dist"
	local f
	for f in "$dist"/*; do
		f=$(basename "$f")
		case "$f" in VERSION | SHA256SUMS) continue ;; esac
		grep -q "  $f\$" "$dist/SHA256SUMS" || die "$f is present but not listed in SHA256SUMS"
	done
	# The shipped licence header names the version.
	for f in "${js_files[@]}"; do
		head -c 200 "$dist/$f" | grep -q "Socket.IO v$version" ||
			die "$f header does not name Socket.IO v$version"
	done
	echo "socket.io-client $version: vendored files OK"
}

if [ "${1:-}" = "--check" ]; then
	check
	exit 0
fi

command -v npm >/dev/null || die "npm is required"
command -v node >/dev/null || die "node is required"

version=${1:-}
if [ -z "$version" ]; then
	version=$(npm view socket.io-client versions --json |
		node -e 'const v=JSON.parse(require("fs").readFileSync(0,"utf8"));
			const m=v.filter(x=>/^4\.8\.\d+$/.test(x)).sort((a,b)=>+a.split(".")[2]-+b.split(".")[2]);
			if(!m.length)process.exit(1);console.log(m[m.length-1])') ||
		die "cannot find a 4.8.x version"
fi
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "bad version '$version'"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

integrity=$(npm view "socket.io-client@$version" dist.integrity)
[[ "$integrity" == sha512-* ]] || die "registry gave no sha512 integrity for $version: '$integrity'"

(cd "$tmp" && npm pack --silent "socket.io-client@$version" >/dev/null)
tarball="$tmp/socket.io-client-$version.tgz"
[ -f "$tarball" ] || die "npm pack produced no $tarball"

got="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
[ "$got" = "$integrity" ] || die "integrity mismatch: registry $integrity, tarball $got"

mkdir "$tmp/x"
tar -xzf "$tarball" -C "$tmp/x"
pkg="$tmp/x/package"
pkgver=$(node -p 'require(process.argv[1]).version' "$pkg/package.json")
[ "$pkgver" = "$version" ] || die "tarball package.json says $pkgver, wanted $version"

rm -rf "$dist"
mkdir -p "$dist"
for f in "${js_files[@]}"; do
	[ -f "$pkg/dist/$f" ] || die "package has no dist/$f"
	cp "$pkg/dist/$f" "$dist/$f"
done
for f in "${optional_files[@]}"; do
	if [ -f "$pkg/dist/$f" ]; then cp "$pkg/dist/$f" "$dist/$f"; fi
done
[ -f "$pkg/LICENSE" ] || die "package has no LICENSE"
cp "$pkg/LICENSE" "$dist/LICENSE"
echo "$version" >"$dist/VERSION"
(cd "$dist" && sha256sum -- $(ls | grep -vx -e VERSION -e SHA256SUMS | sort) >SHA256SUMS)

echo "vendored socket.io-client $version ($integrity) into ${dist#"$repo_root"/}"
check
