#!/usr/bin/env bash
# Peak RSS of hoard's local-tar basebackup (lz4, encrypted) into MinIO and of
# its restore from MinIO, at several worker counts, for one or more hoard
# binaries on the same cluster.
#
#   bash scripts/bench-s3-memory.sh [--scale N] [--random-mb M] [--workers "2 4 16"] [--dir DIR] [--keep] [NAME=BINARY ...]
#
# Without NAME=BINARY it builds this checkout as "hoard". Runs as root:
# PostgreSQL and hoard run as the postgres user. Uses Debian's PostgreSQL 15
# and $HOARD_CACHE/bin/minio (task deps). Peak RSS is GNU time's maximum
# resident set size of the hoard process; wall time is printed for
# reference only (other work on the machine moves it).
set -euo pipefail

scale=60 random_mb=512 workers="2 4 16" dir=/tmp/hoard-s3mem keep=false
bins=()
while [ $# -gt 0 ]; do
	case $1 in
	--scale) scale=$2; shift ;;
	--random-mb) random_mb=$2; shift ;;
	--workers) workers=$2; shift ;;
	--dir) dir=$2; shift ;;
	--keep) keep=true ;;
	*=*) bins+=("$1") ;;
	*) echo "usage: $0 [--scale N] [--random-mb M] [--workers \"2 4 16\"] [--dir DIR] [--keep] [NAME=BINARY ...]" >&2; exit 2 ;;
	esac
	shift
done

[ "$(id -u)" = 0 ] || { echo "bench-s3-memory: run as root (the tools run as postgres)" >&2; exit 2; }
pgbin=/usr/lib/postgresql/15/bin
[ -x "$pgbin/postgres" ] || { echo "bench-s3-memory: Debian's PostgreSQL 15 is missing ($pgbin): run task deps" >&2; exit 2; }
minio_bin=${HOARD_CACHE:-/var/cache/hoard}/bin/minio
[ -x "$minio_bin" ] || { echo "bench-s3-memory: $minio_bin is missing: run task deps" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/.." && pwd)

as_pg() { runuser -u postgres -- "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

rm -rf "$dir"
mkdir -p "$dir"
chown postgres: "$dir"
minio_pid=
cleanup() {
	if [ -f "$dir/data/postmaster.pid" ]; then as_pg "$pgbin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; fi
	if [ -n "$minio_pid" ]; then kill -TERM "$minio_pid" 2>/dev/null || true; wait "$minio_pid" 2>/dev/null || true; fi
	if [ "$keep" = false ]; then rm -rf "$dir"; fi
}
trap cleanup EXIT

if [ ${#bins[@]} = 0 ]; then
	echo "== building hoard" >&2
	(cd "$repo" && CGO_ENABLED=0 go build -trimpath -o "$dir/hoard" .)
	bins=("hoard=$dir/hoard")
fi
for b in "${bins[@]}"; do
	[ -x "${b#*=}" ] || { echo "bench-s3-memory: ${b#*=} is not executable" >&2; exit 2; }
done

echo "== MinIO" >&2
mport=$(free_port) mconsole=$(free_port)
muser=hoardbench mpass=hoardbench-secret bucket=hoard-bench
mkdir -p "$dir/minio"
MINIO_ROOT_USER=$muser MINIO_ROOT_PASSWORD=$mpass MINIO_BROWSER=off MINIO_UPDATE=off \
	"$minio_bin" server --quiet --address "127.0.0.1:$mport" --console-address "127.0.0.1:$mconsole" "$dir/minio" \
	>"$dir/minio.log" 2>&1 &
minio_pid=$!
for i in $(seq 1 600); do
	curl -fs "http://127.0.0.1:$mport/minio/health/live" >/dev/null && break
	[ "$i" = 600 ] && { echo "bench-s3-memory: MinIO does not answer" >&2; cat "$dir/minio.log" >&2; exit 1; }
	sleep 0.1
done
s3() { curl -fsS --aws-sigv4 "aws:amz:us-east-1:s3" --user "$muser:$mpass" "$@"; }

echo "== cluster: pgbench scale $scale, $random_mb MB of random bytes, data checksums" >&2
port=$(free_port)
export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres PGSSLMODE=disable
data=$dir/data
as_pg "$pgbin/initdb" -D "$data" -k -A trust -U postgres >/dev/null
cat >>"$data/postgresql.conf" <<EOF
port = $port
listen_addresses = ''
unix_socket_directories = '$dir'
shared_buffers = 128MB
max_wal_size = 4GB
archive_mode = on
archive_command = 'if [ -e $dir/current.json ]; then $dir/current-hoard --config $dir/current.json wal-push %p; else true; fi'
EOF
as_pg "$pgbin/pg_ctl" -D "$data" -l "$dir/server.log" -w start >/dev/null
psql() { as_pg "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
as_pg "$pgbin/pgbench" -i -q -s "$scale" >/dev/null 2>&1
psql -c "create extension pgcrypto" \
	-c "create table random_bytes (id int, b bytea)" \
	-c "insert into random_bytes select g, gen_random_bytes(1024) from generate_series(1, $((random_mb * 1024))) g" \
	-c "vacuum (freeze, analyze)" -c "checkpoint"
size=$(psql -Atc "select sum(pg_database_size(oid)) from pg_database")
echo "== database size $((size / 1000000)) MB" >&2

# One site per run: a fresh bucket, local-tar, lz4, encrypted. The
# server's archive_command pushes WAL with the run's binary and site (the
# WAL of the load above was not kept), so that the backup's WAL is there
# for the restore.
run=0
results=$dir/results
: >"$results"
for b in "${bins[@]}"; do
	name=${b%%=*} bin=${b#*=}
	for w in $workers; do
		run=$((run + 1))
		s3 -X PUT "http://127.0.0.1:$mport/$bucket-$run" >/dev/null
		cfg=$dir/hoard-$run.json
		cat >"$cfg" <<EOF
{"backup_location": "$dir/state-$run",
 "compression": {"algorithm": "lz4"},
 "backup_sites": {"bench": {
   "active_backup_mode": "archive_command",
   "pg_data_directory": "$data",
   "basebackup_mode": "local-tar",
   "basebackup_threads": $w,
   "object_storage": {"storage_type": "s3", "host": "127.0.0.1", "port": $mport, "is_secure": false,
     "region": "us-east-1", "bucket_name": "$bucket-$run",
     "aws_access_key_id": "$muser", "aws_secret_access_key": "$mpass"}}}}
EOF
		chown postgres: "$cfg" && chmod 600 "$cfg"
		as_pg "$bin" --config "$cfg" create-keys --key-id bench >/dev/null
		ln -sfn "$bin" "$dir/current-hoard"
		ln -sfn "$cfg" "$dir/current.json"
		load=$(cut -d' ' -f1 /proc/loadavg)
		as_pg /usr/bin/time -f '%M %e' -o "$dir/time" "$bin" --config "$cfg" basebackup --fast >"$dir/bb.log" 2>&1 ||
			{ echo "bench-s3-memory: $name basebackup failed:" >&2; cat "$dir/bb.log" >&2; exit 1; }
		read -r rss wall <"$dir/time"
		echo "$name basebackup $w $rss $wall $load" >>"$results"
		rm -rf "$dir/restore"
		load=$(cut -d' ' -f1 /proc/loadavg)
		as_pg /usr/bin/time -f '%M %e' -o "$dir/time" "$bin" --config "$cfg" restore --target-dir "$dir/restore" \
			--parallel "$w" --target-immediate >"$dir/restore.log" 2>&1 ||
			{ echo "bench-s3-memory: $name restore failed:" >&2; cat "$dir/restore.log" >&2; exit 1; }
		read -r rss wall <"$dir/time"
		echo "$name restore $w $rss $wall $load" >>"$results"
		rm -rf "$dir/restore"
	done
done

echo
echo "database: $((size / 1000000)) MB; peak RSS is GNU time's maximum resident set size"
echo
echo "| binary | command | workers | peak RSS MiB | wall s | load average at start |"
echo "|---|---|---|---|---|---|"
awk '{ printf "| %s | %s | %s | %.0f | %s | %s |\n", $1, $2, $3, $4 / 1024, $5, $6 }' "$results"
