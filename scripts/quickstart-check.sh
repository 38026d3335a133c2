#!/usr/bin/env bash
# Follow the README's quick start literally, as a newcomer would: extract
# the ```sh block under "## Quick start" and run it, unchanged, as the
# postgres user against a fresh PostgreSQL cluster, then check that the
# restored cluster runs and answers queries.
#
# The cluster is made the way the README assumes a local PostgreSQL is: its
# socket in /var/run/postgresql (and a private directory), PGDATA set, psql
# reaching it through PGHOST/PGPORT. It listens on no TCP port, on a port
# number that is free, so it disturbs no other server. /var/lib/hoard is
# created owned by postgres, as the README asks, and removed afterwards; a
# /var/lib/hoard that already exists is never touched, unless it is one this
# check made (it holds the marker file .quickstart-check) and left behind
# when it was killed: that one is stopped and removed first. Runs of the
# check take turns (a lock file), so one never removes another's.
#
#   scripts/quickstart-check.sh             (as root; hoard on PATH)
#   PG_BIN=/usr/lib/postgresql/15/bin README=README.md  are the defaults
set -euo pipefail

cd "$(dirname "$0")/.."
readme=${README:-README.md}
pg_bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
pg_user=${PG_USER:-postgres}
sockdir_shared=/var/run/postgresql
restored_port=5433 # the README's pg_ctl -o "-p 5433"

die() { echo "quickstart-check: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: the quick start runs as $pg_user and needs /var/lib/hoard created"
hoard=$(command -v hoard) || die "hoard is not on PATH"
[ -x "$pg_bin/initdb" ] || die "no PostgreSQL binaries in $pg_bin (set PG_BIN)"
id "$pg_user" >/dev/null 2>&1 || die "no user $pg_user"
[ -d "$sockdir_shared" ] || die "$sockdir_shared missing: the README's nodes connect there"

# One check at a time on this machine: the script runs again under flock,
# which holds the lock itself (-o), so servers started below never inherit it.
if [ -z "${HOARD_QUICKSTART_LOCKED:-}" ]; then
	HOARD_QUICKSTART_LOCKED=1 exec flock -o -w 900 /tmp/hoard-quickstart-check.lock bash scripts/quickstart-check.sh "$@"
fi

marker=/var/lib/hoard/.quickstart-check
stop_cluster() { # dir
	[ -f "$1/postmaster.pid" ] || return 0
	runuser -u "$pg_user" -- "$pg_bin/pg_ctl" -D "$1" -m immediate -w stop >/dev/null 2>&1 || true
}
if [ -f "$marker" ]; then
	# Left behind by a run of this check that was killed.
	leftover=$(cat "$marker")
	echo "quickstart-check: removing /var/lib/hoard and $leftover left by a killed run of this check"
	stop_cluster /var/lib/hoard/restored
	case $leftover in /tmp/hoard-quickstart.*) stop_cluster "$leftover/data"; rm -rf "$leftover" ;; esac
	rm -rf /var/lib/hoard
fi
[ ! -e /var/lib/hoard ] || die "/var/lib/hoard exists: refusing to touch it"
# A socket lock file whose process is gone is stale (PostgreSQL replaces it).
socklock=$sockdir_shared/.s.PGSQL.$restored_port.lock
if [ -f "$socklock" ] && kill -0 "$(head -n 1 "$socklock")" 2>/dev/null; then
	die "a server already listens on $sockdir_shared port $restored_port"
fi

# The block, exactly as written.
block=$(awk '
	/^## Quick start/ { section = 1; next }
	/^## / { section = 0 }
	section && !inblock && /^```sh$/ { inblock = 1; next }
	inblock && /^```$/ { exit }
	inblock { print }
' "$readme")
[ -n "$block" ] || die "no \`\`\`sh block under \"## Quick start\" in $readme"

work=$(mktemp -d /tmp/hoard-quickstart.XXXXXX)
chmod 0755 "$work"
export PGDATA=$work/data
sockdir=$work/sock
mkdir -p "$sockdir"
chown "$pg_user" "$work" "$sockdir"

as_pg() {
	runuser -u "$pg_user" -- env -i HOME="$work" PATH="$(dirname "$hoard"):$pg_bin:/usr/bin:/bin" \
		PGDATA="$PGDATA" PGHOST="$sockdir" PGPORT="$port" LANG=C.UTF-8 "$@"
}

cleanup() {
	set +e
	for d in /var/lib/hoard/restored "$PGDATA"; do
		[ -f "$d/postmaster.pid" ] && as_pg pg_ctl -D "$d" -m immediate -w stop >/dev/null 2>&1
	done
	rm -rf /var/lib/hoard "$work"
}
trap cleanup EXIT

# A free port number (no TCP listener is opened: listen_addresses is empty,
# the number only names the socket files).
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo 55432)
[ "$port" != "$restored_port" ] || port=55432

as_pg initdb -D "$PGDATA" --auth=trust -U "$pg_user" >"$work/initdb.log" 2>&1 || { cat "$work/initdb.log"; die "initdb failed"; }
cat >>"$PGDATA/postgresql.conf" <<CONF
# quickstart-check
port = $port
listen_addresses = ''
unix_socket_directories = '$sockdir_shared, $sockdir'
CONF
as_pg pg_ctl -D "$PGDATA" -l "$work/server.log" -w start >/dev/null
as_pg psql -qAt -c "create table quickstart (n int); insert into quickstart select generate_series(1, 1000)" >/dev/null

# The README: "The archive lives in /var/lib/hoard/archive (create it, owned
# by that user, first)".
install -d -o "$pg_user" -g "$(id -gn "$pg_user")" -m 0750 /var/lib/hoard /var/lib/hoard/archive
printf '%s\n' "$work" >"$marker"

echo "quickstart-check: running the quick start as $pg_user (PGDATA=$PGDATA, port $port)"
printf '%s\n' "$block" >"$work/quickstart.sh"
chmod 0644 "$work/quickstart.sh"
if ! as_pg bash -e -x "$work/quickstart.sh" >"$work/quickstart.log" 2>&1; then
	cat "$work/quickstart.log" "$work/server.log" >&2
	[ -f /var/lib/hoard/restored/log ] && tail -n 50 /var/lib/hoard/restored/log/* >&2
	die "the quick start failed"
fi

# The restored cluster recovers to the end of the archive and is promoted.
for _ in $(seq 1 120); do
	if [ "$(as_pg psql -p "$restored_port" -qAt -c 'select pg_is_in_recovery()' 2>/dev/null)" = f ]; then
		break
	fi
	sleep 1
done
got=$(as_pg psql -p "$restored_port" -qAt -c 'select 1') || got=
rows=$(as_pg psql -p "$restored_port" -qAt -c 'select count(*) from quickstart' 2>/dev/null) || rows=
recovering=$(as_pg psql -p "$restored_port" -qAt -c 'select pg_is_in_recovery()' 2>/dev/null) || recovering=
if [ "$got" != 1 ] || [ "$rows" != 1000 ] || [ "$recovering" != f ]; then
	cat "$work/quickstart.log" >&2
	die "restored cluster: select 1 gave \"$got\", $rows of 1000 rows, in recovery \"$recovering\""
fi
echo "quickstart-check: OK: the restored cluster answers select 1, has the 1000 rows and is promoted"
