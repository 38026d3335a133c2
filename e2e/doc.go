// Package e2e tests the built hoard binary against real PostgreSQL
// clusters, the way an operator uses it: PostgreSQL's archive_command runs
// `hoard wal-push`, `hoard basebackup` takes the backup, `hoard restore`
// rebuilds a data directory for a recovery target, and PostgreSQL's
// restore_command runs `hoard wal-fetch` while the restored cluster
// replays. The oracle is the restored cluster itself: its rows must be
// exactly those committed before the target, and pg_verifybackup must
// accept the restored files where the installed version can read the
// backup's manifest.
//
// TestMain builds the binary once into a directory the server's user can
// reach; every hoard command runs as that user (internal/pgtest.RunAs), as
// it would under PostgreSQL.
package e2e
