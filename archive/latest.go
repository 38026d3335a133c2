package archive

import (
	"context"
	"errors"
	"strconv"

	"github.com/hoardbackup/hoard/storage"
)

// LatestTimeline returns the timeline recovery_target_timeline 'latest'
// reaches from start for the cluster of database system system (0: not
// known), as PostgreSQL's probe (findNewestTimeLine) does through
// wal-fetch: upwards while the next history file exists (has: the
// timelines with one stored, ListHistories), and stopping below another
// system's history file that wal-fetch treats as absent
// (IgnoreOtherHistory: after a pg_upgrade into the same site, the old
// cluster's history files above the upgraded cluster's timeline where it
// has no WAL there; bound to the old system, or in a site without keys
// claiming it: OtherSystemHistories). refused is wal-fetch's refusal of
// the first other system's history file the probe reaches that it does
// not treat as absent (PostgreSQL stops on it), with tli the timeline the
// probe reaches beyond it; nil when there is none. from bounds where
// recovery replays from (a backup's start; zero: no bound).
//
// Restore (its recovery path), verify, and a standby backup's wait for
// its WAL (the WAL its recovery reads) ask it.
func (a *Archive) LatestTimeline(ctx context.Context, has func(tli uint32) bool, start uint32, system uint64, from ReplayStart) (tli uint32, refused error, err error) {
	return a.LatestTimelineWith(ctx, has, a.OtherSystemHistories, a.ListWAL, start, system, from)
}

// OtherHistories is Archive.OtherSystemHistories or an answer of it kept
// (LatestTimelineWith).
type OtherHistories func(ctx context.Context, system uint64, above uint32) ([]*OtherSystemHistoryError, error)

// LatestTimelineWith is LatestTimeline with the other systems' history
// files above start found by others, and the WAL searched for the
// system's own behind one of them listed by files
// (IgnoreOtherHistoryWith), for a caller that judges many backups
// against one listing of the history files and of the WAL and keeps
// their answers, rather than list timeline/, read each later history
// file's metadata and list xlog/ again for each backup.
func (a *Archive) LatestTimelineWith(ctx context.Context, has func(tli uint32) bool, others OtherHistories, files WALFiles, start uint32, system uint64, from ReplayStart) (tli uint32, refused error, err error) {
	tli = start
	for has(tli + 1) {
		tli++
	}
	if tli == start || system == 0 {
		return tli, nil, nil
	}
	found, err := others(ctx, system, start)
	if err != nil {
		return 0, nil, err
	}
	// The probe meets the first of them (by timeline) at or below tli,
	// if any: absent, it stops below it; refused, PostgreSQL stops.
	if len(found) == 0 || found[0].Timeline > tli {
		return tli, nil, nil
	}
	if ierr := a.IgnoreOtherHistoryWith(ctx, files, found[0], start, from); !errors.Is(ierr, storage.ErrNotFound) {
		return tli, ierr, nil
	}
	return found[0].Timeline - 1, nil, nil
}

// RecoveryListing returns what of l the recovery of the cluster of
// database system system, from timeline start (where it replays from:
// from), reads for its .partial tail (StandIn): l without the timelines
// above the one its latest probe reaches (LatestTimeline) where another
// system's history file, treated as absent, stops the probe below the
// history files stored. After a pg_upgrade into the site whose old
// cluster had reached a later timeline than the upgraded one's, the old
// cluster's history file and WAL there no longer keep the upgraded
// cluster's .partial, the end of its WAL, from standing in: its recovery
// never follows that timeline. Otherwise (system not known, no such
// file, one wal-fetch refuses, or the probe stopped by a missing history
// file) l itself: a later timeline's files keep an older one's .partial
// from standing in, as before.
func (a *Archive) RecoveryListing(ctx context.Context, l *WALListing, start uint32, system uint64, from ReplayStart) (*WALListing, error) {
	has := func(tli uint32) bool { _, ok := l.Histories[tli]; return ok }
	top, refused, err := a.LatestTimeline(ctx, has, start, system, from)
	if err != nil {
		return nil, err
	}
	probe := start
	for has(probe + 1) {
		probe++
	}
	if refused != nil || top >= probe {
		return l, nil
	}
	return l.UpTo(top), nil
}

// BackupWALStored reports whether the archive holds the WAL that a
// recovery of b to the latest timeline reads through b's end: the end of
// the stored WAL (WALListing.End, a .partial holding the end included) in
// what of the archive that recovery reads (RecoveryListing, from b's
// system, start timeline and replay start) is at or past b's end LSN on
// its end timeline, or on a later timeline (promoted: the new timeline's
// segments hold the old one's WAL up to the switch). After a pg_upgrade
// into the site whose old cluster had reached a later timeline than the
// upgraded one's, the old cluster's WAL there is another system's, which
// such a recovery never reads: it does not count. end is that WAL end.
// A history file of another system that wal-fetch refuses leaves the
// whole archive, as restore and verify report the refusal.
func (a *Archive) BackupWALStored(ctx context.Context, b *BackupInfo) (stored bool, end WALEnd, err error) {
	l, err := a.ListStoredWAL(ctx)
	if err != nil {
		return false, WALEnd{}, err
	}
	system, _ := strconv.ParseUint(b.SystemID, 10, 64)
	own, err := a.RecoveryListing(ctx, l, b.StartTimeline, system, b.ReplayStart())
	if err != nil {
		return false, WALEnd{}, err
	}
	if end, err = own.End(ctx, b.SegmentSize()); err != nil {
		return false, WALEnd{}, err
	}
	return end.Timeline > b.EndTimeline || end.Timeline == b.EndTimeline && end.LSN >= b.EndLSN, end, nil
}
