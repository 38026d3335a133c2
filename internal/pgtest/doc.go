// Package pgtest starts real PostgreSQL clusters for tests.
//
// A test asks for a cluster of one major version with Start; the harness runs
// initdb into a fresh temporary directory, writes a postgresql.conf suited to
// replication tests (wal_level=replica, wal senders and slots, loopback only,
// a private unix socket directory) and a pg_hba.conf that trusts loopback
// connections, including replication ones, then starts the server with
// pg_ctl on a free port. t.Cleanup stops the server and removes the
// directory; when the test failed, the tail of the server log is printed
// first.
//
// Binaries come from two places:
//
//   - $HOARD_CACHE/pg/<major>/bin (default cache /var/cache/hoard): the npm
//     embedded-postgres builds for 13 to 18. They hold only initdb, pg_ctl
//     and postgres and find their lib/ and share/ directories relative to
//     bin/.
//   - /usr/lib/postgresql/15/bin: Debian's PostgreSQL 15 with the full
//     client toolset (pg_verifybackup, pg_waldump, pgbench, psql, ...). Tests
//     use those tools only as independent oracles or load generators; see
//     Tool and Pgbench.
//
// Versions lists the majors under test, from HOARD_PG_VERSIONS ("13,15,18",
// "all"); the default is 13, 15 and 18.
//
// A missing binary skips the test, unless HOARD_TEST_STRICT=1 is set, in
// which case it fails it: a skip never passes silently in CI. With -short,
// Start skips: starting clusters is slow.
//
// initdb and postgres refuse to run as root. When the test process is root,
// every server process runs as the "postgres" user (see RunAs), and the
// cluster directory is owned by that user. TempDir gives tests further
// directories the server can write to (tablespaces, WAL archives).
package pgtest
