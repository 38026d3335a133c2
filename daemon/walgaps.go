package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/restore"
	"github.com/hoardbackup/hoard/verify"
	"github.com/hoardbackup/hoard/wal"
)

// The WAL archive check. A segment deleted from the bucket (by someone
// who can write to it, a clean-up script, a lifecycle rule) between a
// kept backup's start and the end of the archive stops every
// point-in-time recovery of that backup there; hoard verify and the
// restore tests find it, but only when someone runs them. The daemon
// looks every WALCheckInterval, from listings and the timeline history
// files: it follows the WAL of every kept backup (the site's own, and
// those of its moved_from sites whose WAL retention keeps:
// checkedBackups) as verify does
// (verify.CheckContinuityWith: the timelines recovery follows, the end of
// a system's WAL after a pg_upgrade into the site) and reports the
// segments missing before a complete segment stored on the same
// recovery path, naming those stored damaged (a local store's FIFO,
// socket or directory under the name, which no read returns) as such. No .partial is read (the segment being received would
// be downloaded at every check). The listing alone cannot tell a
// segment deleted after its upload, when it was the newest stored, from
// one not stored yet: on a streaming site the receiver can
// (receiverEnd: the end of the complete segments its uploader stored),
// so the segments before that end, on the path of the timeline it
// streams, count as stored WAL too for the backups of its system. The
// path of that timeline is the server's (walEnd.History, from
// TIMELINE_HISTORY), not the archived history file's: a daemon holding
// only the public key, as it should, cannot read that file, so after a
// failover no check could be made; and the server, not an object anyone
// who writes the bucket can replace, is the authority on its history.
//
// What is not stored yet is no gap: WAL after both the newest stored
// segment of a backup's path and the receiver's end (a backup whose end
// has not arrived, the segment being received), and the
// segments waiting in the spool for upload (the uploader stores them in
// order, but the receiver may have moved on to later segments whose
// upload comes after a retried one). The spool is read after the
// listing: a segment that was neither listed nor in the spool then was
// stored in between, and a second listing drops it. Nor is WAL that
// retention deleted with the backups that needed it (after them: a
// backup is unlisted before any of its WAL goes) while the check ran:
// the backups are listed again last, and a segment that cuts only
// backups gone by then is dropped.

// DefaultWALCheckInterval is how often the daemon checks that the WAL of
// the kept backups is stored, when Options.WALCheckInterval is zero.
const DefaultWALCheckInterval = 10 * time.Minute

// walGaps is what a WAL archive check found missing.
type walGaps struct {
	// Missing are the names of the segments missing, each on the
	// timeline recovery would read it from, by position (then timeline).
	Missing []string
	// Backups are the names of the backups whose reach a missing
	// segment cuts, oldest first.
	Backups []string
	// Damaged are those of Missing stored in a state no read returns
	// (archive.WALListing.Damaged: a local store's FIFO, socket or
	// directory under the name), in Missing's order: missing to
	// recovery all the same, but named with what is there.
	Damaged []archive.DamagedWAL
	// DamagedHistory, when not nil, is the first of the kept backups'
	// refusals by restore for a timeline history file stored damaged that
	// PostgreSQL asks for while it recovers them (verify.Chain's
	// DamagedHistory), and Refused the backups so refused, oldest first.
	DamagedHistory error
	Refused        []string
}

// walEnd is how far the daemon's WAL receiver knows the WAL it streams
// is stored: every complete segment before LSN, on the history of
// timeline Timeline of database system System, was stored by its
// uploader or waits in the spool (walstream.Status.Uploaded). The zero
// walEnd knows nothing: a site whose WAL comes through archive_command,
// a receiver that has not started streaming.
type walEnd struct {
	System   uint64
	Timeline uint32
	LSN      pglogrepl.LSN
	// History is Timeline's history as the server gave it
	// (walstream.Status.History); nil on timeline 1 or not known.
	History wal.History
}

// findWALGaps follows the WAL of the site's backups (list: the site's
// listing, checkedBackups, of which those whose metadata authenticates,
// archive.Trusted, of every system the site holds) in arch, and returns
// the segments missing before stored WAL on each one's recovery path
// (chainMissing: a stored segment, or the end of what the receiver
// stored, read before the listing), less those unstored (the names of
// the segments, complete or .partial, waiting in the spool; nil: none)
// lists after arch's listing, and those that cut only backups list no
// longer returns. An error (a listing or
// read the storage failed, a timeline history that does not read) says
// nothing of the WAL: no gap is reported.
func findWALGaps(ctx context.Context, arch *archive.Archive, list func(context.Context) ([]*archive.BackupInfo, error), unstored func() (map[string]bool, error), stored walEnd) (walGaps, error) {
	backups, err := list(ctx)
	if err != nil {
		return walGaps{}, err
	}
	var bs []*archive.BackupInfo
	for _, b := range archive.Trusted(backups) {
		// A backup recording no start (a PGHoard backup of a pipe
		// mode) has no WAL to follow: restore and verify say so.
		if _, err := b.StartSegment(); err == nil {
			bs = append(bs, b)
		}
	}
	if len(bs) == 0 {
		return walGaps{}, nil
	}
	var server restore.ServerHistory
	if stored.System != 0 && len(stored.History) > 0 {
		server = restore.ServerHistory{System: stored.System, Path: stored.History}
	}
	chains, err := verify.CheckContinuityWith(ctx, arch, bs, server)
	if err != nil {
		return walGaps{}, err
	}
	var g walGaps
	for i, ch := range chains {
		if ch.DamagedHistory != nil {
			if g.DamagedHistory == nil {
				g.DamagedHistory = ch.DamagedHistory
			}
			g.Refused = append(g.Refused, bs[i].Name)
		}
	}
	cut := map[string][]string{} // missing segment -> backups it cuts
	for i, ch := range chains {
		names, err := chainMissing(ch, bs[i], stored)
		if err != nil {
			return walGaps{}, err
		}
		for _, n := range names {
			cut[n] = append(cut[n], bs[i].Name)
		}
	}
	if len(cut) == 0 {
		return g, nil
	}
	if unstored != nil {
		spool, err := unstored()
		if err != nil {
			return walGaps{}, err
		}
		for n := range spool {
			delete(cut, n)
		}
	}
	var damaged map[string]archive.DamagedWAL
	if len(cut) > 0 {
		l, err := arch.ListStoredWAL(ctx)
		if err != nil {
			return walGaps{}, err
		}
		for n := range l.Segments {
			delete(cut, n)
		}
		damaged = l.Damaged
	}
	if len(cut) > 0 {
		now, err := list(ctx)
		if err != nil {
			return walGaps{}, err
		}
		listed := map[string]bool{}
		for _, b := range now {
			listed[b.Name] = true
		}
		for n, names := range cut {
			if names = slices.DeleteFunc(names, func(b string) bool { return !listed[b] }); len(names) == 0 {
				delete(cut, n)
			} else {
				cut[n] = names
			}
		}
	}
	cutBackups := map[string]bool{}
	for n, names := range cut {
		g.Missing = append(g.Missing, n)
		for _, b := range names {
			cutBackups[b] = true
		}
	}
	slices.SortFunc(g.Missing, func(a, b string) int {
		if c := strings.Compare(a[8:], b[8:]); c != 0 {
			return c
		}
		return strings.Compare(a[:8], b[:8])
	})
	for _, n := range g.Missing {
		if d, ok := damaged[n]; ok {
			g.Damaged = append(g.Damaged, d)
		}
	}
	for _, b := range bs {
		if cutBackups[b.Name] && !slices.Contains(g.Backups, b.Name) {
			g.Backups = append(g.Backups, b.Name)
		}
	}
	return g, nil
}

// chainMissing returns the names of the segments missing on ch, b's
// chain, before WAL known to be stored, in order: before the newest
// segment stored on its path, and, when the receiver's end (stored)
// speaks of b's recovery path, before that end. What follows is WAL not
// stored yet (the end of a backup that has not arrived, the segments
// waiting for upload, the one being received), no gap recovery meets
// before stored WAL.
func chainMissing(ch *verify.Chain, b *archive.BackupInfo, stored walEnd) ([]string, error) {
	start, err := wal.ParseSegmentName(ch.Start, ch.SegmentSize)
	if err != nil {
		return nil, err
	}
	// Segments before segment number limit are stored, or missing.
	var limit uint64
	if ch.Newest != "" {
		newest, err := wal.ParseSegmentName(ch.Newest[:24], ch.SegmentSize)
		if err != nil {
			return nil, err
		}
		limit = newest.No
	}
	from := start.No // the first number after the newest stored segment
	if ch.Newest != "" {
		from = limit + 1
	}
	if knows(stored, ch, b) {
		limit = max(limit, uint64(stored.LSN)/ch.SegmentSize)
	}
	var names []string
	seen := map[string]bool{}
	add := func(g verify.Gap) error {
		ns, err := ch.Missing(g)
		if err != nil {
			return err
		}
		for _, n := range ns {
			s, err := wal.ParseSegmentName(n, ch.SegmentSize)
			if err != nil {
				return err
			}
			if s.No < limit && !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
		return nil
	}
	for _, g := range ch.Gaps {
		if err := add(g); err != nil {
			return nil, err
		}
	}
	// After the newest stored segment, up to the receiver's end: every
	// segment there is missing (the followed chain records a gap there
	// only up to the backup's end).
	if from < limit {
		first := wal.Segment{Timeline: start.Timeline, No: from}.Name(ch.SegmentSize)
		if err := add(verify.Gap{First: first, Count: limit - from}); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// knows reports whether the receiver's end stored speaks of ch, b's
// chain: the receiver streams b's database system (or b records none,
// as the chain's walk then takes every system's WAL for b's), on the
// timeline recovery of b ends on (whose history the chain follows), and
// b's WAL does not end before it (a system's end after a pg_upgrade).
func knows(stored walEnd, ch *verify.Chain, b *archive.BackupInfo) bool {
	if stored.LSN == 0 || stored.System == 0 || len(ch.Path) == 0 || ch.SystemEnd != nil {
		return false
	}
	if sys, _ := strconv.ParseUint(b.SystemID, 10, 64); sys != 0 && sys != stored.System {
		return false
	}
	return ch.Path[len(ch.Path)-1].Timeline == stored.Timeline
}

// spooled returns the segments in the site's spool (complete ones
// waiting for upload, and .partial ones by their segment's name): WAL
// the daemon has not stored yet. nil for a site that does not stream.
func (s *supervisor) spooled() (map[string]bool, error) {
	if s.site.WAL != WALStream {
		return nil, nil
	}
	entries, err := os.ReadDir(s.site.SpoolDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read spool: %w", err)
	}
	out := map[string]bool{}
	for _, e := range entries {
		if n := e.Name(); len(n) >= 24 && wal.IsSegmentName(n[:24]) {
			out[n[:24]] = true
		}
	}
	return out, nil
}

// checkedBackups returns the listing of the backups whose WAL the check
// follows: the site's own, and those of the sites it moved from
// (moved_from) whose WAL the last retention plan kept. Restore lists
// those with the site's own and reads their WAL (archive.ListAllBackups,
// ListWAL), but retention never deletes them (their sites are read-only
// to it) and, once its policy would, deletes the site's WAL they need
// (archive.ExtraReadOnly): a gap then is retention's, not a deletion
// from the bucket. Until retention has planned once, none of them.
func (s *supervisor) checkedBackups(arch *archive.Archive) func(context.Context) ([]*archive.BackupInfo, error) {
	return func(ctx context.Context) ([]*archive.BackupInfo, error) {
		bs, err := arch.ListAllBackups(ctx)
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		kept := s.walKeptMovedFrom
		s.mu.Unlock()
		return slices.DeleteFunc(bs, func(b *archive.BackupInfo) bool {
			return b.Archive != nil && b.Archive != arch && !kept[b.Key]
		}), nil
	}
}

// noteWALKept records which backups of the sites arch moved from plan
// keeps with their WAL (walKeptMovedFrom).
func (s *supervisor) noteWALKept(arch *archive.Archive, plan archive.RetentionPlan) {
	kept := map[string]bool{}
	for _, k := range plan.Keep {
		if k.Site != "" && k.Site != arch.Site && k.Extra != archive.ExtraReadOnly {
			kept[k.Backup.Key] = true
		}
	}
	s.mu.Lock()
	s.walKeptMovedFrom = kept
	s.mu.Unlock()
}

// receiverEnd returns how far the site's WAL receiver knows the WAL it
// streams is stored (walEnd); zero when the site does not stream or the
// receiver has not resumed yet (nor since the server became another
// database system).
func (s *supervisor) receiverEnd() walEnd {
	recv := s.liveReceiver()
	if recv == nil {
		return walEnd{}
	}
	st := recv.Status()
	sys, _ := strconv.ParseUint(st.SystemID, 10, 64)
	if sys == 0 || st.Timeline <= 0 {
		return walEnd{}
	}
	var h wal.History
	if st.History.Timeline() == uint32(st.Timeline) {
		h = st.History
	}
	return walEnd{System: sys, Timeline: uint32(st.Timeline), LSN: st.Uploaded, History: h}
}

// walChecks checks the WAL of the site's kept backups every
// WALCheckInterval, the first at once, until ctx ends.
func (s *supervisor) walChecks(ctx context.Context, arch *archive.Archive) error {
	for {
		s.checkWAL(ctx, arch)
		t := time.NewTimer(s.d.opts.WALCheckInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// checkWAL checks once that the WAL of the site's kept backups is
// stored (findWALGaps) and records the result: the missing segments in
// MetricWALArchiveMissing, the backups a timeline history file stored
// damaged makes restore refuse in MetricWALArchiveDamagedHistory, and
// both in the status (wal_archive), with a warning when they change, and
// as the alert files AlertWALArchiveGap and AlertTimelineHistoryDamaged. A
// check the storage (or anything else) kept from being made leaves them
// as the last check left them: it is counted in
// MetricWALArchiveCheckFailures, logged and shown as wal_archive.last_error.
func (s *supervisor) checkWAL(ctx context.Context, arch *archive.Archive) {
	// Read before the listing: what it says was stored before the
	// listing began.
	g, err := findWALGaps(ctx, arch, s.checkedBackups(arch), s.spooled, s.receiverEnd())
	if ctx.Err() != nil {
		return
	}
	now := time.Now().UTC()
	if err != nil {
		s.m.walCheckFailures.Add(1)
		s.log.Warn().Err(err).Msg("wal archive check not made (the storage failed, or the archive could not be read): the missing segment count stays as the last check left it")
		s.update(func(st *SiteStatus) {
			// A new value: status() hands out copies sharing the old.
			var w WALArchiveStatus
			if st.WALArchive != nil {
				w = *st.WALArchive
			}
			w.LastError, w.LastErrorAt = err.Error(), &now
			st.WALArchive = &w
		})
		return
	}
	s.m.walMissing.Set(float64(len(g.Missing)))
	s.m.walDamagedHistory.Set(float64(len(g.Refused)))
	// The alert files follow the metrics: only a check made raises or
	// clears them (one an earlier run left goes at the first check made
	// that finds none, on any site).
	s.d.setAlert(AlertWALArchiveGap, s.site.Name, len(g.Missing) > 0)
	s.d.setAlert(AlertTimelineHistoryDamaged, s.site.Name, len(g.Refused) > 0)
	var first string
	if len(g.Missing) > 0 {
		first = g.Missing[0]
	}
	var firstDamaged, damagedErr string
	if len(g.Damaged) > 0 {
		firstDamaged, damagedErr = g.Damaged[0].Key, g.Damaged[0].Err.Error()
	}
	var damagedHistory string
	if g.DamagedHistory != nil {
		damagedHistory = g.DamagedHistory.Error()
	}
	var before WALArchiveStatus
	s.update(func(st *SiteStatus) {
		if st.WALArchive != nil {
			before = *st.WALArchive
		}
		st.WALArchive = &WALArchiveStatus{CheckedAt: &now, MissingSegments: len(g.Missing), FirstMissing: first, BackupsCut: g.Backups,
			DamagedSegments: len(g.Damaged), FirstDamaged: firstDamaged, FirstDamagedError: damagedErr,
			DamagedHistory: damagedHistory, BackupsRefused: g.Refused}
	})
	if damagedHistory != "" && (damagedHistory != before.DamagedHistory || !slices.Equal(g.Refused, before.BackupsRefused)) {
		s.log.Warn().Strs("backups", g.Refused).Str("damaged_history", damagedHistory).
			Msg("timeline history file stored damaged: postgresql asks restore_command for it while it recovers these backups, wal-fetch fails on it " +
				"and hoard restore refuses them (damaged_history: the object, what is there and what to do); move it away and store a good copy " +
				"(a server on that timeline or later holds one in pg_wal), then run hoard verify")
	}
	changed := first != before.FirstMissing || len(g.Missing) != before.MissingSegments || !slices.Equal(g.Backups, before.BackupsCut) ||
		len(g.Damaged) != before.DamagedSegments || firstDamaged != before.FirstDamaged
	switch {
	case len(g.Missing) > 0 && changed && len(g.Damaged) > 0:
		// Not a deletion: someone has to move the entry away before
		// anything can store the segment again.
		s.log.Warn().Str(logSegment, first).Int("missing", len(g.Missing)).Strs("backups", g.Backups).
			Int("stored_damaged", len(g.Damaged)).Str("damaged", firstDamaged).Str("damaged_error", damagedErr).
			Msg("wal missing from the archive, some of it stored damaged (damaged: the first such object, damaged_error: what is there and what to do; no read returns it): " +
				"point-in-time recovery of these backups stops before it; move it away, run hoard verify for the gaps, and take a basebackup so that new restores need none of it")
	case len(g.Missing) > 0 && changed:
		s.log.Warn().Str(logSegment, first).Int("missing", len(g.Missing)).Strs("backups", g.Backups).
			Msg("wal missing from the archive: point-in-time recovery of these backups stops before it; run hoard verify for the gaps, and take a basebackup so that new restores need none of it")
	case len(g.Missing) == 0 && before.MissingSegments > 0:
		s.log.Info().Msg("wal archive whole again: no segment of a kept backup's wal is missing")
	}
}
