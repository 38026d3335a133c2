#!/bin/bash
# make-fixtures.sh MODE...: makes archives with a real PGHoard, one per
# basebackup_mode given (basic, pipe, delta), into ./<mode>/ beside this
# script. In delta mode files of 64 KiB and more become delta objects
# (basebackup_delta/<hash>), so that a tiny cluster has some.
#
# Each is a tiny PostgreSQL 15 cluster archived by the PGHoard daemon
# (active_backup_mode archive_command), zstd-compressed and encrypted with a
# fresh RSA key: one basebackup, then rows written after it and the WAL
# holding them. ./<mode>/ then holds
#   store/      the site's local object storage, exactly as PGHoard wrote it
#   config.json the site's encryption_key_id and encryption_keys, in
#               PGHoard's configuration shape (backup_sites.site)
#   rows.txt    the rows of table t at the end of the archived WAL
#               (count: ids), what a restore recovering all WAL must show
#
# Needs root (servers run as the postgres user), PGHoard installed by
# ../../../shared/tools/install-pghoard.sh (PGHOARD: its venv, default
# /tmp/pghoard/venv) and PostgreSQL 15 (PGBIN, default
# /usr/lib/postgresql/15/bin, Debian's, which has pg_basebackup and psql).
set -euo pipefail
PGHOARD=${PGHOARD:-/tmp/pghoard/venv}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
HERE=$(cd "$(dirname "$0")" && pwd)
as_pg() { runuser -u postgres -- "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

for mode in "$@"; do
	W=$(mktemp -d /tmp/pghoard-fixture-XXXXXX)
	chown postgres: "$W"
	PORT=$(free_port)
	HTTP=$(free_port)
	as_pg "$PGBIN/initdb" -D "$W/data" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
	cat >"$W/pghoard.json" <<JSON
{
  "backup_location": "$W/state",
  "json_state_file_path": "$W/state.json",
  "http_address": "127.0.0.1",
  "http_port": $HTTP,
  "compression": {"algorithm": "zstd"},
  "backup_sites": {
    "site": {
      "nodes": [{"host": "$W", "port": $PORT, "user": "postgres"}],
      "pg_data_directory": "$W/data",
      "pg_bin_directory": "$PGBIN",
      "active_backup_mode": "archive_command",
      "basebackup_mode": "$mode",
      "basebackup_delta_mode_min_delta_file_size": 65536,
      "basebackup_count": 2,
      "basebackup_interval_hours": 24,
      "object_storage": {"storage_type": "local", "directory": "$W/store"}
    }
  }
}
JSON
	chown postgres: "$W/pghoard.json"
	as_pg "$PGHOARD/bin/pghoard_create_keys" --key-id fixture-key --site site --config "$W/pghoard.json" >/dev/null
	cat >>"$W/data/postgresql.conf" <<CONF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$W'
wal_level = replica
archive_mode = on
archive_command = '$PGHOARD/bin/pghoard_postgres_command --mode archive --port $HTTP --site site --xlog %f'
CONF
	as_pg "$PGBIN/pg_ctl" -D "$W/data" -l "$W/pg.log" -w start >/dev/null
	trap 'as_pg "$PGBIN/pg_ctl" -D "$W/data" -w -m immediate stop >/dev/null 2>&1 || true; [ -s "$W/pghoard.pid" ] && kill "$(cat "$W/pghoard.pid")" 2>/dev/null || true' EXIT
	psql() { as_pg "$PGBIN/psql" -h "$W" -p "$PORT" -U postgres -XAtq -v ON_ERROR_STOP=1 -c "$1" postgres; }
	psql "create table t (id int primary key, v text)"
	psql "insert into t select i, 'before ' || i from generate_series(1, 100) i"
	# The daemon takes the first basebackup as it starts (none exists).
	# runuser does not pass signals on: the daemon writes its own pid.
	(cd "$W" && as_pg sh -c 'echo $$ >pghoard.pid; exec "$0" --config "$1"' "$PGHOARD/bin/pghoard" "$W/pghoard.json" >"$W/pghoard.log" 2>&1) &
	for _ in $(seq 600); do
		ls "$W/store/site/basebackup/" 2>/dev/null | grep -qv '\.metadata$' && break
		sleep 0.5
	done
	ls "$W/store/site/basebackup/" | grep -qv '\.metadata$' || { tail -50 "$W/pghoard.log"; exit 1; }
	psql "insert into t select i, 'after ' || i from generate_series(101, 150) i"
	seg=$(psql "select pg_walfile_name(pg_current_wal_insert_lsn())")
	psql "select pg_switch_wal()" >/dev/null
	for _ in $(seq 600); do
		[ -e "$W/store/site/xlog/$seg.metadata" ] && break
		sleep 0.5
	done
	[ -e "$W/store/site/xlog/$seg.metadata" ] || { tail -50 "$W/pghoard.log"; exit 1; }
	rows=$(psql "select count(*)::text || ': ' || string_agg(id::text, ',' order by id) from t")
	kill "$(cat "$W/pghoard.pid")"
	wait
	as_pg "$PGBIN/pg_ctl" -D "$W/data" -w -m fast stop >/dev/null
	out="$HERE/$mode"
	rm -rf "$out"
	mkdir -p "$out"
	cp -r "$W/store" "$out/store"
	echo "$rows" >"$out/rows.txt"
	python3 - "$W/pghoard.json" "$out/config.json" <<'PY'
import json, sys
site = json.load(open(sys.argv[1]))["backup_sites"]["site"]
keys = {k: site[k] for k in ("encryption_key_id", "encryption_keys")}
json.dump({"backup_sites": {"site": keys}}, open(sys.argv[2], "w"), indent=2)
PY
	chown -R --reference="$HERE" "$out"
	trap - EXIT
	rm -rf "$W"
	echo "$mode: $(du -sh "$out" | cut -f1) in $out"
done
