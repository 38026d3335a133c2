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
prog=bench-s3-memory
. "$(dirname "$0")/lib.sh"
parse_args '[--scale N] [--random-mb M] [--workers "2 4 16"] [--dir DIR] [--keep] [NAME=BINARY ...]' \
	"--scale scale" "--random-mb random_mb" "--workers workers" "--dir dir" "--keep keep=true" -- "$@"
bins=("${rest[@]}")
for b in "${bins[@]}"; do
	case $b in *=*) ;; *) usage_exit ;; esac
done

need_root
need_pg15
need_minio

fresh_dir "$dir"
cleanup() {
	stop_pg "$dir/data"
	stop_minio
	if [ "$keep" = false ]; then rm -rf "$dir"; fi
}
trap cleanup EXIT

if [ ${#bins[@]} = 0 ]; then
	build_hoard "$dir"
	bins=("hoard=$hoard")
fi
for b in "${bins[@]}"; do
	[ -x "${b#*=}" ] || die "${b#*=} is not executable" 2
done

start_minio "$dir"

echo "== cluster: pgbench scale $scale, $random_mb MB of random bytes, data checksums" >&2
port=$(free_port)
export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres PGSSLMODE=disable
data=$dir/data
init_cluster "$data" "$port"
cat >>"$data/postgresql.conf" <<EOF
shared_buffers = 128MB
max_wal_size = 4GB
archive_mode = on
archive_command = 'if [ -e $dir/current.json ]; then $dir/current-hoard --config $dir/current.json wal-push %p; else true; fi'
EOF
start_pg "$data" "$dir/server.log"
fill_cluster "$scale" "$random_mb"

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
		make_bucket "$bucket-$run"
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
			{ cat "$dir/bb.log" >&2; die "$name basebackup failed (its output above)"; }
		read -r rss wall <"$dir/time"
		echo "$name basebackup $w $rss $wall $load" >>"$results"
		rm -rf "$dir/restore"
		load=$(cut -d' ' -f1 /proc/loadavg)
		as_pg /usr/bin/time -f '%M %e' -o "$dir/time" "$bin" --config "$cfg" restore --target-dir "$dir/restore" \
			--parallel "$w" --target-immediate >"$dir/restore.log" 2>&1 ||
			{ cat "$dir/restore.log" >&2; die "$name restore failed (its output above)"; }
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
