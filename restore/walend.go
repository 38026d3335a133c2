package restore

import (
	"context"
	"slices"

	"github.com/hoardbackup/hoard/archive"
)

// WALEnd returns where the stored WAL of a (with the sites it moved from)
// that a restore now reaches ends, as hoard verify reports it (its
// wal_end): the archive's WAL end (archive.WALListing.End) on the
// timelines up to the last of the recovery path (RecoveryPath, latest) of
// the newest of backups (oldest first) whose path reads and does not fork
// before its end and whose metadata is not altered; the archive's WAL end
// when there is none. After a pg_upgrade into the site whose old cluster
// had reached a later timeline than the upgraded one's, the old cluster's
// WAL there (its history files another system's, absent to the upgraded
// cluster's recovery) is not where the site's WAL ends now. A backup whose
// path does not read (a missing, damaged or refused history file; the
// storage failing) is passed over, as verify passes it over: verify names
// why. segSize is the WAL segment size.
func WALEnd(ctx context.Context, a *archive.Archive, backups []*archive.BackupInfo, segSize uint64) (archive.WALEnd, error) {
	l, err := a.ListStoredWAL(ctx)
	if err != nil {
		return archive.WALEnd{}, err
	}
	for _, b := range slices.Backward(backups) {
		if b.Auth == archive.AuthInvalid {
			continue
		}
		path, err := RecoveryPath(ctx, a, b, "latest")
		if ctx.Err() != nil {
			return archive.WALEnd{}, ctx.Err()
		}
		if err == nil {
			return l.UpTo(path.Timeline()).End(ctx, segSize)
		}
	}
	return l.End(ctx, segSize)
}
