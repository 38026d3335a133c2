// Package basebackup takes a basebackup over PostgreSQL's replication
// protocol and stores it in PGHoard's pghoard-bb-v2 format
// (pghoard-format.md c.4), so that PGHoard's restore and hoard's read it.
//
// # Flow
//
// Run opens a replication connection (IDENTIFY_SYSTEM for the system
// identifier, SHOW wal_segment_size: never assumed to be 16 MiB) and an
// ordinary SQL connection to the same server. It starts BASE_BACKUP with
// LABEL, MANIFEST 'yes' (hence PostgreSQL 13 or later), TABLESPACE_MAP
// when pg_tablespace lists tablespaces besides pg_default and pg_global,
// PROGRESS (unless Options.NoEstimate), a fast or spread checkpoint,
// MAX_RATE, and WAIT unless Options.NoWait. The start position and
// timeline come back before any data; the server's clock read then is the
// backup's start time (recorded to the second, as backup_label's START
// TIME) and names the backup YYYY-MM-DD_HH-MM_N (UTC, N counted from the
// milliseconds within the minute past the numbers of the site's backups
// and leftover chunk folders). The tablespaces' names come from
// pg_tablespace.
//
// Each tablespace's tar stream (the main data directory comes last) is
// read member by member and re-packed into chunk tars, with the member
// names PGHoard uses: pgdata/<path> for the data directory and
// tablespaces/<spcname>/<path> for a tablespace. A chunk is cut before a
// member that would take it past Options.ChunkSize, once it is at least a
// fifth full (PGHoard's rule; a larger file gets a chunk of its own). Each
// chunk repeats the directory entries of its members' parents, so it
// extracts on its own. Directories, regular files and symbolic links keep
// their modes and modification times; other member types are dropped.
//
// Left out of the chunks, as PGHoard leaves them out: postmaster.pid and
// postmaster.opts, the contents of pg_dynshmem, pg_log, pg_replslot,
// pg_snapshot, pg_stat_tmp, pg_tblspc, pg_wal and pg_xlog, and at any depth
// names ending in .old, .tmp or ~, starting with .s. or pgsql_tmp. The
// server omits most of these already. global/pg_control (sent last by the
// server), backup_label and tablespace_map go into the control tar instead.
// A file PGHoard's rules drop but the server sent (a log in pg_log, say) is
// listed in PostgreSQL's backup_manifest: pg_verifybackup on a restored
// directory then reports it missing.
//
// Every chunk is streamed as it is written: tar writer, io.Pipe, and
// archive.Codec.Put (compress, encrypt, upload) in a goroutine, so that
// encoding and upload overlap reading the stream. At most
// Options.Parallel chunks are in flight, the one being written included;
// the reader waits for a slot, which slows the server down through TCP
// flow control. Memory is bounded by a few buffers per chunk in flight;
// nothing is staged on disk. Only PostgreSQL's backup_manifest and the
// chunks' file lists, which grow with the number of files, are held until
// the end.
//
// After the stream, BASE_BACKUP returns the end position and timeline;
// the SQL connection then records txid_current_snapshot()'s xmin and xmax
// (metadata hoard-end-xmin and hoard-end-xmax, used to choose a backup for
// an xid recovery target) and the server's now() as the end time.
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
//	                             input_size, result_size and files) and the
//	                             "hoard" block (LSNs, timelines, system id,
//	                             segment size, version, pg_manifest=true)
//	pgdata/global/pg_control
//	pgdata/backup_label
//	pgdata/tablespace_map        when the cluster has tablespaces
//	pgdata/backup_manifest       PostgreSQL's own manifest (hoard's addition)
//	pgdata/pg_wal/ ...           directory entries (0700), archive.ControlEmptyDirs
//
// Its metadata is archive.BackupInfo.ToMetadata: format pghoard-bb-v2, the
// start and end WAL segment names (the end one is the segment holding the
// byte before the end position, as pg_walfile_name names it), start and
// end times, sizes, chunk count, site, host, reason and modes, and hoard's
// hoard-* keys with the exact LSNs and timelines, plus hoard-pg-manifest
// and the end snapshot. Chunks carry format pghoard-bb-v2 and the codec's
// keys; their plaintext size is not known when their upload starts, so
// they carry no original-file-size (the manifest's input_size has it).
//
// # Failure
//
// Any error, or ctx being canceled, aborts the backup on the server (the
// replication connection is closed), fails the chunk upload in progress
// (Put stores nothing), waits for the others, and deletes every chunk
// whose upload began, under a context that outlives ctx.
package basebackup
