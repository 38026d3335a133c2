// Package replication speaks PostgreSQL's streaming replication protocol
// over a physical replication connection (replication=true): everything
// hoard needs from a server without running PostgreSQL's client tools.
//
// It builds on pgx's pgconn for the connection and the message layer, and
// on pglogrepl for the LSN type and the XLogData and keepalive decoders.
// Where pglogrepl falls short (BASE_BACKUP's PostgreSQL 15 form, the
// tablespace size column, CREATE_REPLICATION_SLOT ... RESERVE_WAL, flush
// positions reported as given) the messages are read and written here.
//
// A BASE_BACKUP's archive bytes do not go through pgx: a reader under
// pgx's Frontend (the framer) follows the message boundaries while a
// backup runs, so that pgx never holds part of the next message, and
// BaseBackup.Read takes each CopyData payload from the connection straight
// into its caller's buffer. Every other message is still received and
// decoded by pgx; outside a backup the framer passes reads through.
//
// # Commands
//
// IDENTIFY_SYSTEM, SHOW, TIMELINE_HISTORY, CREATE_REPLICATION_SLOT,
// DROP_REPLICATION_SLOT, READ_REPLICATION_SLOT (PostgreSQL 15+, with a SQL
// fallback before), BASE_BACKUP and START_REPLICATION; see
// https://www.postgresql.org/docs/current/protocol-replication.html.
//
// # BASE_BACKUP: two wire forms
//
// The server first sends two ordinary result sets in both forms: the start
// position and timeline, then one row per tablespace (spcoid, spclocation,
// size in kB or NULL without PROGRESS). The main data directory is the row
// with NULL oid and location, and comes last. What follows depends on the
// server version:
//
// Before PostgreSQL 15 (options as bare keywords: BASE_BACKUP LABEL 'x'
// PROGRESS FAST NOWAIT MAX_RATE n TABLESPACE_MAP MANIFEST 'yes'), one
// CopyOutResponse per tablespace, in the order of the list, each a raw tar
// stream "except that the two trailing blocks of zeroes specified in the
// standard are omitted" (PostgreSQL 13 protocol documentation); then, with
// MANIFEST 'yes', one more CopyOutResponse holding backup_manifest. See
// https://www.postgresql.org/docs/13/protocol-replication.html.
//
// From PostgreSQL 15 (options in parentheses: BASE_BACKUP (LABEL 'x',
// PROGRESS, CHECKPOINT 'fast', WAIT false, MAX_RATE n, TABLESPACE_MAP,
// MANIFEST 'yes')), a single CopyOutResponse whose CopyData messages begin
// with a type byte: 'n' starts an archive (archive name and tablespace
// path, NUL-terminated; the path is empty for the main data directory),
// 'd' carries archive or manifest data, 'p' reports progress (int64 bytes
// done), 'm' starts the manifest. The server now ends each tar with the
// end-of-archive marker itself (src/backend/backup/basebackup.c,
// "Properly terminate the tarfile"). See
// https://www.postgresql.org/docs/15/protocol-replication.html.
//
// In both forms the end position and timeline follow as a last result set.
// BaseBackup hides the difference: NextArchive walks the archives, Read
// yields each one's bytes (every tar stream complete, trailer included, in
// both forms), Finish returns the end position. Nothing is buffered beyond
// one protocol message. Unlike pg_basebackup, nothing is injected into the
// archives (no recovery configuration, no backup_manifest in the tar): the
// manifest is its own archive.
//
// # START_REPLICATION
//
// StartReplication enters COPY BOTH mode; ReceiveMessage returns XLogData
// and keepalives; SendStandbyStatus reports write, flush and apply
// positions exactly as given, so a receiver reports as flushed only what it
// has fsynced. At the end of a historic timeline the server leaves COPY
// mode and names the next timeline and its switch point: ReceiveMessage
// answers and returns an *EndOfTimeline, after which the connection takes
// commands again (TIMELINE_HISTORY, then START_REPLICATION on the next
// timeline).
//
// # Errors
//
// Connect wraps ErrAuthentication, ErrNotPermitted or ErrUnreachable
// around connection failures. Server errors keep their *pgconn.PgError in
// the chain. Slot errors wrap ErrSlotExists and ErrSlotNotFound. Protocol
// violations wrap ErrProtocol.
package replication
