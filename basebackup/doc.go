// Package basebackup takes a basebackup of a PostgreSQL cluster and stores
// it in PGHoard's pghoard-bb-v2 format (pghoard-format.md c.4), so that
// PGHoard's restore and hoard's read it. It reads the cluster one of two
// ways (Options.Mode): from the data directory itself, PGHoard's local-tar
// mode, or over the replication protocol with BASE_BACKUP. ModeDelta reads
// the data directory as local-tar does and stores PGHoard's
// pghoard-delta-v2 format instead (see copyDelta). ModeAuto, the
// default, reads the data directory when Options.PGData is set and
// readable, and gives way to BASE_BACKUP (with a warning) when that
// directory is another cluster's or the role may not start a backup.
//
// # local-tar
//
// runLocal opens an ordinary SQL connection (application_name "hoard
// basebackup") and reads the server's version, WAL segment size, block and
// relation segment sizes, whether data checksums are on, its system
// identifier and catalog version. The data directory's global/pg_control
// must carry the same system identifier. It then starts a non-exclusive
// backup, pg_backup_start (pg_start_backup(label, fast, false) on 13 and
// 14), whose position and the server's clock right after it are the
// backup's start. The backup lives as
// long as this session: a watcher pings it every second while files are
// read, and if it is gone (killed, or the server restarted) the backup is
// canceled at once, since the server has aborted it. pg_backup_start's
// checkpoint wrote pg_control: if the directory's checkpoint is older than
// the start, the directory is not the server's (a standby's copy, say) and
// the backup stops before reading anything.
//
// The data directory and each tablespace's directory of this server's
// version (PG_<major>_<catalog version>, found through pg_tblspc's links)
// are listed first (a data directory or a tablespace location named
// through a symbolic link is followed, as PostgreSQL follows it; links
// inside are stored as links), with the sizes of the files then, and cut into chunks by
// the rule below. A pool of Options.Parallel workers writes the chunks,
// largest first: each reads its files into a chunk tar streamed through
// the codec (compress, encrypt) to the store, so reading, compression,
// encryption and upload run on every core at once; nothing is staged on
// disk. A file is read up to its listed size: WAL replay restores what was
// written after the backup began. A file that is gone when its turn comes
// is left out, one that shrank is padded with zeros, as basebackup.c does.
// The data directory is opened once, before anything is read from it, and
// each tablespace's location once, when the listing reaches it; every path
// under them, for the listing,
// the workers' reads, the delta mode's, pg_control and the checks, is
// opened relative to that descriptor without following any symbolic link
// below it (openBeneath: openat2 with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS,
// or one directory at a time with O_NOFOLLOW on kernels without it, or
// where a seccomp filter refuses it with EPERM) and
// without waiting (openRegular): a file, or a directory above it, replaced
// since the listing by a link or a named pipe, which PostgreSQL never
// makes, fails the backup naming it, rather than storing the bytes of a
// file the database's user may not read under a cluster file's name or
// waiting forever for a writer of the pipe. Only pg_wal, where the
// history file of a timeline switch during the backup is read, is
// followed when it is a link, as PostgreSQL follows it. Special files
// found by the listing (sockets, pipes, devices) are left out with a
// warning.
//
// With data checksums on, every page of a relation file (global/, base/ and
// the tablespaces, not pg_control, pg_filenode.map, PG_VERSION or
// pg_internal.init) is verified as it is read, as BASE_BACKUP does: a page
// that is new or whose LSN is at or past the backup's start is skipped (WAL
// replay rewrites it), a failing page is read once more in case a
// concurrent write tore it, and then counts. Failures do not fail the
// backup (the damage is in the cluster; the backup holds the pages as
// read): the first five of a file are logged as warnings with their block
// numbers, and the total, with the files and blocks, goes into the control
// object's metadata (hoard-checksum-failures) and manifest
// (hoard.checksum_failures).
//
// After the last chunk, global/pg_control is read (last, so that a backup
// of a standby ends at a minimum recovery point covering every page read;
// again while its CRC fails, as a read can tear against the server's
// rewrite of the file: wal.ReadControlFile),
// then pg_backup_stop (pg_stop_backup(false)) returns the end position,
// backup_label and tablespace_map, which go into the control tar; unless
// Options.NoWait, the server first waits for the backup's WAL to be
// archived. hoard writes PostgreSQL's backup_manifest itself, as the server
// would (version 2 with the system identifier from PostgreSQL 17, CRC-32C of
// each file as stored, the WAL ranges, a SHA-256 of the manifest), so that
// pg_verifybackup checks a restored directory.
//
// # BASE_BACKUP
//
// runStream opens a replication connection (IDENTIFY_SYSTEM for the system
// identifier, SHOW wal_segment_size: never assumed to be 16 MiB) and an
// ordinary SQL connection to the same server; the SQL session is idle
// while the server checkpoints and streams, and one the server or the
// network ended meanwhile (idle_session_timeout, say) is opened anew for
// the queries after that (onSQL), as the backup lives on the replication
// connection. Both sessions must reach the replication connection's
// server: the first has its system identifier, a new one also its
// postmaster's start time and recovery state (checkNewSession), else the
// backup fails rather than record another server's clock and snapshot
// (a connection string naming several hosts, or a name a failover
// moved). It starts BASE_BACKUP with
// LABEL, MANIFEST 'yes' (hence PostgreSQL 13 or later), TABLESPACE_MAP
// when pg_tablespace lists tablespaces besides pg_default and pg_global,
// PROGRESS (unless Options.NoEstimate), a fast or spread checkpoint,
// MAX_RATE, and WAIT unless Options.NoWait. The start position and
// timeline come back before any data; the server's clock read then is
// the backup's start time. The tablespaces' names come from pg_tablespace.
// A cluster with an in-place tablespace (a directory in pg_tblspc, made
// with allow_in_place_tablespaces) is refused in every mode before the
// backup starts (userTablespaces, ErrInPlaceTablespace): BASE_BACKUP
// leaves it out of its list on 13 and 15 and names it relative to the
// data directory on 18, and local-tar reads tablespaces through links.
//
// An incremental backup (Options.Incremental, PostgreSQL 17+) first
// chooses its parent, the newest stored backup of the server's system,
// timeline and major version, whose chain must be whole: every backup of
// it stored and passing archive.CheckBackup (its control object its own,
// its chunks stored), or the backup fails wrapping ErrNoParent and
// ErrBrokenParent, naming the parent (checkChain); a check the storage
// failed (unreachable, refusing) is no finding of damage and fails the
// backup with the storage's error alone. A chain that continues into a
// moved_from site (after a partial archive-copy) and is sound there as
// restore takes it is refused too, a full backup to be taken, but wraps
// ErrParentMovedFrom and ErrNoParent, not ErrBrokenParent: nothing is
// broken (movedChain). Once chosen, it stores a marker
// naming it (archive.MarkIncrementalParent), from which on retention keeps
// the chain; checks that the chain is still stored (a retention run may
// have deleted it before the marker: the parent is chosen again, up to
// three times); then sends the parent's backup_manifest (UPLOAD_MANIFEST),
// kept from the one read of its control object that checkChain checked
// (never read again: another object may be there by then), and BASE_BACKUP
// INCREMENTAL. Before the control object it stores a new
// marker in place of its last one, which may no longer count (deleted,
// or stale when none could be stored for a day), then checks the chain
// once more: a backup of it gone (deleted by hand, by retention that does
// not read the markers, or by retention while the marker did not count)
// fails the backup with ErrNoParent rather than store one that cannot be
// restored, and the new marker keeps the chain from retention after that
// check. Once the control object is stored it checks that the new marker
// is still there, then the chain again (checkStored): a marker deleted
// meanwhile may have let a retention run plan the chain's deletion, so
// the backup is withdrawn (its control object deleted again) and fails
// wrapping archive.ErrIncrementalMarkerLost. A failed backup deletes
// its marker. A completed one leaves it, so that a retention run planned
// before the backup was listed still sees it when it deletes, and so
// does a crash; a marker counts until it is a day old and older than the
// newest backup, and retention then deletes it. While the backup runs it
// stores a new marker every six hours and deletes the previous one
// (archive.KeepIncrementalMarker), so that a backup running for more than
// a day keeps its parent's chain all along.
//
// Each tablespace's tar stream (the main data directory comes last) is
// received on a goroutine of its own into a few large buffers (readAhead),
// read member by member and re-packed into chunk tars, with the member
// names PGHoard uses. Every chunk is streamed as it is written: the tar
// writer writes into the chunk's archive.Upload (compress on
// Options.CompressionThreads goroutines, encrypt, upload), so that
// receiving, encoding and upload overlap. A finished chunk's upload is
// closed in the background while the next chunk fills. At most
// Options.Parallel chunks are in flight, the one being written included;
// the reader waits for a slot, which slows the server down through TCP
// flow control. Nothing that grows with the number of files is held in
// memory: the chunks' lists of member names (the manifest's "files") are
// spooled, a name at a time as each member is written, to an unlinked
// temporary file in Options.TempDir (chunker.names), and read back from
// it into the manifest's JSON (chunker.fileLister). A local-tar backup
// keeps its scan's entries (one a member, about 100 bytes with its path)
// and reads the chunks' names and backup_manifest entries off them at
// the end (chunkResult.fileNames, manifestFiles). PostgreSQL's
// backup_manifest, which grows with them too, is spooled to an unlinked
// temporary file in Options.TempDir as it is received (spool), and at the
// end the manifest's JSON and the control tar are written a file name at
// a time into spools of their own and the control tar streamed from its
// spool through the codec to the store (writeControl): none of them is
// held whole in memory. Each spool's CRC-32C is checked as it is read
// back, so that a copy the local disk lost or changed fails the backup
// instead of being stored. After the stream, BASE_BACKUP returns the end
// position and timeline.
//
// With data checksums on, the server verifies each page it sends, names
// each failure in a WARNING (five a file, then the file's total, then the
// backup's total) and, after every archive, the manifest and the end
// position, ends the command with ERROR XX001 (perform_base_backup in
// basebackup.c). The backup is complete then, and pg_basebackup keeps it:
// when every archive was read to its end, the server had sent one for
// each tablespace it listed and the manifest, and the end position came
// (replication.ChecksumError.Ended), the backup goes on as a successful
// one and is stored as local-tar stores one with damaged pages, the pages
// as sent: the failures the warnings name are logged and recorded in
// hoard-checksum-failures and hoard.checksum_failures (files by their
// member names, the blocks the server named). An XX001 at any other
// point fails the backup as any error does.
//
// The warnings come in the server's lc_messages, and hoard reads the
// files and blocks from them in English only: when the role may set
// lc_messages (a superuser, and from PostgreSQL 15 a role granted SET on
// the parameter: GRANT SET ON PARAMETER lc_messages TO role;
// mayAskEnglish asks over the SQL connection), the replication connection
// asks for lc_messages=C at startup (replication.ConnectEnglish). An
// ordinary replication role is not asked: the server would refuse it with
// a FATAL in its log (SQLSTATE 42501) at every backup. Should a grant
// vanish in between, ConnectEnglish connects again without it, once,
// logging the refusal at debug level. With warnings in another language
// the count is still the server's (its total, the one warning after the
// end position, read as the only number in it; 1 when it sent none) and
// the record says the files are unknown (files_unknown): the server's
// log names them.
//
// # Chunks
//
// Both ways write the same chunks: member names pgdata/<path> for the data
// directory and tablespaces/<spcname>/<path> for a tablespace. A chunk is
// cut before a member that would take it past Options.ChunkSize, once it is
// at least a fifth full (PGHoard's rule; a larger file gets a chunk of its
// own). Each chunk repeats the directory entries of its members' parents,
// so it extracts on its own. Directories, regular files and symbolic links
// keep their modes and modification times; other file types are left out.
//
// Left out of the chunks, as PGHoard and PostgreSQL's basebackup.c leave
// them out: postmaster.pid, postmaster.opts and a stray backup_manifest;
// the contents of pg_dynshmem, pg_log, pg_notify, pg_replslot, pg_serial,
// pg_snapshot(s), pg_stat_tmp, pg_subtrans, pg_tblspc, pg_wal and pg_xlog;
// at any depth names ending in .old (but a top-level backup_label.old,
// which every cluster made from a backup has and BASE_BACKUP's manifest
// lists, is kept), .tmp or ~, starting with .s., pgsql_tmp or
// pg_internal.init, and any pg_control; in a database
// directory, temporary relations and the forks of unlogged relations other
// than their init fork. global/pg_control, backup_label and tablespace_map
// go into the control tar instead. A file these rules drop but the server
// sent over BASE_BACKUP (a log in pg_log, postgresql.conf.old, say) is
// listed in PostgreSQL's backup_manifest: hoard's restore does not count it
// missing (the rule is archive.LeftOut, which both apply), but
// pg_verifybackup on a restored directory reports it missing (-i ignores
// it).
//
// Either way, the start time is recorded to the second, as backup_label's
// START TIME (where PGHoard takes its start-time from), and names the
// backup YYYY-MM-DD_HH-MM_N (UTC, N counted from the milliseconds within the
// minute past the numbers of the site's backups and leftover chunk
// folders, and claimed in the store before it is used: chooseName,
// archive.ClaimName, so that two writers of one site whose backups
// start in the same millisecond never share a name, one replacing the
// other's chunks and the cleanup of one deleting the other's; the claim
// is deleted once the control object is stored, or last with the chunks
// of a failed backup). After the data, the SQL connection records txid_current_snapshot()'s
// xmin and xmax (metadata hoard-end-xmin and hoard-end-xmax, used to
// choose a backup for an xid recovery target) and the server's now() as
// the end time.
//
// # The control object
//
// When every chunk is stored, the control object
// basebackup/<name>.00000000.pghoard is written last: a backup is listed
// only once it exists, so a failed backup is never seen. It is a tar
// holding, in this order:
//
//	.pghoard_tar_metadata.json   archive.Manifest: PGHoard's fields (times,
//	                             WAL segments, pgdata, tablespaces, chunks with
//	                             input_size, result_size and files; hoard_hmac,
//	                             the HMAC trailer of an encrypted chunk) and the
//	                             "hoard" block (LSNs, timelines, system id,
//	                             segment size, version, pg_manifest=true,
//	                             tablespace_sizes: each tablespace's part of
//	                             the chunks, for restore's space check)
//	pgdata/global/pg_control
//	pgdata/backup_label
//	pgdata/tablespace_map        when the cluster has tablespaces
//	pgdata/backup_manifest       PostgreSQL's manifest: the server's, or
//	                             hoard's own for local-tar (hoard's addition)
//	pgdata/pg_wal/ ...           directory entries (0700), archive.ControlEmptyDirs
//
// Its metadata is archive.BackupInfo.ToMetadata: format pghoard-bb-v2, the
// start and end WAL segment names (the end one is the segment holding the
// byte before the end position, as pg_walfile_name names it), start and
// end times, sizes, chunk count, site, host, reason and modes, and hoard's
// hoard-* keys with the exact LSNs and timelines, plus hoard-pg-manifest,
// the end snapshot, hoard-source (data-directory or base-backup) and, for
// local-tar with data checksums or a BASE_BACKUP with damaged pages,
// hoard-checksum-failures. Chunks carry
// format pghoard-bb-v2 and the codec's keys; their plaintext size is not
// known when their upload starts, so they carry no original-file-size
// (the manifest's input_size has it).
//
// # Failure
//
// Any error, or ctx being canceled, aborts the backup on the server (its
// connection is closed), fails the chunk uploads in progress (they store
// nothing), waits for the others, and deletes every chunk whose upload
// began, and an incremental backup's marker, under a context that
// outlives ctx. A failed Put of the control object may have stored it
// all the same (a PUT whose answer was lost): the control object is
// deleted first, and only then the chunks. Where that delete fails, or
// where the backup failed after its control object was stored and stays
// listed (a delta backup whose marker check fails then, an incremental
// backup whose control object cannot be withdrawn), its chunks are kept
// and the error says so: a listed backup never loses its chunks to the
// cleanup.
package basebackup
