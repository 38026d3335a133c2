// Package restore rebuilds a PostgreSQL data directory from a stored
// basebackup and configures it to recover to a point in time.
//
// SelectBackup picks the backup: an explicit name, or the newest one that
// ended before the recovery target (by end time, end LSN, end snapshot for
// an xid, or the position of a restore point found in archived WAL). A
// backup that ended after the target could never reach it: PostgreSQL
// must replay past the backup's end to be consistent.
//
// Run checks before it writes: the target directory must be absent, empty
// or hold only lost+found (unless Overwrite), every tablespace directory
// likewise, and the archive must hold every WAL segment from the backup's
// start to its end (and on to an LSN target). It then streams the chunks in
// parallel straight into the target, with no staging copy: each chunk is
// decrypted, decompressed and untarred as it arrives, pgdata/ mapped to the
// target and tablespaces/<name>/ to the tablespace's directory. A download
// that makes no progress for StallTimeout is cancelled and retried from
// the start, as are other storage read errors; integrity errors (HMAC,
// truncation, corrupt data, size) are never retried.
//
// pg_control exists only in the control tar, which Run writes after every
// chunk decoded and verified: a failed restore leaves a directory that
// PostgreSQL refuses to start on, and the error wraps ErrIncomplete.
// Then Run links pg_tblspc/<oid> to each tablespace's directory, writes
// the recovery configuration (WriteRecoveryConfig: a block appended to
// postgresql.auto.conf and recovery.signal or standby.signal; PostgreSQL
// 13 and later only) and syncs the file systems.
//
// Unlike PGHoard, restore writes recovery.signal for a primary (PGHoard
// wrote neither signal file, so PostgreSQL 12+ started without recovering),
// supports LSN and immediate targets, chooses by a backup's end rather than
// its start, and defaults recovery_target_action to promote for a primary
// restored to a target.
package restore
