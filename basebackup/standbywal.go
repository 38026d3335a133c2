package basebackup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
)

// A backup of a standby. pg_backup_stop on a standby (and BASE_BACKUP's
// WAIT there) does not wait for the backup's WAL to be archived unless
// the standby archives it itself (archive_mode = always), and it cannot
// switch WAL segments: the backup ends at the standby's minimum recovery
// point, in the segment its primary is writing (xlogfuncs.c,
// do_pg_backup_stop in xlog.c). With an idle primary nothing completes
// that segment, so a backup reported done would not restore until the
// primary writes more; and with archive_mode = always, where the standby
// does wait, that wait has no end then. Run therefore asks the standby
// never to wait, and unless Options.NoWait or NoStandbyWait waits itself
// after storing a standby's backup until the archive holds its WAL
// through its end: the complete segment, or a .partial holding the end
// (the daemon's copy: wal_partial_upload_interval's, or the one it
// stores for each new backup it sees in the site), which restore reads
// as the end of the archive.

// ErrWALNotArchived is returned (wrapped) by Run when a backup of a
// standby is stored but the archive did not come to hold its WAL within
// Options.WALTimeout. The backup is listed; it restores once its WAL is
// archived.
var ErrWALNotArchived = errors.New("the backup's WAL is not archived yet")

// DefaultWALTimeout is how long Run waits for a standby backup's WAL when
// Options.WALTimeout is zero.
const DefaultWALTimeout = 5 * time.Minute

// walPollInterval is how long Run waits before it lists the archive's WAL
// again while it waits, at first; each wait doubles it, up to
// walPollMax: a listing reads every WAL object's name, which in a large
// archive is many requests.
const (
	walPollInterval = time.Second
	walPollMax      = 15 * time.Second
)

// afterStandbyBackup runs after a backup of a standby is stored: it
// calls Options.OnStandby, then unless Options.NoWait waits for the
// backup's WAL (waitStandbyWAL), or with Options.NoStandbyWait says what
// WAL the backup still needs.
func afterStandbyBackup(ctx context.Context, o Options, log zerolog.Logger, info *archive.BackupInfo) error {
	if o.OnStandby != nil {
		o.OnStandby(info)
	}
	switch {
	case o.NoWait:
		return nil
	case o.NoStandbyWait:
		log.Info().Str("backup", info.Name).Str("lsn", info.EndLSN.String()).Str("segment", info.EndWALSegment).
			Msg("backup of a standby: it restores once the archive holds its WAL through its end (wal_partial_upload_interval stores the segment in progress)")
		return nil
	}
	return waitStandbyWAL(ctx, o, log, info)
}

// waitStandbyWAL waits until the archive holds the WAL of info, a backup
// of a standby, through its end position on its end timeline, or a later
// timeline's WAL (the standby was promoted: the new timeline's segments
// hold the old one's WAL up to the switch): the WAL its recovery reads
// (archive.Archive.BackupWALStored), not WAL of another system on a
// later timeline.
func waitStandbyWAL(ctx context.Context, o Options, log zerolog.Logger, info *archive.BackupInfo) error {
	timeout := o.WALTimeout
	if timeout == 0 {
		timeout = DefaultWALTimeout
	}
	endSeg := info.EndWALSegment
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	logged := false
	for poll := walPollInterval; ; poll = min(2*poll, walPollMax) {
		stored, end, err := o.Archive.BackupWALStored(wctx, info)
		if err == nil && stored {
			log.Info().Str("backup", info.Name).Str("lsn", info.EndLSN.String()).Str("key", end.File).
				Msg("the standby backup's WAL is archived")
			return nil
		}
		if err != nil && wctx.Err() == nil {
			return fmt.Errorf("basebackup: backup %s is stored; list its WAL: %w", info.Name, err)
		}
		if !logged {
			log.Info().Str("backup", info.Name).Str("lsn", info.EndLSN.String()).Str("segment", endSeg).
				Str("at_most", timeout.String()).
				Msg("waiting for the archive to hold the standby backup's WAL through lsn, without which it does not restore: " +
					"a standby cannot end a WAL segment and its primary has not finished this one. " +
					"A hoard daemon streaming this site's WAL stores the segment as a .partial within about a minute; " +
					"otherwise it is archived once the primary finishes it")
			logged = true
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("basebackup: backup %s of a standby is stored, but its WAL up to %s (segment %s) is not archived after %v: %w. "+
				"A standby cannot switch WAL segments, and its primary has not finished that one. "+
				"The backup restores once that WAL is archived: a hoard daemon streaming this site's WAL stores it "+
				"as a .partial within about a minute (is one running, and connected?); otherwise write on the primary "+
				"or run pg_switch_wal() there, or set wal_partial_upload_interval so that the daemon stores the segment "+
				"in progress (--no-wait does not wait)", info.Name, info.EndLSN, endSeg, timeout, ErrWALNotArchived)
		case <-time.After(poll):
		}
	}
}
