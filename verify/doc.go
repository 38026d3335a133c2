// Package verify answers "is this archive restorable, and to which points
// in time?".
//
// Run checks every basebackup of a site: its control object decodes, its
// manifest parses and it holds pg_control and backup_label as restore
// requires (restore.ReadControl; a backup held in one tar: without Full,
// a PGHoard basic or pipe tar's first member must be backup_label, where
// pg_basebackup writes it; with Full, when its tar is decoded), its
// manifest lists as many chunks as its metadata counts (hoard-chunk-count,
// where recorded), every chunk exists with the recorded size (or, with
// Full, decodes to its recorded size with its integrity checks and is the
// object its recorded HMAC names, when the manifest records one), its
// backup_manifest (PostgreSQL's, in the control tar of hoard's backups)
// reads as restore reads it (without Full in the same read of the
// control object, restore.ReadControlPGManifest; with Full when the
// backup's first chunk is checked, so that verify holds the manifests of
// the backups whose chunks it checks, not of every backup) and, with
// Full, lists every file of the
// backup with the size and CRC-32C found, as restore compares them
// (restore.PGManifestCheck; each backup of an incremental chain with
// its own, which a parent must hold whatever its metadata says, or the
// backups on it are broken: restore.ReadControlPGManifest), and the WAL from the backup's start continues without a
// gap, along the timelines recovery follows (the .history files),
// through the newest stored segment. The Report gives per backup whether it is restorable and how
// far recovery can reach.
//
// RestoreTest goes further: it restores a backup into a scratch directory,
// starts PostgreSQL of the backup's major version on it, lets it replay the
// archive, checks the result (connections, every database, amcheck, page
// checksums), stops it and removes the directory. The daemon runs it on a
// schedule.
//
// CheckContinuity follows one backup's WAL through the archive: hoard
// archive-sync runs it after archive.Archive.Sync has stored what the
// local pg_wal holds and the archive lacks. CheckContinuityOf follows
// several from one listing, for the daemon's periodic WAL archive check.
package verify
