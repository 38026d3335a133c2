#!/usr/bin/env bash
# pgbench with and without the daemon's synchronous mode, against MinIO:
# one PostgreSQL 15 cluster, one MinIO server, one hoard daemon streaming
# WAL (walreceiver) into it. Each repetition runs pgbench for a fixed time
# with the daemon asynchronous (synchronous: false, the default) and
# synchronous (synchronous: true, its application name in
# synchronous_standby_names), for each client count, interleaved. Prints a
# table of medians: TPS, mean and percentile transaction latency, the
# commit's own latency (pgbench -r's END), and the .partial uploads the
# daemon made.
#
#   bash scripts/bench-sync.sh [--scale N] [--duration S] [--clients "1 8"] [--reps R] [--wal-segsize MB] [--builtin NAME] [--dir DIR] [--keep]
#
# Runs as root: PostgreSQL and hoard run as the postgres user. Uses
# Debian's PostgreSQL 15 and $HOARD_CACHE/bin/minio (task deps). The
# daemon stores encrypted, snappy-compressed objects, as a site made with
# create-keys does.
#
# Before and after the runs, the script times PUTs of a 64 KiB object
# with curl: MinIO's own round trip, for comparison.
#
# "upload ms" is the run time divided by the number of uploads the daemon
# made during it (hoard_wal_uploads_total): in synchronous mode under
# load the uploads run back to back, so it is the time of one upload (copy
# of the segment so far, hash, stat, compress, encrypt, PUT to MinIO);
# with one client it also holds the client's own time between commits.
set -euo pipefail

scale=10 duration=30 clients="1 8" reps=3 segsize=16 builtin=simple-update dir=/tmp/hoard-bench-sync keep=false
prog=bench-sync
. "$(dirname "$0")/lib.sh"
parse_args '[--scale N] [--duration S] [--clients "1 8"] [--reps R] [--wal-segsize MB] [--builtin NAME] [--dir DIR] [--keep]' \
	"--scale scale" "--duration duration" "--clients clients" "--reps reps" "--wal-segsize segsize" \
	"--builtin builtin" "--dir dir" "--keep keep=true" -- "$@"
no_rest

need_root
need_pg15
need_minio
tck=$(getconf CLK_TCK)

fresh_dir "$dir"
daemon_pid= hoard_pid=
stop_daemon() {
	[ -n "$daemon_pid" ] || return 0
	stop_pid "$daemon_pid" 60
	kill -KILL "$daemon_pid" 2>/dev/null || true
	wait "$daemon_pid" 2>/dev/null || true
	daemon_pid=
}
cleanup() {
	stop_daemon
	stop_pg "$dir/data"
	stop_minio
	if [ "$keep" = false ]; then rm -rf "$dir"; fi
}
trap cleanup EXIT

build_hoard "$dir"
start_minio "$dir"
make_bucket "$bucket"
# round_trip: the median time of 21 PUTs of a 64 KiB object into MinIO
# (curl's own time, without its start): one storage round trip, in ms.
head -c 65536 /dev/urandom >"$dir/rt.bin"
round_trip() {
	for i in $(seq 1 21); do
		s3 -o /dev/null -w '%{time_total}\n' -T "$dir/rt.bin" "http://127.0.0.1:$mport/$bucket/round-trip/$i"
	done | sort -n | awk '{ v[NR] = $1 } END { printf "%.1f", v[int((NR + 1) / 2)] * 1000 }'
}

echo "== cluster: pgbench scale $scale, $segsize MB WAL segments" >&2
port=$(free_port) http_port=$(free_port)
export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres PGSSLMODE=disable
data=$dir/data
init_cluster "$data" "$port" --wal-segsize="$segsize"
cat >>"$data/postgresql.conf" <<EOF
shared_buffers = 128MB
max_wal_size = 1GB
EOF
start_pg "$data" "$dir/server.log"
as_pg "$pgbin/pgbench" -i -q -s "$scale" >/dev/null 2>&1

cfg=$dir/hoard.json
cat >"$cfg" <<EOF
{"backup_location": "$dir/hoard-state",
 "http_port": $http_port,
 "compression": {"algorithm": "snappy"},
 "backup_sites": {"bench": {
   "active_backup_mode": "walreceiver",
   "basebackup_interval_hours": 24,
   "synchronous": false,
   "object_storage": {"storage_type": "s3", "host": "127.0.0.1", "port": $mport, "is_secure": false,
     "bucket_name": "$bucket", "region": "us-east-1",
     "aws_access_key_id": "$muser", "aws_secret_access_key": "$mpass"}}}}
EOF
chown postgres: "$cfg"
chmod 600 "$cfg"
as_pg "$hoard" --config "$cfg" create-keys --key-id bench >/dev/null
set_sync() { # true|false
	jq ".backup_sites.bench.synchronous = $1" "$cfg" >"$cfg.new" && mv "$cfg.new" "$cfg" && chown postgres: "$cfg" && chmod 600 "$cfg"
}
status() { curl -fs "http://127.0.0.1:$http_port/status" 2>/dev/null; }
# wait_for WHAT SECONDS COMMAND...: polls COMMAND every 0.2 s.
wait_for() {
	local what=$1 secs=$2
	shift 2
	for _ in $(seq 1 $((secs * 5))); do
		if "$@"; then return 0; fi
		kill -0 "$daemon_pid" 2>/dev/null || { echo "bench-sync: the daemon exited waiting for $what" >&2; tail -30 "$dir/daemon.log" >&2; exit 1; }
		sleep 0.2
	done
	echo "bench-sync: timed out waiting for $what" >&2
	tail -30 "$dir/daemon.log" >&2
	exit 1
}
backed_up() { status | jq -e '.backup_sites.bench.basebackups >= 1 and (.backup_sites.bench.basebackup_running | not)' >/dev/null; }
streaming() { status | jq -e '.backup_sites.bench.wal.connected' >/dev/null; }
sync_standby() { [ "$(psql -Atc "select count(*) from pg_stat_replication where application_name = 'hoard_bench' and sync_state = 'sync'")" = 1 ]; }
async_standby() { [ "$(psql -Atc "select count(*) from pg_stat_replication where application_name = 'hoard_bench' and sync_state = 'async'")" = 1 ]; }
start_daemon() { # true|false: synchronous
	stop_daemon
	set_sync "$1"
	runuser -u postgres -- "$hoard" --config "$cfg" daemon >>"$dir/daemon.log" 2>&1 &
	daemon_pid=$!
	wait_for "the daemon streaming" 120 streaming
	# runuser waits for hoard: its CPU is its child's.
	hoard_pid=$(tr -d " " <"/proc/$daemon_pid/task/$daemon_pid/children")
}
set_standby_names() {
	psql -c "alter system set synchronous_standby_names = '$1'" -c "select pg_reload_conf()" >/dev/null
}
uploads() {
	curl -fs "http://127.0.0.1:$http_port/metrics" | awk '$1 ~ /^hoard_wal_uploads_total\{/ && /site="bench"/ { n += $2 } END { print n + 0 }'
}
proc_cpu() { # pid: user + system ticks of the process (threads included)
	local f
	read -r -a f < <(sed 's/^.*) //' "/proc/$1/stat")
	echo $((f[11] + f[12]))
}

echo "== the first basebackup" >&2
start_daemon false
wait_for "the first basebackup" 600 backed_up

results=$dir/results
: >"$results"
# run MODE CLIENTS REP: one pgbench run, appends
# "mode clients rep tps lat_avg p50 p99 commit_ms uploads upload_ms daemon_cpu minio_cpu" to $results.
run() {
	local mode=$1 c=$2 rep=$3 jobs=$(($2 < 2 ? $2 : 2))
	local logdir=$dir/pgbench-log
	rm -rf "$logdir" && mkdir -p "$logdir" && chown postgres: "$logdir"
	psql -c checkpoint >/dev/null
	local up0 dcpu0 mcpu0 up1 dcpu1 mcpu1
	up0=$(uploads) dcpu0=$(proc_cpu "$hoard_pid") mcpu0=$(proc_cpu "$minio_pid")
	(cd "$logdir" && as_pg "$pgbin/pgbench" -n -b "$builtin" -T "$duration" -c "$c" -j "$jobs" -r -l --log-prefix="$logdir/tx") >"$dir/pgbench.out" 2>"$dir/pgbench.err" || {
		echo "bench-sync: pgbench failed:" >&2
		cat "$dir/pgbench.err" >&2
		exit 1
	}
	up1=$(uploads) dcpu1=$(proc_cpu "$hoard_pid") mcpu1=$(proc_cpu "$minio_pid")
	local tps lat commit pct
	tps=$(awk '/^tps = / { print $3; exit }' "$dir/pgbench.out")
	lat=$(awk '/^latency average = / { print $4; exit }' "$dir/pgbench.out")
	commit=$(awk '$NF == "END;" { print $1; exit }' "$dir/pgbench.out")
	# Per-transaction log: the third field is the latency in microseconds.
	pct=$(cat "$logdir"/tx* | awk '{ print $3 }' | sort -n | awk '{ v[NR] = $1 } END { printf "%.2f %.2f", v[int(NR * 0.5) + 1] / 1000, v[int(NR * 0.99) + 1] / 1000 }')
	local n=$((up1 - up0))
	local upms
	upms=$(awk -v n="$n" -v d="$duration" 'BEGIN { if (n > 0) printf "%.1f", d * 1000 / n; else print "-" }')
	local dcpu mcpu
	dcpu=$(awk -v a="$dcpu0" -v b="$dcpu1" -v t="$tck" 'BEGIN { printf "%.1f", (b - a) / t }')
	mcpu=$(awk -v a="$mcpu0" -v b="$mcpu1" -v t="$tck" 'BEGIN { printf "%.1f", (b - a) / t }')
	echo "$mode $c $rep $tps $lat $pct $commit $n $upms $dcpu $mcpu" | tee -a "$results" >&2
}

load_before=$(uptime)
rt_before=$(round_trip)
for r in $(seq 1 "$reps"); do
	echo "== repetition $r of $reps" >&2
	set_standby_names ""
	start_daemon false
	wait_for "hoard_bench an asynchronous standby" 60 async_standby
	for c in $clients; do run async "$c" "$r"; done
	start_daemon true
	set_standby_names hoard_bench
	wait_for "hoard_bench a synchronous standby" 60 sync_standby
	for c in $clients; do run sync "$c" "$r"; done
	set_standby_names ""
done
load_after=$(uptime)
rt_after=$(round_trip)
stop_daemon

echo
echo "PostgreSQL 15, pgbench scale $scale, builtin $builtin, $duration s per run, $segsize MB WAL segments; MinIO on the same host; $(nproc) cores; $reps interleaved repetitions"
echo "load before: $load_before"
echo "load after:  $load_after"
echo "MinIO round trip (median PUT of 64 KiB, curl): $rt_before ms before the runs, $rt_after ms after"
echo
awk '
{
	k = $1 " " $2
	if (!(k in seen)) { seen[k] = 1; order[++n] = k }
	c = ++cnt[k]
	for (f = 4; f <= NF; f++) v[k, f, c] = $f
}
function median(k, f,   c, i, j, a, t) {
	c = cnt[k]
	for (i = 1; i <= c; i++) a[i] = v[k, f, i]
	for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
	return c % 2 ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
}
function range(k, f,   c, i, lo, hi) {
	lo = hi = v[k, f, 1]
	for (i = 2; i <= cnt[k]; i++) { if (v[k, f, i] + 0 < lo + 0) lo = v[k, f, i]; if (v[k, f, i] + 0 > hi + 0) hi = v[k, f, i] }
	return cnt[k] > 1 ? sprintf("%.1f-%.1f", lo, hi) : sprintf("%.1f", lo)
}
END {
	print "| mode | clients | TPS (median, range) | latency ms, mean | p50 ms | p99 ms | commit (END) ms | uploads | upload ms | daemon CPU s | MinIO CPU s |"
	print "|---|---|---|---|---|---|---|---|---|---|---|"
	for (i = 1; i <= n; i++) {
		k = order[i]; split(k, p, " ")
		printf "| %s | %s | %.1f (%s) | %.2f | %.2f | %.2f | %.2f | %d | %s | %.1f | %.1f |\n", p[1], p[2], median(k, 4), range(k, 4),
			median(k, 5), median(k, 6), median(k, 7), median(k, 8), median(k, 9), median(k, 10), median(k, 11), median(k, 12)
	}
}' "$results"
echo
echo "Raw lines (mode, clients, repetition, TPS, mean latency ms, p50 ms, p99 ms, commit ms, uploads, upload ms, daemon CPU s, MinIO CPU s):"
cat "$results"
