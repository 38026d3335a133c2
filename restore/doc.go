// Package restore rebuilds a PostgreSQL data directory from a stored
// basebackup and configures it to recover to a point in time.
//
// SelectBackup picks the backup: an explicit name, or the newest one that
// ended before the recovery target (by end time, end LSN, end snapshot for
// an xid, or the position of a restore point found in archived WAL). A
// backup that ended after the target could never reach it: PostgreSQL
// must replay past the backup's end to be consistent. Only backups the
// target timeline descends from qualify: a numeric one, or the latest
// reached from the backup's timeline, so backups left on a timeline a
// point-in-time restore abandoned are passed over. The latest timeline is
// the one wal-fetch shows the cluster (latest.go): another system's
// history file it treats as absent ends the timelines there. Run's
// automatic choice follows it for the database system of the newest
// backup and stays with that system (systemswitch.go): after a pg_upgrade
// into the same site, the old cluster's history files, where wal-fetch
// refuses them or they claim no system, would lead it to the old
// cluster's backups.
//
// For a restore point found in archived WAL, Run refuses (ErrBadTarget) a
// backup, chosen or named, from whose start recovery would replay another
// point of the same name first (earlierRestorePoint, reading forward from
// the backup's start to the first point of the name, the WAL recovery
// replays before it stops, only the copies recovery along the target
// timeline reads): PostgreSQL stops at the first one. For a named
// backup, the newest point of the name is looked for in all the WAL from
// its start on along that path (checkRestorePoints); a named backup
// from whose start recovery replays no point of the name is refused too.
// The automatic choice's newest point is found in every timeline's
// copies; once the backup and its path are known, a point not in the
// copy recovery reads gives way to the newest point of the name along
// the path from the backup's start, and none there (or one before the
// backup's end) is refused, naming the point's timeline (pointOnPath).
// The scans decode whole records (wal.RecordReader): a record split
// across a page or segment boundary counts, one whose CRC-32C does not
// match does not.
//
// For an xid target, Run reads the same WAL forward from the backup's
// start to the first commit or abort record naming the xid
// (checkTargetXID, wal.ParseXactEnd) and refuses (ErrBadTarget) an xid
// a record lists as a subtransaction, naming the top-level xid, and one
// no record ends (not for a standby, nor where the archive ends in a
// .partial): PostgreSQL would never stop there.
//
// Run checks before it writes: PostgreSQL must be able to promote at the
// end of recovery (promotion.go), the target directory must be absent, empty
// or hold only lost+found (with Overwrite, its postmaster.pid must not name
// a live process; it is then emptied, global/pg_control first), every tablespace directory likewise, and the archive
// must hold every WAL segment from the backup's start to its end (and on
// to an LSN target). The control object is read whole (streaming, only its
// manifest kept, at most archive.MaxManifestSize of it) and its manifest
// validated: chunk names that stay in their folder, tablespace paths that
// are absolute, and as many chunks listed as the backup's metadata counts
// (hoard-chunk-count), as verify compares them: a manifest listing fewer
// is refused with ErrMissingChunks, for the backup and each backup of an
// incremental chain (checkChunkCount). When Run chooses the backup itself,
// one refused by these checks because it is damaged (passover.go damaged:
// by the errors of damage, never by an error of the store, the network or
// the context) or whose incremental chain is broken is passed over with a
// warning, for the newest older backup that reaches the target, and
// Result.PassedOver names it and why; a backup named in Options.Backup is
// refused with its error, and so is one chosen for Target.Immediate
// (immediateRefused: an older backup's end is an older state), or for
// which a backup that may be newer was left out for its metadata
// (unreadableNewer). Then Run streams the chunks in parallel straight into the
// target, with no staging copy: each chunk is decrypted, decompressed and
// untarred as it arrives, pgdata/ mapped to the target and
// tablespaces/<name>/ to the tablespace's directory. A download that makes
// no progress for StallTimeout is cancelled and retried from the start, as
// are other storage read errors; integrity errors (HMAC, truncation,
// corrupt data, size) are never retried.
//
// A restore is confined to its target and tablespace directories, whatever
// the archive holds. planMember is the one place that maps a tar member to
// a path: it refuses every symbolic link, hard link, device, FIFO and
// sparse file, and every name that is absolute, holds "..", or lies
// outside pgdata/ and the manifest's tablespaces, with an error
// (ErrUnsafeMember) that names the backup, the object and the member. The
// extractor then creates only directories and regular files (O_EXCL: a
// member twice is refused), through an os.Root of each directory, so no
// link is followed out of it (a chunk's files are created through an
// os.Root of their own directory, opened beneath that one once for a run
// of files in it: dirHandle). A member may not declare more bytes than its
// chunk has left of the manifest's input_size, and a chunk may not decode
// to more than its input_size nor store more than its result_size: both
// are stopped as they happen (ErrSizeMismatch). A chunk whose manifest
// entry records its HMAC (hoard_hmac) must be that very object: an
// authentic chunk of another backup copied under its name fails at its
// end (archive.ErrWrongObject); and a member its manifest entry's file
// list does not name (a chunk moved there) is refused before it is
// written, with the same error. The only links a restore
// makes are pg_tblspc/<oid>, to the tablespace directories, and, with
// Options.WALDir, pg_wal, to that directory (waldir.go): checked before
// anything is written as the target is (absolute, apart from the target
// and the tablespace directories, empty unless Overwrite, which empties
// it), linked where a restore without it makes pg_wal for the spool, and
// written (pg_wal's directories, the spool) through an os.Root of its
// own, the target's refusing the link. Without it pg_wal is a directory,
// whatever the backed-up cluster's was: backups carry pg_wal as an empty
// directory even when it was a link (basebackup.c; basebackup/scan.go).
//
// While the chunks are written, Run downloads the WAL segments of the
// backup's consistency range, its start to its end, and checks each as
// wal-fetch does (walrange.go, archive.Archive.CheckWAL): a damaged,
// truncated or planted one would stop PostgreSQL's recovery with the data
// directory written. One that fails cancels the writing and refuses the
// restore with ErrDamagedWAL, naming it, before pg_control is written.
// With wal-fetch as restore_command and its prefetch spool on
// (WALFetch.Spool), the checked segments are kept in the spool of the
// target's pg_wal, under this archive's identity, as many as leave
// pg_wal's file system (the target's, or WALDir's) at least as much free
// as they take once the backup is written (walRoom): wal-fetch takes them without a second download.
//
// pg_control exists only in the control tar, which Run reads again and
// writes after every chunk decoded and verified; it must decode to the
// same bytes as the first time, and pg_control, held in memory until then,
// is written last, after the pg_tblspc links and after a syncfs of every
// file system written to (writePGControl), so that it is never on disk
// before a file it vouches for: a failed or killed restore, or one cut by
// a power loss, leaves a directory that PostgreSQL refuses to start on,
// and the error wraps ErrIncomplete. A failure after pg_control (the
// recovery configuration, the final syncfs) removes it again.
//
// The pg_control written is the backup's with its checkpoint location set
// to GuardCheckpoint (0/DEAD) and its CRC recomputed (pgcontrol.go), for
// every backup format, when the file is of a layout checked against
// PostgreSQL 13 to 18; checkPointCopy, REDO included, is kept. PostgreSQL
// recovers from backup_label's checkpoint and never reads pg_control's;
// without backup_label (removed after a failed recovery, as its HINT
// suggests) it would do crash recovery from pg_control's checkpoint, one
// from during the backup, with no backup end to reach, and could start a
// corrupt cluster: with 0/DEAD it refuses to start. A pg_control of
// another layout is written as backed up, with a warning; one whose CRC
// does not match is refused (ErrControlCRC). A backup without
// backup_label is refused (ErrNoBackupLabel): its control object when Run
// reads it before anything is written (ReadControl, which verify uses
// too), a backup held in one tar at the tar's end (pg_control is not
// written), and writePGControl checks the directory again. The restored pg_control no
// longer matches its checksum in backup_manifest: pg_verifybackup is run
// with -i global/pg_control.
//
// A pghoard-bb-v2 or pghoard-delta-v2 backup whose metadata says its
// control tar holds PostgreSQL's backup_manifest (hoard-pg-manifest:
// hoard's backups, over BASE_BACKUP, local-tar or delta; a delta
// backup's manifest is written from the bytes each file was stored
// with) is checked against it as it is restored (pgmanifest.go): Run
// reads it before writing anything, in the same pass as ReadControl
// (pgmPass: one download of the object, and the manifest comes from the
// bytes whose checks passed; the extraction's later read must give the
// same bytes), each file written must be
// listed there with its size and CRC-32C, computed as the file is
// written (no second read), whether it comes from a chunk, a delta
// object, a bundle or the delta manifest's embedded content, so that a
// delta reference to another stored object, which passes that object's
// own digest check, is caught; pg_control is compared as
// backed up, before it is changed, and before pg_control is written every
// listed file must have been restored, but for the files hoard's backups
// leave out on purpose (archive.LeftOut, the rule basebackup applies:
// names ending in .old, .tmp or ~ or starting with .s., pgsql_tmp or
// pg_internal.init at any depth, the contents of pg_log, pg_wal,
// pg_stat_tmp and the other directories whose contents are left out,
// postmaster.pid and postmaster.opts): the server sends files such as
// postgresql.conf.old or pg_hba.conf~ and lists them in BASE_BACKUP's
// manifest (basebackup.c's excludeFiles does not name them). Nor is a
// top-level backup_label.old missing, which hoard's BASE_BACKUP backups
// held only from c005a0d on (PostgreSQL never reads it). Such a file,
// when a backup does hold it, is compared as any other; a tablespace's
// file is judged as that tablespace's backup judged it, and one under
// pg_tblspc/ of a tablespace the backup does not hold is missing. A
// mismatch fails the restore with
// ErrPGManifest, naming the file, what is listed and what was found, and
// ErrIncomplete. A backup whose authenticated metadata says it holds one
// and whose control tar does not is refused before anything is written.
// A delta object whose bytes are not its name's digest fails with
// ErrDeltaDigest, the more precise cause, even when its file also
// differs from backup_manifest. PGManifestCheck applies the same rules
// to files that are read and not written: verify --full compares every
// file of a backup through it, each backup of an incremental chain as
// the restored backup of its chain is compared (below), with its own
// manifest.
// Not checked: PGHoard's delta backups (they carry no backup_manifest),
// a tablespace_map rewritten for moved tablespaces.
//
// An incremental chain is checked level by level (incremental.go): every
// backup of a chain carries a backup_manifest (basebackup takes none
// without one as a parent: the server needs it), and readChain reads each
// before anything is written (a parent without one, or with one that
// does not parse, breaks the chain). Each member a level's chunks hold is
// compared, as it is read, with that level's own manifest: a whole file
// as for any backup, an INCREMENTAL.<name> file under that name (the
// manifest lists the incremental file's size and CRC-32C) as
// applyIncremental consumes it, read to its end even when applying it
// fails, so that one altered in the bucket is reported as differing
// rather than as a broken chain. Once a parent's chunks are written,
// every file its manifest lists must have been (missing), before the
// next level replaces or removes any, but its control tar's files
// (pg_control, backup_label, tablespace_map: only the restored backup's
// control tar is written), the files of a tablespace the restored
// backup no longer has (never written) and the files the restored backup
// no longer has (removed after the level, so their absence changes
// nothing; compared when held) are not required (fitParent). The
// restored backup's control tar is compared as for any backup,
// backup_label before its INCREMENTAL FROM lines go, then every file its
// manifest lists must have been restored. Every stored byte is read once,
// as it streams; what is not checked is the file each INCREMENTAL file
// rebuilds: its bytes are the parent's blocks (checked when that level
// was written) and the incremental file's (checked as read), put together
// by applyIncremental, and no manifest lists the result (pg_combinebackup
// checks no more: the manifest it writes is computed from its own
// output). A bug in that reconstruction, or a parent's file changed on
// disk between its level and the next, is not detected. Errors name the
// backup of the chain, the chunk or control object and the file. The
// entries of every backup's manifest are held in memory from readChain
// to the end of the restore.
//
// Before the first download Run compares the backup's decoded size with
// the free space of the target's file system; when tablespaces lie on
// others, each file system's free space with the parts of the backup
// restored there, as the manifest's tablespace_sizes split it (two
// directories on one file system add up), or, for a backup without that
// record (PGHoard's, older hoard's), all the file systems' together (the
// WALDir's counts with no part of the backup: pg_wal's contents are in
// none); it
// refuses with ErrNoSpace unless SkipSpaceCheck; a full file system during the restore (ENOSPC) is
// reported with those figures. Then Run links
// pg_tblspc/<oid> to each tablespace's directory, writes the recovery
// configuration (WriteRecoveryConfig: a block appended to
// postgresql.auto.conf that sets every recovery target setting, the unused
// ones empty, so that none the backup carries applies, and for a primary
// recovery_min_apply_delay = 0, so that a delayed standby's backup
// replays undelayed, and empty recovery_end_command (unless set) and
// archive_cleanup_command, so that a standby's backup does not run the
// source's commands; RecoveryConfig.Carried names the standby settings a
// standby keeps, and Run logs them), and recovery.signal
// or standby.signal, each
// replaced through a new file renamed into place, never written through a
// link; PostgreSQL 13 and later only) and syncs the file systems.
//
// PGHoard's delta backups (pghoard-delta-v1/v2, see delta.go) are
// restored the same way: every path of their manifest is planned by
// planMember as pgdata/<path> before anything is written, their bundles'
// members likewise, and each delta object must decode to the manifest's
// file_size bytes whose BLAKE2s-256 is its name (ErrDeltaDigest names an
// object altered or swapped); pg_control still comes last, from the
// control tar.
//
// Backups held in one tar object, PGHoard's basic and pipe modes (a
// pg_basebackup tar) and its legacy pghoard-bb-v1, are read in one stream
// (single.go): members are planned as a chunk's are, pg_control is held in
// memory and written only once the object has decoded to its end and
// passed its integrity checks. A pghoard-bb-v1's tablespaces are in its
// object metadata and must match the manifest at the head of its tar
// (ErrTablespaceMismatch), which is checked before any other member is
// written.
//
// Unlike PGHoard, restore writes recovery.signal for a primary (PGHoard
// wrote neither signal file, so PostgreSQL 12+ started without recovering),
// supports LSN and immediate targets, chooses by a backup's end rather than
// its start, and defaults recovery_target_action to promote for a primary
// restored to a target.
package restore
