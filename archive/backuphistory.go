package archive

import (
	"fmt"
	"strconv"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/wal"
)

// NewerBackupHistories returns a note for each backup history file
// (<segment>.<offset>.backup, which PostgreSQL archives when a backup
// ends, whoever took it) whose start lies after that of every listed
// backup: a backup the listing does not show. Its control object was
// deleted (someone who can write the storage, by hand), or the backup
// failed after the server ended it, or it was never this site's: a backup
// of the same cluster taken by pg_basebackup or for another hoard or
// PGHoard site (its history file still comes through this site's
// archive_command), or of another database system whose archive_command
// stores into this site too. hoard cannot tell which, nor bring a deleted one
// back, but it does not hide it (hoard verify, and restore where it
// chooses the backup): restore without --basebackup restores the newest
// listed backup instead. A file is named by its start
// (segment and offset), read at segSize; none is noted when a listed
// backup records no start LSN (PGHoard's).
func NewerBackupHistories(files []WALFile, backups []*BackupInfo, segSize uint64) []string {
	var newest *BackupInfo
	for _, b := range backups {
		if b.StartLSN == 0 {
			return nil
		}
		if newest == nil || b.StartLSN > newest.StartLSN {
			newest = b
		}
	}
	if newest == nil || segSize == 0 {
		return nil
	}
	var notes []string
	for _, f := range files {
		seg, err := wal.ParseSegmentName(f.Name[:24], segSize)
		if err != nil {
			continue
		}
		off, err := strconv.ParseUint(f.Name[25:33], 16, 32)
		if err != nil || off >= segSize {
			continue
		}
		start := seg.StartLSN(segSize) + pglogrepl.LSN(off)
		if start <= newest.StartLSN {
			continue
		}
		site := "this site"
		if f.Archive != nil && f.Archive.Site != "" {
			site = "site " + f.Archive.Site
		}
		notes = append(notes, fmt.Sprintf("%s records a backup that started at %s on timeline %d, after the newest listed backup %s (started at %s), "+
			"and no listed backup starts there. It is a backup history file, which PostgreSQL archives (here into %s) as any base backup "+
			"of a cluster archiving there ends, whoever takes it: its backup was deleted, or failed after PostgreSQL ended it, or is in "+
			"no site listed here: taken of this cluster by pg_basebackup or for another hoard or PGHoard site, or of another database "+
			"system whose archive_command also stores into %s",
			f.Key, start, seg.Timeline, newest.Name, newest.StartLSN, site, site))
	}
	return notes
}
