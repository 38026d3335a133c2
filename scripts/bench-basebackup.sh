#!/usr/bin/env bash
# Basebackups and restores side by side, on one cluster in one run: the raw
# BASE_BACKUP drain (pg_basebackup to /dev/null), pgBackRest, hoard's two
# modes (local-tar and BASE_BACKUP) and tar -x, interleaved, REPS times.
# Prints a table of medians (wall time, CPU seconds, peak RSS, stored size,
# ratios), then a scaling table for 1, 2 and the core count of workers.
#
#   bash scripts/bench-basebackup.sh [--scale N] [--random-mb M] [--reps R] [--dir DIR] [--keep]
#
# --scale is pgbench's scale (100: about 1.5 GB), --random-mb the size of a
# table of random bytes (so that compression is realistic). Runs as root:
# PostgreSQL, pgBackRest and hoard run as the postgres user. Installs
# Debian's pgbackrest when it is missing. Uses Debian's PostgreSQL 15.
#
# CPU seconds are the tool's own (user + system of it and its children)
# plus the server's processes' during the run (a walsender's, for
# BASE_BACKUP), read from /proc, so other work on the machine does not
# count. Peak RSS is the largest single process of the tool (GNU time's
# %M). Stored size is what the repository or store holds for the backup.
set -euo pipefail

scale=100 random_mb=512 reps=3 dir=/tmp/hoard-bench keep=false
prog=bench-basebackup
. "$(dirname "$0")/lib.sh"
parse_args '[--scale N] [--random-mb M] [--reps R] [--dir DIR] [--keep]' \
	"--scale scale" "--random-mb random_mb" "--reps reps" "--dir dir" "--keep keep=true" -- "$@"
no_rest

need_root
need_pg15
if ! command -v pgbackrest >/dev/null; then
	echo "== installing pgbackrest (apt)" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y pgbackrest >&2
fi
cores=$(nproc)
tck=$(getconf CLK_TCK)

fresh_dir "$dir"
cleanup() {
	stop_pg "$dir/data"
	if [ "$keep" = false ]; then rm -rf "$dir"; fi
}
trap cleanup EXIT

build_hoard "$dir"

port=$(free_port)
export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres
data=$dir/data spc=$dir/spc

# hoard: one site, local store, encrypted; compression and mode are set per
# run. WAL goes through hoard wal-push, so that its restore finds it.
cfg=$dir/hoard.json
cat >"$cfg" <<EOF
{"backup_location": "$dir/hoard-state",
 "compression": {"algorithm": "lz4"},
 "backup_sites": {"bench": {
   "active_backup_mode": "archive_command",
   "pg_data_directory": "$data",
   "basebackup_mode": "local-tar",
   "object_storage": {"storage_type": "local", "directory": "$dir/store"}}}}
EOF
chown postgres: "$cfg"
as_pg "$hoard" --config "$cfg" create-keys --key-id bench >/dev/null
set_cfg() { # jq filter on the site
	jq ".backup_sites.bench |= ($1)" "$cfg" >"$cfg.new" && mv "$cfg.new" "$cfg" && chown postgres: "$cfg" && chmod 600 "$cfg"
}
set_top() {
	jq "$1" "$cfg" >"$cfg.new" && mv "$cfg.new" "$cfg" && chown postgres: "$cfg" && chmod 600 "$cfg"
}

echo "== cluster: pgbench scale $scale, $random_mb MB of random bytes, data checksums" >&2
init_cluster "$data" "$port"
mkdir -p "$spc" && chown postgres: "$spc"
cat >>"$data/postgresql.conf" <<EOF
shared_buffers = 256MB
max_wal_size = 4GB
archive_mode = on
archive_command = '$hoard --config $cfg wal-push %p'
EOF
start_pg "$data" "$dir/server.log"
fill_cluster "$scale" "$random_mb"

# pgBackRest: one stanza per repository; each run starts from an empty one.
pgbr_conf=$dir/pgbackrest.conf
cat >"$pgbr_conf" <<EOF
[global]
repo1-path=$dir/pgbr-lz4
log-level-console=warn
log-level-file=off
start-fast=y
archive-check=n
lock-path=$dir/pgbr-lock
[bench]
pg1-path=$data
pg1-port=$port
pg1-socket-path=$dir
EOF
chown postgres: "$pgbr_conf"
pgbr() { as_pg env $pgbr_env pgbackrest --config="$pgbr_conf" --stanza=bench "$@"; }
pgbr_env=
pgbr_repo() { # name options: empty repository $dir/pgbr-<name>
	rm -rf "$dir/pgbr-$1"
	mkdir -p "$dir/pgbr-$1" && chown postgres: "$dir/pgbr-$1"
	# shellcheck disable=SC2086 # $2: options, split on purpose
	pgbr --repo1-path="$dir/pgbr-$1" $2 stanza-create >/dev/null
}
# The passphrase may not be on the command line.
cipher="--repo1-cipher-type=aes-256-cbc"
cipher_env="PGBACKREST_REPO1_CIPHER_PASS=bench-passphrase"

# server_cpu prints the CPU ticks the cluster's processes used so far: the
# postmaster's own and its reaped children's, plus its live children's.
server_cpu() {
	local pm t=0 f
	pm=$(head -1 "$data/postmaster.pid")
	read -r -a f < <(sed 's/^.*) //' "/proc/$pm/stat")
	t=$((f[11] + f[12] + f[13] + f[14]))
	for p in $(cat "/proc/$pm/task/$pm/children" 2>/dev/null); do
		[ -r "/proc/$p/stat" ] || continue
		read -r -a f < <(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null) || continue
		t=$((t + f[11] + f[12]))
	done
	echo "$t"
}

results=$dir/results
: >"$results"
out=$results # where measure appends
# measure LABEL REP SIZECMD -- COMMAND...: runs COMMAND, appends a line
# "label rep wall cpu rss_kb stored_bytes" to $out.
# settle writes the dirty pages back and, where the kernel lets us, drops
# the page cache, so that every timed command starts from the same state:
# cold reads, and free memory to write into. Without it, whichever tool
# runs once the page cache has filled the memory pays for reclaiming it in
# its write(2) calls: a restore of the 2.1 GB cluster measured 1.8 s after
# a drop and 7-10 s (9 s of it system time) with the cache full.
settle() {
	sync
	if [ "$drop_caches" = true ]; then echo 3 >/proc/sys/vm/drop_caches; fi
}
drop_caches=false
if [ -w /proc/sys/vm/drop_caches ] && echo 3 2>/dev/null >/proc/sys/vm/drop_caches; then
	drop_caches=true
else
	echo "$prog: cannot drop the page cache (/proc/sys/vm/drop_caches): timings depend on its state" >&2
fi

measure() {
	local label=$1 rep=$2 sizecmd=$3
	shift 4
	settle
	local before after
	before=$(server_cpu)
	if ! /usr/bin/time -f '%e %U %S %M' -o "$dir/time.out" "$@" >"$dir/cmd.out" 2>"$dir/cmd.err"; then
		cat "$dir/cmd.err" >&2
		die "$label failed (its output above)"
	fi
	after=$(server_cpu)
	local wall u s rss stored
	read -r wall u s rss <"$dir/time.out"
	stored=$(eval "$sizecmd")
	local cpu
	cpu=$(awk -v u="$u" -v s="$s" -v d=$((after - before)) -v t="$tck" 'BEGIN { printf "%.2f", u + s + d / t }')
	echo "$label $rep $wall $cpu $rss $stored" | tee -a "$out" >&2
}

hoard_backup() { # mode algorithm threads
	set_cfg ".basebackup_mode = \"$1\" | .basebackup_threads = $3 | .basebackup_chunks_in_progress = $3"
	set_top ".compression.algorithm = \"$2\""
	rm -rf "$dir/store/bench/basebackup" "$dir/store/bench/basebackup_chunk"
}
hoard_stored() {
	as_pg "$hoard" --config "$cfg" list --json | jq '[.[] | .total_size_enc] | add'
}
du_bytes() { du -sb "$1" | cut -f1; }

run_set() { # rep
	local r=$1
	measure "raw BASE_BACKUP drain (pg_basebackup -Ft -Xnone to /dev/null)" "$r" "echo 0" -- \
		runuser -u postgres -- "$pgbin/pg_basebackup" -D - -Ft -Xnone -c fast --no-manifest
	for v in "lz4 p2:lz4:lz4::" "lz4 p2 + aes-256-cbc:lz4-aes:lz4:$cipher:$cipher_env" "zst p2:zst:zst::"; do
		IFS=: read -r name rname ct opts pgbr_env <<<"$v"
		pgbr_repo "$rname" "$opts"
		# shellcheck disable=SC2086 # options, split on purpose
		measure "pgBackRest $name" "$r" "du_bytes $dir/pgbr-$rname/backup" -- \
			runuser -u postgres -- env $pgbr_env pgbackrest --config="$pgbr_conf" --stanza=bench --repo1-path="$dir/pgbr-$rname" $opts \
			--compress-type="$ct" --process-max=2 --type=full backup
	done
	pgbr_env=
	rm -rf "$dir/pgbr-restore"
	mkdir -p "$dir/pgbr-restore" && chmod 700 "$dir/pgbr-restore" && chown postgres: "$dir/pgbr-restore"
	measure "pgBackRest restore p2 (lz4)" "$r" "echo 0" -- \
		runuser -u postgres -- pgbackrest --config="$pgbr_conf" --stanza=bench --repo1-path="$dir/pgbr-lz4" \
		--pg1-path="$dir/pgbr-restore" --process-max=2 restore
	rm -rf "$dir/pgbr-restore"
	for mode in local-tar basic; do
		for alg in lz4 zstd snappy; do
			hoard_backup "$mode" "$alg" "$cores"
			local shown=$mode
			[ "$mode" = basic ] && shown="BASE_BACKUP"
			measure "hoard $shown $alg + encryption" "$r" hoard_stored -- \
				runuser -u postgres -- "$hoard" --config "$cfg" basebackup --fast --no-wait
		done
	done
	# BASE_BACKUP lz4 compressed in the chunk's goroutine, as before lz4's
	# workers: the same run's comparison for that change.
	hoard_backup basic lz4 "$cores"
	set_cfg '.basebackup_compression_threads = 1'
	measure "hoard BASE_BACKUP lz4 + encryption, 1 compression thread" "$r" hoard_stored -- \
		runuser -u postgres -- "$hoard" --config "$cfg" basebackup --fast --no-wait
	set_cfg 'del(.basebackup_compression_threads)'
	# The restore's backup waits for its WAL (untimed).
	hoard_backup local-tar lz4 "$cores"
	as_pg "$hoard" --config "$cfg" basebackup --fast >/dev/null 2>&1
	rm -rf "$dir/hoard-restore"
	measure "hoard restore lz4 + encryption" "$r" "echo 0" -- \
		runuser -u postgres -- "$hoard" --config "$cfg" restore --target-dir "$dir/hoard-restore" --target-immediate
	rm -rf "$dir/hoard-restore"
	rm -rf "$dir/tar-x" && mkdir -p "$dir/tar-x"
	measure "tar -x of the uncompressed tar" "$r" "echo 0" -- tar -xf "$dir/tarball/base.tar" -C "$dir/tar-x"
	rm -rf "$dir/tar-x"
}

echo "== the uncompressed tar for tar -x" >&2
as_pg "$pgbin/pg_basebackup" -D "$dir/tarball" -Ft -Xnone -c fast --no-manifest

load_before=$(uptime)
for r in $(seq 1 "$reps"); do
	echo "== repetition $r of $reps" >&2
	run_set "$r"
done

echo "== scaling" >&2
scaling=$dir/scaling
: >"$scaling"
out=$scaling
for n in $(printf '%s\n' 1 2 "$cores" | sort -nu); do
	hoard_backup local-tar lz4 "$n"
	measure "hoard local-tar lz4 + encryption, $n workers" 1 hoard_stored -- \
		runuser -u postgres -- "$hoard" --config "$cfg" basebackup --fast --no-wait
	pgbr_repo lz4 ""
	measure "pgBackRest lz4, process-max $n" 1 "du_bytes $dir/pgbr-lz4/backup" -- \
		runuser -u postgres -- pgbackrest --config="$pgbr_conf" --stanza=bench --repo1-path="$dir/pgbr-lz4" \
		--compress-type=lz4 --process-max="$n" --type=full backup
done
load_after=$(uptime)

# Medians per label, in the order first run.
report() { # file
	awk -v size="$size" '
	{
		label = $1; for (i = 2; i <= NF - 5; i++) label = label " " $i
		if (!(label in seen)) { seen[label] = 1; order[++n] = label }
		k = ++cnt[label]
		wall[label, k] = $(NF - 3); cpu[label, k] = $(NF - 2); rss[label, k] = $(NF - 1); st[label, k] = $NF
	}
	function median(a, l, c,   i, j, v, t) {
		for (i = 1; i <= c; i++) v[i] = a[l, i]
		for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
		return c % 2 ? v[(c + 1) / 2] : (v[c / 2] + v[c / 2 + 1]) / 2
	}
	function range(a, l, c,   i, lo, hi) {
		lo = hi = a[l, 1]
		for (i = 2; i <= c; i++) { if (a[l, i] + 0 < lo + 0) lo = a[l, i]; if (a[l, i] + 0 > hi + 0) hi = a[l, i] }
		return c > 1 ? sprintf("%s-%s", lo, hi) : lo
	}
	END {
		print "| tool, mode | wall s (median, range) | CPU s | peak RSS MB | stored MB | stored / database | MB/s | speed vs raw drain | vs pgBackRest lz4 p2 |"
		print "|---|---|---|---|---|---|---|---|---|"
		base = ""
		for (i = 1; i <= n; i++) { l = order[i]; if (l ~ /^raw/) base = median(wall, l, cnt[l]); if (l == "pgBackRest lz4 p2") pb = median(wall, l, cnt[l]) }
		for (i = 1; i <= n; i++) {
			l = order[i]; c = cnt[l]
			w = median(wall, l, c); s = median(st, l, c)
			printf "| %s | %.2f (%s) | %.1f | %d | %s | %s | %d | %s | %s |\n", l, w, range(wall, l, c), median(cpu, l, c),
				median(rss, l, c) / 1024, (s > 0 ? sprintf("%d", s / 1e6) : "-"), (s > 0 ? sprintf("%.2f", s / size) : "-"),
				size / 1e6 / w, (base != "" ? sprintf("%.2fx", base / w) : "-"), (pb != "" ? sprintf("%.2fx", pb / w) : "-")
		}
	}' "$1"
}

# targets FILE: each target of the benchmark as a ratio of median wall
# times, with the target it should meet.
targets() {
	awk '
	{
		label = $1; for (i = 2; i <= NF - 5; i++) label = label " " $i
		w[label, ++cnt[label]] = $(NF - 3)
	}
	function median(l,   c, i, j, v, t) {
		c = cnt[l]
		for (i = 1; i <= c; i++) v[i] = w[l, i]
		for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
		return c % 2 ? v[(c + 1) / 2] : (v[c / 2] + v[c / 2 + 1]) / 2
	}
	function target(this, other, want,   a, b) {
		if (!(this in cnt) || !(other in cnt)) return
		a = median(this); b = median(other)
		printf "| %s | %s | %.2fx | >= %.1fx | %s |\n", this, other, b / a, want, (b / a >= want ? "met" : "not met")
	}
	END {
		print "| this | against | speed | target | |"
		print "|---|---|---|---|---|"
		target("hoard local-tar lz4 + encryption", "pgBackRest lz4 p2", 1.1)
		target("hoard local-tar lz4 + encryption", "pgBackRest lz4 p2 + aes-256-cbc", 1.3)
		target("hoard local-tar zstd + encryption", "pgBackRest zst p2", 1.2)
		target("hoard BASE_BACKUP lz4 + encryption", "raw BASE_BACKUP drain (pg_basebackup -Ft -Xnone to /dev/null)", 0.9)
		target("hoard restore lz4 + encryption", "pgBackRest restore p2 (lz4)", 1.5)
		target("hoard restore lz4 + encryption", "tar -x of the uncompressed tar", 1.0)
	}' "$1"
}

echo
echo "database: $((size / 1000000)) MB (pgbench scale $scale + $random_mb MB random bytea), PostgreSQL 15, data checksums; $cores cores; $reps interleaved repetitions"
echo "load before: $load_before"
echo "load after:  $load_after"
echo
report "$results"
echo
echo "The issue's targets (speed = the other's median wall time / this one's):"
echo
targets "$results"
echo
echo "Scaling (one run each):"
echo
report "$scaling"
echo
echo "Raw lines (label, repetition, wall s, CPU s, peak RSS kB, stored bytes):"
cat "$results" "$scaling"
