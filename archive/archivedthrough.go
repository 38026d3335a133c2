package archive

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// ErrWALLost is returned (wrapped) by CheckLost for a segment that a
// restore found archived and that the archive no longer holds.
var ErrWALLost = errors.New("archived WAL segment lost since the restore checked it")

// ArchivedThrough is what a restore checked before it wrote anything
// (wal-fetch --archived-through): every segment of the path of timelines
// that leads to Last, from the backup's start up to Last, was stored.
// Recovery asking for one of them and finding none means it was deleted,
// lost or withheld since, not that the archive ends there.
type ArchivedThrough struct {
	Last        wal.Segment
	SegmentSize uint64
}

// copies returns the timelines whose copy of segment req recovery may
// read, when req is one the restore checked: req is at or before Last and
// on path, the history of Last's timeline (req's timeline is one that
// holds its WAL there). PostgreSQL asks for a segment on the newest such
// timeline first, then the older ones (XLogFileReadAnyTLI): a copy on any
// of them means this request is only a probe. nil when req is not one the
// restore checked.
func (at ArchivedThrough) copies(req wal.Segment, path wal.History) []uint32 {
	if req.No > at.Last.No {
		return nil
	}
	tlis := path.Timelines(req.No, at.SegmentSize)
	if !slices.Contains(tlis, req.Timeline) {
		return nil
	}
	return tlis
}

// CheckLost tells what it means that FetchWAL did not find name for the
// recovery of the data directory dataDir, whose restore checked the
// archive through at, and whose pg_control is ctl (the zero
// ClusterControl where it has none: neither its system nor its timeline
// known). nil: the file is simply not archived (the end of the archive,
// or a file PostgreSQL probes for), as wal-fetch answers without at. An error wrapping ErrWALLost: name is a segment the restore
// found archived, on the path recovery follows, and no copy of it that
// recovery could read is stored now; ending recovery there would promote
// the server without the WAL after it. Any other error: the archive could
// not be read to tell.
//
// Only the recovery the restore set up is checked: dataDir holds
// recovery.signal and no standby.signal. A standby takes "not archived"
// as its cue to stream from its primary, and once the restored server has
// promoted, its own timeline's WAL may be in pg_wal only; neither may be
// stopped by what the archive held when the restore ran.
//
// It is called only when a file is missing, so the history of Last's
// timeline is read and the candidate copies are looked up (Stat) only
// then.
func (a *Archive) CheckLost(ctx context.Context, name, dataDir string, ctl ClusterControl, at ArchivedThrough) error {
	if !wal.IsSegmentName(name) || !restoreRecovery(dataDir) {
		return nil
	}
	req, err := wal.ParseSegmentName(name, at.SegmentSize)
	if err != nil {
		return err
	}
	last := at.Last.Name(at.SegmentSize)
	if req.No > at.Last.No || req.Timeline > at.Last.Timeline {
		return nil // not on the path the restore checked: no history needed
	}
	// The cluster's own system: another's history file is refused
	// (checkHistory), or, at or below the cluster's timeline, read as
	// absent (IgnoreUpgradedHistory); unknown (0) without pg_control.
	path, err := a.timelinePath(ctx, at.Last.Timeline, ctl.SystemID, ctl.Timeline)
	if err != nil {
		return fmt.Errorf("check whether %s was archived when the restore checked the WAL through %s: %w", name, last, err)
	}
	tlis := at.copies(req, path)
	if len(tlis) == 0 {
		return nil
	}
	var keys []string
	for _, tli := range tlis {
		seg := wal.Segment{Timeline: tli, No: req.No}.Name(at.SegmentSize)
		for _, s := range a.sites() {
			key := s.Layout.WALKey(seg)
			_, err := s.Store.Stat(ctx, key)
			if err == nil {
				return nil
			}
			if !errors.Is(err, storage.ErrNotFound) {
				return fmt.Errorf("check whether %s is still archived: %w", seg, err)
			}
			keys = append(keys, key)
		}
	}
	return fmt.Errorf("%w: %s was archived when the restore checked the WAL (through %s), and no copy of it is stored now (%s): "+
		"recovery stops here instead of ending early and promoting without the WAL after it; store the segment again "+
		"(hoard archive-sync from the primary's pg_wal, or another copy) and start PostgreSQL again, or, to end recovery "+
		"before it and lose that WAL, remove --archived-through from restore_command",
		ErrWALLost, name, last, strings.Join(keys, ", "))
}

// restoreRecovery reports whether dataDir is in the archive recovery a
// restore sets up: recovery.signal present, standby.signal absent.
// Anything else, or a directory that cannot be read, is not.
func restoreRecovery(dataDir string) bool {
	if _, err := os.Lstat(filepath.Join(dataDir, "recovery.signal")); err != nil {
		return false
	}
	_, err := os.Lstat(filepath.Join(dataDir, "standby.signal"))
	return errors.Is(err, os.ErrNotExist)
}

// timelinePath returns the path of timelines that leads to tli: its
// history (readHistory) as read for system, on timeline on. Timeline 1
// has none: its path is itself; so has one whose history is another
// system's and not above on (IgnoreUpgradedHistory), as for PostgreSQL.
func (a *Archive) timelinePath(ctx context.Context, tli uint32, system uint64, on uint32) (wal.History, error) {
	if tli == 1 {
		return wal.History{{Timeline: 1}}, nil
	}
	h, _, err := a.readHistory(ctx, tli, system)
	if _, ok := errors.AsType[*IgnoredHistoryError](IgnoreUpgradedHistory(err, on)); ok {
		return wal.History{{Timeline: tli}}, nil
	}
	return h, err
}

// readHistory reads the history file of timeline tli from a or, when a
// holds none, the first site it moved from that does, and returns it with
// the file read. The error wraps storage.ErrNotFound when no site holds
// it; the file is then the last one looked for. A file signed for another
// system than system (0: not checked) is refused (checkHistory).
func (a *Archive) readHistory(ctx context.Context, tli uint32, system uint64) (wal.History, WALFile, error) {
	name := wal.HistoryFileName(tli)
	var f WALFile
	for _, s := range a.sites() {
		f = WALFile{Name: name, Key: s.Layout.WALKey(name), Archive: s}
		h, err := f.ReadHistory(ctx, system)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		return h, f, err
	}
	return nil, f, fmt.Errorf("timeline %d: %s is not in the archive: %w", tli, name, storage.ErrNotFound)
}
