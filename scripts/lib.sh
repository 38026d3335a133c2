# shellcheck shell=bash
# What the benchmark and check scripts (bench-*.sh, pghoard-restore-check.sh)
# share: their arguments, their preflight, a fresh working directory, the
# hoard binary, MinIO, a PostgreSQL cluster and stopping what they started.
# Sourced, never run; set prog (the name errors begin with) before sourcing:
#
#   prog=bench-sync
#   . "$(dirname "$0")/lib.sh"
#
# Every function that fails exits the script (set -e is the caller's). The
# PostgreSQL functions run the binaries in pgbin (need_pg15 sets it).

: "${prog:?set prog before sourcing scripts/lib.sh}"
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# die MESSAGE [STATUS]: MESSAGE on stderr after "$prog: ", exit STATUS (1).
die() {
	echo "$prog: $1" >&2
	exit "${2:-1}"
}

# parse_args USAGE SPEC... -- ARG...: sets the caller's variables from ARG.
# A SPEC "--flag var" takes a value (--flag V sets var=V); "--flag var=X"
# takes none (--flag sets var=X). Arguments that do not begin with - go to
# the array rest, in order. An unknown flag or a missing value prints
# "usage: $0 USAGE" and exits 2.
parse_args() {
	usage=$1
	shift
	local -a specs=()
	while [ "$1" != -- ]; do
		specs+=("$1")
		shift
	done
	shift
	rest=()
	local s var
	while [ $# -gt 0 ]; do
		case $1 in
		-*) ;;
		*) rest+=("$1") && shift && continue ;;
		esac
		var=
		for s in "${specs[@]}"; do
			if [ "$1" = "${s%% *}" ]; then var=${s#* } && break; fi
		done
		case $var in
		'') usage_exit ;;
		*=*) printf -v "${var%%=*}" %s "${var#*=}" ;;
		*)
			[ $# -ge 2 ] || usage_exit
			printf -v "$var" %s "$2"
			shift
			;;
		esac
		shift
	done
}

# usage_exit: the usage given to parse_args on stderr, exit 2.
usage_exit() {
	echo "usage: $0 $usage" >&2
	exit 2
}

# no_rest: exits with the usage when parse_args found arguments that are not flags.
no_rest() { [ ${#rest[@]} = 0 ] || usage_exit; }

# need_root: the tools run as postgres through runuser.
need_root() { [ "$(id -u)" = 0 ] || die "run as root (the tools run as postgres)" 2; }

# need_pg15 [PGBIN]: Debian's PostgreSQL 15 is in PGBIN (its default), and
# pgbin is set to it.
need_pg15() {
	pgbin=${1:-/usr/lib/postgresql/15/bin}
	[ -x "$pgbin/postgres" ] || die "Debian's PostgreSQL 15 is missing ($pgbin): run task deps" 2
}

# need_minio: sets minio_bin, the MinIO of task deps.
need_minio() {
	minio_bin=${HOARD_CACHE:-/var/cache/hoard}/bin/minio
	[ -x "$minio_bin" ] || die "$minio_bin is missing: run task deps" 2
}

as_pg() { runuser -u postgres -- "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# fresh_dir DIR: an empty DIR owned by postgres.
fresh_dir() {
	rm -rf "$1"
	mkdir -p "$1"
	chown postgres: "$1"
}

# build_hoard DIR: builds this checkout as DIR/hoard and sets hoard to it.
build_hoard() {
	echo "== building hoard" >&2
	(cd "$repo" && CGO_ENABLED=0 go build -trimpath -o "$1/hoard" .)
	hoard=$1/hoard
}

# start_minio DIR: a MinIO server on free ports storing in DIR/minio (log:
# DIR/minio.log), answering within 60 s. Sets minio_pid, mport, muser,
# mpass and bucket (a name prefix); s3 is curl signed as MinIO's root.
start_minio() {
	echo "== MinIO" >&2
	local mconsole i
	mport=$(free_port) mconsole=$(free_port)
	muser=hoardbench mpass=hoardbench-secret bucket=hoard-bench
	mkdir -p "$1/minio"
	MINIO_ROOT_USER=$muser MINIO_ROOT_PASSWORD=$mpass MINIO_BROWSER=off MINIO_UPDATE=off \
		"$minio_bin" server --quiet --address "127.0.0.1:$mport" --console-address "127.0.0.1:$mconsole" "$1/minio" \
		>"$1/minio.log" 2>&1 &
	minio_pid=$!
	for i in $(seq 1 600); do
		curl -fs "http://127.0.0.1:$mport/minio/health/live" >/dev/null && break
		[ "$i" = 600 ] && { cat "$1/minio.log" >&2; die "MinIO does not answer"; }
		sleep 0.1
	done
	return 0
}
s3() { curl -fsS --aws-sigv4 "aws:amz:us-east-1:s3" --user "$muser:$mpass" "$@"; }

# make_bucket NAME: creates the bucket; a loaded MinIO may answer 503 for a
# moment after it says it is live, so it tries for 10 s.
make_bucket() {
	local i
	for i in $(seq 1 50); do
		s3 -X PUT "http://127.0.0.1:$mport/$1" >/dev/null 2>&1 || true
		s3 -o /dev/null -I "http://127.0.0.1:$mport/$1" 2>/dev/null && return 0
		sleep 0.2
	done
	die "MinIO does not create the bucket $1"
}

# stop_minio: stops the MinIO of start_minio, if any.
stop_minio() {
	[ -n "${minio_pid:-}" ] || return 0
	kill -TERM "$minio_pid" 2>/dev/null || true
	wait "$minio_pid" 2>/dev/null || true
	minio_pid=
}

# stop_pid PID SECONDS: TERM, then waits up to SECONDS for PID to go.
stop_pid() {
	local _
	kill -TERM "$1" 2>/dev/null || true
	for _ in $(seq 1 $(($2 * 10))); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
}

# start_pg DATA LOG: starts the cluster in DATA, its log in LOG, and waits
# until it accepts connections.
start_pg() { as_pg "$pgbin/pg_ctl" -D "$1" -l "$2" -w start >/dev/null; }

# stop_pg DATA: an immediate stop of the cluster in DATA, if it runs.
stop_pg() {
	[ -f "$1/postmaster.pid" ] || return 0
	as_pg "$pgbin/pg_ctl" -D "$1" -m immediate stop >/dev/null 2>&1 || true
}

# psql: psql as postgres, quiet, stopping at the first error; the server
# is the one PGHOST and PGPORT name unless the arguments say otherwise.
psql() { as_pg "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

# init_cluster DATA PORT [INITDB ARG...]: initdb with data checksums
# and trust, listening on no TCP port but on PORT's socket in DATA's parent
# (the working directory); the caller appends more to postgresql.conf.
init_cluster() {
	local data=$1 port=$2
	shift 2
	as_pg "$pgbin/initdb" -D "$data" -k -A trust -U postgres "$@" >/dev/null
	cat >>"$data/postgresql.conf" <<EOF
port = $port
listen_addresses = ''
unix_socket_directories = '$(dirname "$data")'
EOF
}

# fill_cluster SCALE RANDOM_MB: pgbench tables at SCALE and a table
# random_bytes of RANDOM_MB MB of random bytes (so that compression is
# realistic), frozen and checkpointed, in the cluster PGHOST and PGPORT
# name. Sets size, the databases' bytes.
fill_cluster() {
	local scale=$1 random_mb=$2
	as_pg "$pgbin/pgbench" -i -q -s "$scale" >/dev/null 2>&1
	psql -c "create extension pgcrypto" \
		-c "create table random_bytes (id int, b bytea)" \
		-c "insert into random_bytes select g, gen_random_bytes(1024) from generate_series(1, $((random_mb * 1024))) g" \
		-c "vacuum (freeze, analyze)" -c "checkpoint"
	size=$(psql -Atc "select sum(pg_database_size(oid)) from pg_database")
	echo "== database size $((size / 1000000)) MB" >&2
}
