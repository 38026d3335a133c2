package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/verify"
	"github.com/hoardbackup/hoard/wal"
)

// The WAL archive check. A segment deleted from the bucket (by someone
// who can write to it, a clean-up script, a lifecycle rule) between a
// kept backup's start and the end of the archive stops every
// point-in-time recovery of that backup there; hoard verify and the
// restore tests find it, but only when someone runs them. The daemon
// looks every WALCheckInterval, from listings and the timeline history
// files: it follows the WAL of every kept backup as verify does
// (verify.CheckContinuityOf: the timelines recovery follows, the end of
// a system's WAL after a pg_upgrade into the site) and reports the
// segments missing before a complete segment stored on the same
// recovery path. No .partial is read (the segment being received would
// be downloaded at every check): a segment missing just before one is
// reported once the segment after it is stored.
//
// What is not stored yet is no gap: WAL after the newest stored segment
// of a backup's path (a backup whose end has not arrived), and the
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
}

// findWALGaps follows the WAL of the site's backups (list: the site's
// listing, of which those whose metadata authenticates,
// archive.Trusted, of every system the site holds) in arch, and returns
// the segments missing before stored WAL on each one's recovery path,
// less those unstored (the names of the segments, complete or .partial,
// waiting in the spool; nil: none) lists after arch's listing, and those
// that cut only backups list no longer returns. An error (a listing or
// read the storage failed, a timeline history that does not read) says
// nothing of the WAL: no gap is reported.
func findWALGaps(ctx context.Context, arch *archive.Archive, list func(context.Context) ([]*archive.BackupInfo, error), unstored func() (map[string]bool, error)) (walGaps, error) {
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
	chains, err := verify.CheckContinuityOf(ctx, arch, bs)
	if err != nil {
		return walGaps{}, err
	}
	cut := map[string][]string{} // missing segment -> backups it cuts
	for i, ch := range chains {
		for _, g := range ch.Gaps {
			if trailing(ch, g) {
				continue
			}
			names, err := ch.Missing(g)
			if err != nil {
				return walGaps{}, err
			}
			for _, n := range names {
				cut[n] = append(cut[n], bs[i].Name)
			}
		}
	}
	if len(cut) == 0 {
		return walGaps{}, nil
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
	if len(cut) > 0 {
		files, err := arch.ListWAL(ctx)
		if err != nil {
			return walGaps{}, err
		}
		for n := range archive.SegmentIndex(files) {
			delete(cut, n)
		}
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
	var g walGaps
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
	for _, b := range bs {
		if cutBackups[b.Name] && !slices.Contains(g.Backups, b.Name) {
			g.Backups = append(g.Backups, b.Name)
		}
	}
	return g, nil
}

// trailing reports whether gap g of ch has no stored WAL of ch's path
// after it: WAL not stored yet (the end of a backup that has not
// arrived), not a gap recovery meets before stored WAL.
func trailing(ch *verify.Chain, g verify.Gap) bool {
	if ch.Newest == "" {
		return true
	}
	last, err1 := wal.ParseSegmentName(g.Last, ch.SegmentSize)
	newest, err2 := wal.ParseSegmentName(ch.Newest[:24], ch.SegmentSize)
	return err1 != nil || err2 != nil || last.No >= newest.No
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
// MetricWALArchiveMissing and the status (wal_archive), with a warning
// when they change. A check the storage (or anything else) kept from
// being made leaves both as the last check left them: it is counted in
// MetricWALArchiveCheckFailures, logged and shown as wal_archive.last_error.
func (s *supervisor) checkWAL(ctx context.Context, arch *archive.Archive) {
	g, err := findWALGaps(ctx, arch, arch.ListBackups, s.spooled)
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
	var first string
	if len(g.Missing) > 0 {
		first = g.Missing[0]
	}
	var before WALArchiveStatus
	s.update(func(st *SiteStatus) {
		if st.WALArchive != nil {
			before = *st.WALArchive
		}
		st.WALArchive = &WALArchiveStatus{CheckedAt: &now, MissingSegments: len(g.Missing), FirstMissing: first, BackupsCut: g.Backups}
	})
	switch {
	case len(g.Missing) > 0 && (first != before.FirstMissing || len(g.Missing) != before.MissingSegments || !slices.Equal(g.Backups, before.BackupsCut)):
		s.log.Warn().Str(logSegment, first).Int("missing", len(g.Missing)).Strs("backups", g.Backups).
			Msg("wal missing from the archive: point-in-time recovery of these backups stops before it; run hoard verify for the gaps, and take a basebackup so that new restores need none of it")
	case len(g.Missing) == 0 && before.MissingSegments > 0:
		s.log.Info().Msg("wal archive whole again: no segment of a kept backup's wal is missing")
	}
}
