package daemon

import (
	"context"
	"time"

	"github.com/hoardbackup/hoard/archive"
)

// A backup of a standby ends in the segment the standby's primary is
// still writing (basebackup/standbywal.go): nothing archives that
// segment until the primary finishes it, hours later on a quiet primary,
// and until then the backup does not restore. The daemon streams that
// WAL itself: after such a backup it asks its WAL receiver to store the
// segment in progress as the .partial at once, whatever
// wal_partial_upload_interval (walstream.Receiver.StoreThrough), the
// object restore, verify and wal-fetch read as the end of the archive.
// A backup it did not take (hoard basebackup --local or --incremental,
// or another host's) it sees when the backup loop lists the backups,
// every minute at most (serveNewestBackupWAL): it asks the same for the
// newest one. That also serves, at start, a request of an earlier run,
// which does not outlive it.

// defaultStandbyWALWait bounds how long the backup loop waits, after a
// backup of a standby, for the receiver to store the backup's WAL
// (supervisor.standbyWALWait); the request holds after it (the receiver
// may be behind, or disconnected), and the receiver stores that WAL as
// soon as it has received it.
const defaultStandbyWALWait = 2 * time.Minute

// standbyWALPoll is how often the wait looks at the receiver's status.
const standbyWALPoll = 200 * time.Millisecond

// storeStandbyWAL has the receiver store the WAL of info, a backup of a
// standby, through its end, and waits up to s.standbyWALWait for it,
// logging the outcome. A backup whose WAL is not stored yet is not a
// failure: taking it again would end in the same segment.
func (s *supervisor) storeStandbyWAL(ctx context.Context, info *archive.BackupInfo) {
	recv := s.liveReceiver()
	if recv == nil {
		return
	}
	recv.StoreThrough(info.EndLSN)
	wctx, cancel := context.WithTimeout(ctx, s.standbyWALWait)
	defer cancel()
	t := time.NewTicker(standbyWALPoll)
	defer t.Stop()
	for {
		st := recv.Status()
		if st.Stored >= info.EndLSN {
			s.log.Info().Str(logBackup, info.Name).Str("lsn", info.EndLSN.String()).Str("segment", info.EndWALSegment).
				Msg("the standby backup's WAL is stored through its end: it restores")
			return
		}
		select {
		case <-wctx.Done():
			if ctx.Err() == nil {
				s.log.Warn().Str(logBackup, info.Name).Str("lsn", info.EndLSN.String()).Str("segment", info.EndWALSegment).
					Str("received", st.Received.String()).Str("stored", st.Stored.String()).Bool("connected", st.Connected).
					Int64("waited_ms", s.standbyWALWait.Round(time.Millisecond).Milliseconds()).
					Msg("the standby backup's WAL is not stored through its end yet, and until it is the backup does not restore: " +
						"the WAL receiver stores that segment as a .partial as soon as it has received the WAL through lsn. " +
						"If connected is false, see why the daemon cannot stream from the standby (its log, hoard check); " +
						"if received stays below lsn, the standby is not sending WAL (is it replaying its primary?); " +
						"if received passed lsn and stored did not, the uploads fail (see the upload errors in this log)")
			}
			return
		case <-t.C:
		}
	}
}

// serveNewestBackupWAL runs each time the backup loop lists the backups:
// it asks the receiver to store the WAL through the latest end of the
// backups of the site's system (archive.TrustedOfSystem) that the server
// has reached, when the receiver has not stored it yet: a backup the
// daemon did not take, or a request of an earlier run. Storing through
// that end stores the WAL of every earlier one. It asks once per end (the
// receiver keeps a request until it is served), and not for the daemon's
// own backups (supervisor.walAsked): a standby's it asked for already,
// and a primary's ends with a segment switch, which completes the
// segment. An end beyond the server's position (a planted backup's
// claim) is ignored, and does not hide the backups before it: no WAL
// would serve it, and the daemon does not wait for one.
func (s *supervisor) serveNewestBackupWAL(ctx context.Context, backups []*archive.BackupInfo) {
	recv := s.liveReceiver()
	if recv == nil {
		return
	}
	st := recv.Status()
	reached := max(st.ServerLSN, st.Received)
	var last *archive.BackupInfo
	for _, b := range archive.TrustedOfSystem(backups, s.systemID(ctx)) {
		if b.EndLSN <= reached && (last == nil || b.EndLSN > last.EndLSN) {
			last = b
		}
	}
	if last == nil || last.EndLSN == s.walAsked || last.EndLSN <= st.Stored {
		return
	}
	s.walAsked = last.EndLSN
	s.log.Info().Str(logBackup, last.Name).Str("lsn", last.EndLSN.String()).Str("segment", last.EndWALSegment).
		Str("stored", st.Stored.String()).Msg("the newest backup's WAL is not stored through its end: the WAL receiver stores it once received")
	recv.StoreThrough(last.EndLSN)
}
