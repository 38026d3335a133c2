#!/usr/bin/env bash
# zstd encoders on PostgreSQL data shapes: libzstd's levels 1 and 3 (the
# zstd command, which pgBackRest's library is) against klauspost/compress's
# encoders with hoard's settings (BenchmarkZstdFile in compress/), each on
# the same files, REPS times. Prints CPU seconds per GB (user + system,
# which other work on the machine moves far less than wall time) and the
# stored bytes, with each encoder's bytes against libzstd level 3's.
#
#   bash scripts/bench-zstd.sh [--scale N] [--reps R] [--dir DIR] [--keep]
#
# The shapes, each a tar of the files a basebackup chunk holds (heap,
# forks, indexes, TOAST): pgbench (tables and indexes at --scale), text
# (2.5 million rows of text and an index), jsonb (60 000 documents of
# about 6 kB, pglz-compressed and TOASTed), random (128 MiB of random
# bytea, incompressible), fresh (a freshly initdb'd cluster as
# pg_basebackup tars it), cluster (all of them as pg_basebackup tars it),
# and wal (the segments of 60 s of pgbench). Runs as root: PostgreSQL
# runs as the postgres user. Uses Debian's PostgreSQL 15 and the zstd
# command.
set -euo pipefail

scale=30 reps=3 dir=/tmp/hoard-bench-zstd keep=false
prog=bench-zstd
. "$(dirname "$0")/lib.sh"
parse_args '[--scale N] [--reps R] [--dir DIR] [--keep]' \
	"--scale scale" "--reps reps" "--dir dir" "--keep keep=true" -- "$@"
no_rest

need_root
need_pg15
command -v zstd >/dev/null || die "the zstd command is missing: apt-get install zstd" 2

fresh_dir "$dir"
cleanup() {
	stop_pg "$dir/data"
	stop_pg "$dir/fresh"
	if [ "$keep" = false ]; then rm -rf "$dir"; fi
}
trap cleanup EXIT

port=$(free_port)
export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres
echo "== building the shapes" >&2
init_cluster "$dir/fresh" "$port"
start_pg "$dir/fresh" "$dir/fresh.log"
as_pg "$pgbin/pg_basebackup" -D - -Ft -Xnone -c fast --no-manifest >"$dir/fresh.data" 2>/dev/null
stop_pg "$dir/fresh"
init_cluster "$dir/data" "$port"
echo "shared_buffers = 256MB" >>"$dir/data/postgresql.conf"
echo "max_wal_size = 4GB" >>"$dir/data/postgresql.conf"
start_pg "$dir/data" "$dir/server.log"
fill_cluster "$scale" 128
psql -c "create table notes (id bigint primary key, customer text, body text, created timestamptz)" \
	-c "insert into notes select g, 'customer ' || (g % 50000) || ' ' || md5((g % 50000)::text), 'order ' || g || ' shipped to ' || (array['Berlin','Paris','Lisbon','Oslo','Rome'])[1 + g % 5] || ': ' || repeat(substr(md5((g % 997)::text), 1, 12) || ' ', 1 + g % 6) || md5(g::text), now() - g * interval '7 seconds' from generate_series(1, 2500000) g" \
	-c "create index on notes (customer)" \
	-c "create table docs (id int primary key, doc jsonb)" \
	-c "insert into docs select g, (select jsonb_build_object('id', g, 'owner', 'user' || (g % 1000), 'items', jsonb_agg(jsonb_build_object('sku', 'SKU-' || (g * 7 + i) % 10000, 'name', 'item number ' || i, 'qty', (g + i) % 13, 'price', ((g * i) % 10000) / 100.0, 'tags', jsonb_build_array('red', 'blue', md5((i % 37)::text))))) from generate_series(1, 40 + g % 40) i) from generate_series(1, 60000) g" \
	-c "vacuum (freeze, analyze)" -c "checkpoint"

# tar_tables NAME TABLE...: a tar of the tables' files, their indexes' and
# their TOAST tables'.
tar_tables() {
	local name=$1 t p f
	shift
	local -a files=()
	for t in "$@"; do
		for p in $(psql -Atc "select pg_relation_filepath(c.oid) from pg_class c
			where c.oid = '$t'::regclass or c.oid = (select reltoastrelid from pg_class where oid = '$t'::regclass)
			or c.oid in (select indexrelid from pg_index where indrelid in ('$t'::regclass, (select reltoastrelid from pg_class where oid = '$t'::regclass)))"); do
			for f in "$dir/data/$p" "$dir/data/$p".* "$dir/data/${p}"_*; do
				if [ -e "$f" ]; then files+=("${f#"$dir"/data/}"); fi
			done
		done
	done
	tar -cf "$dir/$name.data" -C "$dir/data" "${files[@]}"
}
tar_tables pgbench pgbench_accounts pgbench_branches pgbench_tellers pgbench_history
tar_tables text notes
tar_tables jsonb docs
tar_tables random random_bytes
as_pg "$pgbin/pg_basebackup" -D - -Ft -Xnone -c fast --no-manifest >"$dir/cluster.data" 2>/dev/null
psql -c checkpoint
first=$(psql -Atc "select pg_walfile_name(pg_current_wal_lsn())")
as_pg "$pgbin/pgbench" -c 2 -T 60 -n >/dev/null 2>&1
psql -Atc "select pg_switch_wal()" >/dev/null
last=$(psql -Atc "select pg_walfile_name(pg_current_wal_lsn())")
(cd "$dir/data/pg_wal" && ls | grep -E '^[0-9A-F]{24}$' | awk -v a="$first" -v b="$last" '$0 >= a && $0 < b' | xargs cat) >"$dir/wal.data"
stop_pg "$dir/data"

(cd "$repo" && go test -c -o "$dir/compress.test" ./compress/)
# Each measurement compresses a shape as often as makes about 600 MB.
for shape in fresh pgbench text jsonb random cluster wal; do
	f=$dir/$shape.data
	size=$(stat -c %s "$f")
	n=$(((600000000 + size / 2) / size))
	[ "$n" -ge 1 ] || n=1
	echo "== $shape: $size bytes, $n passes a measurement, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
	for level in 1 3; do
		stored=$(zstd "-$level" --single-thread --no-check -c "$f" | wc -c)
		for _ in $(seq "$reps"); do
			/usr/bin/time -f '%U %S' -o "$dir/time" bash -c "for i in \$(seq $n); do zstd -$level --single-thread --no-check -q -c $f >/dev/null; done"
			read -r user sys <"$dir/time"
			echo "$shape libzstd-$level $(echo "$user $sys $n $size" | awk '{printf "%.2f", ($1 + $2) / ($3 * $4 / 1e9)}') $stored"
		done
	done
	HOARD_BENCH_ZSTD_FILE=$f "$dir/compress.test" -test.run '^$' -test.bench ZstdFile -test.benchtime "${n}x" -test.count "$reps" |
		awk -v s="$shape" '/^BenchmarkZstdFile/ {
			name = $1; sub(/^BenchmarkZstdFile\//, "", name); sub(/-[0-9]+$/, "", name)
			for (i = 2; i < NF; i++) { if ($(i + 1) == "cpu-s/GB") cpu = $i; if ($(i + 1) == "stored-bytes") st = $i }
			printf "%s klauspost-%s %.2f %d\n", s, name, cpu, st }'
done | tee "$dir/runs" >&2

# The table: per shape and encoder, the range of CPU s/GB and the stored
# bytes against libzstd level 3's.
echo "| shape | encoder | CPU s/GB (range of $reps) | stored bytes | against libzstd 3 |"
echo "|---|---|---|---|---|"
awk '{ k = $1 " " $2; if (!(k in lo) || $3 < lo[k]) lo[k] = $3; if ($3 > hi[k]) hi[k] = $3; st[k] = $4
	if (!(k in seen)) { seen[k] = 1; order[++n] = k } if ($2 == "libzstd-3") ref[$1] = $4 }
	END { for (i = 1; i <= n; i++) { k = order[i]; split(k, p, " ")
		printf "| %s | %s | %.2f-%.2f | %d | %+.1f %% |\n", p[1], p[2], lo[k], hi[k], st[k], 100 * (st[k] / ref[p[1]] - 1) } }' "$dir/runs"
