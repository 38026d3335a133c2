// Package archive is one site's archive in object storage, in PGHoard's
// layout and format: what is stored where (Layout), how every object is
// encoded (Codec: compress, then the optional pghoa1 envelope, streamed
// through one io.Pipe into storage.Store.Put), and the operations on it.
//
//   - WAL in: PushWAL (archive_command; idempotent, never replaces an
//     archived object with other bytes), PutPartialWAL (the daemon's
//     growing .partial segment), Sync (PGHoard's archive_sync: what the
//     local pg_wal holds and the archive lacks).
//   - WAL out: FetchWAL (restore_command, with a prefetching spool), each
//     file's hash and page header checked before it is delivered.
//   - Listings, moved_from sites included: ListAllBackups, ListWAL,
//     ListHistories; ListBackups keeps to the site itself.
//   - Retention: the function PlanRetention decides from listings alone
//     (pure, tested with golden files); Archive.PlanRetention lists and
//     calls it; ApplyRetention deletes in an order that a crash cannot
//     turn into a listed backup with missing pieces.
//
// WAL file names and page headers are package wal's; archive adds where
// they are stored.
package archive
