#!/usr/bin/env bash
# Build the root file system of hoard's container image into DIR: a static
# binary, CA certificates, and passwd/group entries for the "hoard" user
# (uid/gid 999). The Dockerfile runs this same script in its build stage and
# copies DIR into an empty (scratch) image; run outside Docker it proves the
# binary is static (deploy/deploy_test.go does).
#
#   scripts/image-build.sh DIR        (VERSION=... to stamp the version)
set -euo pipefail

out=${1:?usage: scripts/image-build.sh DIR}
cd "$(dirname "$0")/.."
version=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}

rm -rf "$out"
mkdir -p "$out/usr/local/bin" "$out/etc/ssl/certs" "$out/var/lib/hoard" "$out/tmp"
chmod 1777 "$out/tmp"

# The same flags as `task build`: no cgo, so no libc; -trimpath keeps build
# paths out of the binary.
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$out/usr/local/bin/hoard" .
bin=$out/usr/local/bin/hoard

# Static, or the scratch image could not run it.
if command -v file >/dev/null; then
	desc=$(file -b "$bin")
	case $desc in
	*"statically linked"* | *"static-pie linked"*) ;;
	*) echo "image-build: $bin is not static: $desc" >&2; exit 1 ;;
	esac
fi
if command -v ldd >/dev/null; then
	# glibc's ldd prints "not a dynamic executable" (and exits 1) for a
	# static binary; musl's says "Not a valid dynamic program".
	libs=$(ldd "$bin" 2>&1 || true)
	if ! grep -qiE "not a dynamic executable|not a valid dynamic program" <<<"$libs"; then
		echo "image-build: ldd lists dynamic libraries:" >&2
		echo "$libs" >&2
		exit 1
	fi
fi

ca=/etc/ssl/certs/ca-certificates.crt
if [ ! -s "$ca" ]; then
	echo "image-build: $ca missing (install ca-certificates): object storage over HTTPS needs it" >&2
	exit 1
fi
cp "$ca" "$out/etc/ssl/certs/ca-certificates.crt"

cat >"$out/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
hoard:x:999:999:hoard:/var/lib/hoard:/sbin/nologin
PASSWD
cat >"$out/etc/group" <<'GROUP'
root:x:0:
hoard:x:999:
GROUP

"$bin" --version
