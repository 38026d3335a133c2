#!/usr/bin/env bash
# PGHoard restores a hoard local-tar (or delta) basebackup: a manual check
# of the format, for a machine with PGHoard installed (CI has none).
#
#   bash scripts/pghoard-restore-check.sh [--dir DIR] [--keep] [--mode local-tar|delta]
#
# With --mode delta the backups are delta ones (pghoard-delta-v2): files of
# 256 kB and more become basebackup_delta/<hash> objects, and a second
# backup is taken after rows changed, reusing the unchanged files' objects;
# PGHoard restores that second one.
# Makes a small PostgreSQL 15 cluster with data checksums (pgbench scale 2,
# a table of random bytes, a table t), archives its WAL with hoard wal-push
# and takes a hoard basebackup in local-tar mode, zstd-compressed and
# encrypted, with 256 kB chunks so that there are several, into a local
# store. Rows are then added to t and their WAL archived. PGHoard's own
# tools then restore it: `pghoard_restore get-basebackup` fetches and
# unpacks the backup, and a PGHoard daemon serves the WAL to the restored
# cluster's restore_command (pghoard_postgres_command). The restored
# cluster is started, and its rows must equal the source's (t, and a
# digest of pgbench_accounts and random_bytes); pg_checksums checks its
# pages once it is shut down. The restored cluster's 00000002.history is
# then pushed with hoard wal-push (signed: hoard-metadata-hmac; its
# writer's system as hoard-system-identifier, which hoard records in every
# site) and PGHoard fetches it back.
#
# Runs as root (the servers and tools run as the postgres user). Needs
# PGHoard (PGHOARD: its venv, default /tmp/pghoard/venv; see
# ../../shared/tools/install-pghoard.sh) and Debian's PostgreSQL 15 (PGBIN).
# Exits non-zero, with the logs' tails, on any failure.
set -euo pipefail
PGHOARD=${PGHOARD:-/tmp/pghoard/venv}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
dir=/tmp/hoard-pghoard-check keep=false mode=local-tar
prog=pghoard-restore-check
. "$(dirname "$0")/lib.sh"
parse_args '[--dir DIR] [--keep] [--mode local-tar|delta]' "--dir dir" "--keep keep=true" "--mode mode" -- "$@"
no_rest
need_root
[ -x "$PGHOARD/bin/pghoard_restore" ] || die "no PGHoard in $PGHOARD (install-pghoard.sh)" 2
[ -x "$PGBIN/postgres" ] || die "no PostgreSQL in $PGBIN" 2
pgbin=$PGBIN

fresh_dir "$dir"
daemon_pid=
# stop_daemon stops the PGHoard daemon and waits (up to 30 s) until it has
# gone: it writes its state file as it stops, which would race rm -rf.
stop_daemon() {
	stop_pid "$daemon_pid" 30
	daemon_pid=
}
cleanup() {
	local rc=$?
	if [ "$rc" != 0 ]; then
		for f in "$dir"/*.log; do [ -f "$f" ] && { echo "== tail of $f" >&2; tail -30 "$f" >&2; }; done
	fi
	stop_pg "$dir/data"
	stop_pg "$dir/restored"
	if [ -n "$daemon_pid" ]; then stop_daemon; fi
	if [ "$keep" = false ]; then rm -rf "$dir"; fi
	exit "$rc"
}
trap cleanup EXIT

build_hoard "$dir"
port=$(free_port) http=$(free_port)
data=$dir/data

cfg=$dir/hoard.json
cat >"$cfg" <<EOF
{"backup_location": "$dir/hoard-state",
 "compression": {"algorithm": "zstd"},
 "backup_sites": {"site": {
   "nodes": [{"host": "$dir", "port": $port, "user": "postgres"}],
   "active_backup_mode": "archive_command",
   "pg_data_directory": "$data",
   "basebackup_mode": "$mode",
   "basebackup_chunk_size": 262144,
   "basebackup_delta_mode_min_delta_file_size": 262144,
   "basebackup_delta_mode_chunk_size": 1048576,
   "object_storage": {"storage_type": "local", "directory": "$dir/store"}}}}
EOF
chown postgres: "$cfg"
as_pg "$hoard" --config "$cfg" create-keys --key-id check-key >/dev/null

echo "== source cluster" >&2
init_cluster "$data" "$port" -E UTF8 --locale=C
cat >>"$data/postgresql.conf" <<EOF
archive_mode = on
archive_command = '$hoard --config $cfg wal-push %p'
EOF
start_pg "$data" "$dir/source.log"
# q PORT SQL: one statement on the source (or the restored) cluster.
q() { psql -h "$dir" -p "$1" -U postgres -At -c "$2" postgres; }
as_pg "$PGBIN/pgbench" -h "$dir" -p "$port" -U postgres -i -q -s 2 postgres >/dev/null 2>&1
q "$port" "create extension pgcrypto"
q "$port" "create table random_bytes as select g as id, gen_random_bytes(1024) as b from generate_series(1, 4096) g"
q "$port" "create table t (id int primary key, v text)"
q "$port" "insert into t select i, 'before ' || i from generate_series(1, 100) i"

echo "== hoard basebackup ($mode, zstd, encrypted)" >&2
as_pg "$hoard" --config "$cfg" basebackup --fast >"$dir/basebackup.log" 2>&1
cat "$dir/basebackup.log" >&2
grep -q "read      from the data directory ($mode)" "$dir/basebackup.log" || die "not a $mode backup"
if [ "$mode" = delta ]; then
	objects() { ls "$dir"/store/site/basebackup_delta/ | grep -vc '\.metadata$' || true; }
	first=$(objects)
	[ "$first" -ge 2 ] || die "$first delta objects, wanted several"
	q "$port" "update pgbench_accounts set abalance = abalance + 1 where aid <= 100"
	as_pg "$hoard" --config "$cfg" basebackup --fast >"$dir/basebackup2.log" 2>&1
	cat "$dir/basebackup2.log" >&2
	added=$(( $(objects) - first ))
	chunks="$first delta objects, then $added more for the second backup"
	[ "$added" -lt "$first" ] || die "the second backup stored $added delta objects of $first"
else
	chunks=$(ls "$dir"/store/site/basebackup_chunk/* | grep -vc '\.metadata$' || true)
	[ "$chunks" -ge 2 ] || die "$chunks chunks, wanted several"
	chunks="$chunks chunks"
fi

q "$port" "insert into t select i, 'after ' || i from generate_series(101, 150) i"
q "$port" "update pgbench_accounts set abalance = abalance + 7 where aid % 97 = 0"
seg=$(q "$port" "select pg_walfile_name(pg_current_wal_insert_lsn())")
q "$port" "select pg_switch_wal()" >/dev/null
for _ in $(seq 120); do
	[ -e "$dir/store/site/xlog/$seg" ] && break
	sleep 0.5
done
[ -e "$dir/store/site/xlog/$seg" ] || die "WAL $seg not archived"
digest="select (select count(*)::text || ': ' || md5(string_agg(id || v, ',' order by id)) from t) || ' / ' ||
	(select md5(string_agg(aid || ':' || abalance, ',' order by aid)) from pgbench_accounts) || ' / ' ||
	(select md5(string_agg(md5(b), ',' order by id)) from random_bytes)"
want=$(q "$port" "$digest")
as_pg "$PGBIN/pg_ctl" -D "$data" -w -m fast stop >/dev/null

echo "== pghoard_restore get-basebackup" >&2
restored=$dir/restored
pcfg=$dir/pghoard.json
jq --arg dir "$dir" --arg restored "$restored" --argjson http "$http" --arg pgbin "$PGBIN" '
	{backup_location: ($dir + "/pghoard-state"), json_state_file_path: ($dir + "/pghoard-state.json"),
	 http_address: "127.0.0.1", http_port: $http,
	 compression: .compression, tar_executable: "tar",
	 backup_sites: {site: (.backup_sites.site | {nodes, encryption_key_id, encryption_keys, object_storage,
		active_backup_mode, pg_bin_directory: $pgbin, pg_data_directory: $restored,
		basebackup_interval_hours: 24, basebackup_count: 2})}}' "$cfg" >"$pcfg"
chown postgres: "$pcfg"
chmod 600 "$pcfg"
(cd "$dir" && as_pg "$PGHOARD/bin/pghoard_restore" list-basebackups --config "$pcfg" --site site) | tee "$dir/list.log" >&2
(cd "$dir" && as_pg "$PGHOARD/bin/pghoard_restore" get-basebackup --config "$pcfg" --site site \
	--target-dir "$restored" --restore-to-primary --recovery-target-action promote \
	--pghoard-postgres-command-bin "$PGHOARD/bin/pghoard_postgres_command") >"$dir/pghoard_restore.log" 2>&1
tail -5 "$dir/pghoard_restore.log" >&2
# PostgreSQL 12+: pghoard_restore writes restore_command to
# postgresql.auto.conf but no recovery.signal.
as_pg touch "$restored/recovery.signal"
rport=$(free_port)
cat >>"$restored/postgresql.conf" <<EOF
port = $rport
archive_mode = off
EOF

echo "== PGHoard daemon serving WAL, restored cluster started" >&2
(cd "$dir" && as_pg sh -c 'echo $$ >pghoard.pid; exec "$0" --config "$1"' "$PGHOARD/bin/pghoard" "$pcfg" >"$dir/pghoard.log" 2>&1) &
for _ in $(seq 60); do
	[ -s "$dir/pghoard.pid" ] && break
	sleep 0.5
done
daemon_pid=$(cat "$dir/pghoard.pid")
for _ in $(seq 60); do
	curl -s "http://127.0.0.1:$http/status" >/dev/null 2>&1 && break
	sleep 0.5
done
as_pg "$PGBIN/pg_ctl" -D "$restored" -l "$dir/restored.log" -w -t 120 start >/dev/null
for _ in $(seq 120); do
	[ "$(q "$rport" "select pg_is_in_recovery()")" = f ] && break
	sleep 0.5
done
[ "$(q "$rport" "select pg_is_in_recovery()")" = f ] || die "restored cluster still in recovery"
got=$(q "$rport" "$digest")
as_pg "$PGBIN/pg_ctl" -D "$restored" -w -m fast stop >/dev/null
echo "== PGHoard fetches a timeline history file hoard signed" >&2
hist=$restored/pg_wal/00000002.history
as_pg "$hoard" --config "$cfg" wal-push "$hist" 2>>"$dir/walpush-history.log"
grep -q hoard-metadata-hmac "$dir/store/site/timeline/00000002.history.metadata" || die "00000002.history is not signed"
grep -q hoard-system-identifier "$dir/store/site/timeline/00000002.history.metadata" || die "00000002.history names no system"
(cd "$restored" && as_pg "$PGHOARD/bin/pghoard_postgres_command" --mode restore --port "$http" --site site \
	--xlog 00000002.history --output "$restored/pg_wal/fetched.history")
cmp "$hist" "$restored/pg_wal/fetched.history" || die "PGHoard fetched another 00000002.history"
stop_daemon
as_pg "$PGBIN/pg_checksums" --check -D "$restored" >"$dir/checksums.log"
echo "source:   $want"
echo "restored: $got"
[ "$got" = "$want" ] || die "FAILED: the restored rows differ"
grep -E "Bad checksums" "$dir/checksums.log"
echo "pghoard-restore-check: OK: PGHoard $("$PGHOARD/bin/pghoard" --version) restored hoard's $mode backup ($chunks, zstd, encrypted) with WAL; rows match; fetched a signed history file"
