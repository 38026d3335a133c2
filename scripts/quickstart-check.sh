#!/usr/bin/env bash
# Follow the README's quick start as a newcomer would: extract the ```sh
# block under "## Quick start" and run it as the postgres user against a
# fresh PostgreSQL cluster, then check that the restored cluster runs and
# answers queries. The block runs unchanged but for what would tie it to
# this machine: /var/lib/hoard becomes a temporary directory and the
# restored cluster's port 5433 a free one, and hoard's http_port a free one
# (HOARD_HTTP_PORT, which hoard basebackup asks a daemon on first), so that
# a hoard installed here, a daemon on 16000 or a cluster on 5432 or 5433
# neither disturbs the check nor is disturbed.
#
# The cluster is made the way the README assumes a local PostgreSQL is: its
# socket in /var/run/postgresql (and a private directory), PGDATA set, psql
# reaching it through PGHOST/PGPORT. It listens on no TCP port, on a port
# number that is free, so it disturbs no other server. Everything lives in
# one directory /tmp/hoard-quickstart.XXXXXX, removed afterwards. Runs of
# the check take turns (a lock file), so a directory of that name found
# at the start is one a killed run left behind: its clusters are stopped
# and it is removed.
#
#   scripts/quickstart-check.sh             (as root; hoard on PATH)
#   PG_BIN=/usr/lib/postgresql/15/bin README=README.md  are the defaults
#   QUICKSTART_LOG=FILE                     keeps the block's output there
#                                           (docs' TestQuickstart reads it)
set -euo pipefail

cd "$(dirname "$0")/.."
readme=${README:-README.md}
pg_bin=${PG_BIN:-/usr/lib/postgresql/15/bin}
pg_user=${PG_USER:-postgres}
sockdir_shared=/var/run/postgresql
readme_root=/var/lib/hoard      # the README's directory for everything
readme_restored_port='-p 5433'  # the README's pg_ctl -o "-p 5433"

die() { echo "quickstart-check: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: the quick start runs as $pg_user"
hoard=$(command -v hoard) || die "hoard is not on PATH"
[ -x "$pg_bin/initdb" ] || die "no PostgreSQL binaries in $pg_bin (set PG_BIN)"
id "$pg_user" >/dev/null 2>&1 || die "no user $pg_user"
[ -d "$sockdir_shared" ] || die "$sockdir_shared missing: the README's nodes connect there"

# One check at a time on this machine: the script runs again under flock,
# which holds the lock itself (-o), so servers started below never inherit it.
if [ -z "${HOARD_QUICKSTART_LOCKED:-}" ]; then
	HOARD_QUICKSTART_LOCKED=1 exec flock -o -w 900 /tmp/hoard-quickstart-check.lock bash scripts/quickstart-check.sh "$@"
fi

stop_cluster() { # dir
	[ -f "$1/postmaster.pid" ] || return 0
	runuser -u "$pg_user" -- "$pg_bin/pg_ctl" -D "$1" -m immediate -w stop >/dev/null 2>&1 || true
}
for leftover in /tmp/hoard-quickstart.*; do
	[ -d "$leftover" ] || continue
	# Left behind by a run of this check that was killed.
	echo "quickstart-check: removing $leftover left by a killed run of this check"
	stop_cluster "$leftover/hoard/restored"
	stop_cluster "$leftover/data"
	rm -rf "$leftover"
done

# The block, exactly as written.
block=$(awk '
	/^## Quick start/ { section = 1; next }
	/^## / { section = 0 }
	section && !inblock && /^```sh$/ { inblock = 1; next }
	inblock && /^```$/ { exit }
	inblock { print }
' "$readme")
[ -n "$block" ] || die "no \`\`\`sh block under \"## Quick start\" in $readme"
case $block in *"$readme_root"*) ;; *) die "the quick start in $readme names no $readme_root: update this check" ;; esac
case $block in *"$readme_restored_port"*) ;; *) die "the quick start in $readme has no $readme_restored_port: update this check" ;; esac

work=$(mktemp -d /tmp/hoard-quickstart.XXXXXX)
chmod 0755 "$work"
export PGDATA=$work/data
sockdir=$work/sock
root=$work/hoard # the README's /var/lib/hoard
mkdir -p "$sockdir"
chown "$pg_user" "$work" "$sockdir"

as_pg() {
	runuser -u "$pg_user" -- env -i HOME="$work" PATH="$(dirname "$hoard"):$pg_bin:/usr/bin:/bin" \
		PGDATA="$PGDATA" PGHOST="$sockdir" PGPORT="$port" HOARD_HTTP_PORT="$http_port" LANG=C.UTF-8 "$@"
}

cleanup() {
	set +e
	for d in "$root/restored" "$PGDATA"; do
		[ -f "$d/postmaster.pid" ] && as_pg pg_ctl -D "$d" -m immediate -w stop >/dev/null 2>&1
	done
	rm -rf "$work"
}
trap cleanup EXIT

# Free port numbers: for the cluster and the restored one no TCP listener
# is opened (listen_addresses is empty), the number only names the socket
# files, so none may exist in the shared socket directory; hoard's
# http_port is a TCP port.
free_port() {
	local p
	for _ in $(seq 1 50); do
		p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
		[ ! -e "$sockdir_shared/.s.PGSQL.$p" ] && [ ! -e "$sockdir_shared/.s.PGSQL.$p.lock" ] || continue
		case " $* " in *" $p "*) continue ;; esac
		echo "$p"
		return
	done
	die "no free port found"
}
port=$(free_port)
restored_port=$(free_port "$port")
http_port=$(free_port "$port" "$restored_port")
block=${block//"$readme_root"/"$root"}
block=${block//"$readme_restored_port"/"-p $restored_port"}

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
install -d -o "$pg_user" -g "$(id -gn "$pg_user")" -m 0750 "$root" "$root/archive"

echo "quickstart-check: running the quick start as $pg_user (PGDATA=$PGDATA, port $port; $readme_root is $root," \
	"the restored cluster's port $restored_port, http_port $http_port)"
printf '%s\n' "$block" >"$work/quickstart.sh"
chmod 0644 "$work/quickstart.sh"
if ! as_pg bash -e -x "$work/quickstart.sh" >"$work/quickstart.log" 2>&1; then
	cat "$work/quickstart.log" "$work/server.log" >&2
	[ -d "$root/restored/log" ] && tail -n 50 "$root"/restored/log/* >&2
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
if [ -n "${QUICKSTART_LOG:-}" ]; then
	cp "$work/quickstart.log" "$QUICKSTART_LOG"
fi
echo "quickstart-check: OK: the restored cluster answers select 1, has the 1000 rows and is promoted"
