// Package demo runs hoard's whole job on a throwaway PostgreSQL, for
// `hoard demo`: a guided tour a newcomer can watch in under a minute.
//
// It finds PostgreSQL's server binaries (FindPGBin: Debian's packages, the
// builds `task deps` installs, or PATH), creates a temporary directory and
// in it a cluster whose archive_command is `hoard wal-push` (a copy of the
// running binary, so that PostgreSQL's user can run it), a configuration
// with a local store, and a key pair (`hoard create-keys`). It writes
// pgbench's tables and runs pgbench's transaction over SQL (no pgbench
// binary needed), takes a basebackup, records a point in time between two
// batches of rows, restores to that point into a second cluster, starts it
// and compares the rows with the first cluster's, then runs `hoard list`
// and `hoard verify`. Every hoard step runs the hoard binary itself, as a
// user would, printed before it runs.
//
// When run as root, PostgreSQL and hoard run as the unprivileged user
// postgres (initdb and postgres refuse root), so the directory must be
// reachable by that user: the system's temporary directory is.
//
// hoard never runs PostgreSQL's client tools; the demo runs only initdb,
// pg_ctl and postgres, to have servers to back up and restore.
package demo
