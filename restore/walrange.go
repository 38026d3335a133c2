package restore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/wal"
)

// ErrDamagedWAL is returned (wrapped) when a WAL segment PostgreSQL must
// replay before the restored cluster is consistent is listed but cannot
// be read or fails the checks wal-fetch makes before it delivers one:
// recovery would stop there with the data directory written. A storage
// that fails mid-read is not told apart from a damaged object here.
var ErrDamagedWAL = errors.New("WAL segment the backup needs is damaged")

// walCheckParallel bounds the WAL segments downloaded at once beside the
// chunks: a few, so that they do not take the chunks' bandwidth.
const walCheckParallel = 2

// rangeFiles returns the archived segments of b's consistency range, from
// its start segment to LastSegment, each on the timeline of path
// checkWALGap found it on (the first of path.Timelines that is archived).
// A segment not archived (the .partial that ends the archive stands in
// for it, read by PartialTailOf) and the segments in accepted (checked by
// checkAccepted) are left out.
func rangeFiles(w walIndex, b *archive.BackupInfo, path wal.History, accepted []AcceptedSegment) ([]archive.WALFile, error) {
	segSize := b.SegmentSize()
	start, err := wal.ParseSegmentName(b.StartWALSegment, segSize)
	if err != nil {
		return nil, fmt.Errorf("backup %s: start segment: %w", b.Name, err)
	}
	end, err := LastSegment(b, start)
	if err != nil {
		return nil, err
	}
	var files []archive.WALFile
	for no := start.No; no <= end; no++ {
		for _, tli := range path.Timelines(no, segSize) {
			name := wal.Segment{Timeline: tli, No: no}.Name(segSize)
			src := w[name]
			if src == nil {
				continue
			}
			if !slices.ContainsFunc(accepted, func(a AcceptedSegment) bool { return a.Segment == name }) {
				files = append(files, archive.WALFile{Name: name, Key: src.Layout.WALKey(name), Archive: src})
			}
			break
		}
	}
	return files, nil
}

// walCheck is the check of a backup's consistency range (rangeFiles) that
// runs while the data directory is written: Run starts it once the
// directories are prepared and waits for it before pg_control is
// written.
type walCheck struct {
	done chan struct{}
	kept []string
	err  error
}

// startWALCheck downloads and checks the segments of b's consistency
// range (archive.Archive.CheckWAL) in the background. When wal-fetch is
// the restore_command and takes segments from its prefetch spool
// (WALFetch.Spool), the checked segments are kept in the spool of the
// target's pg_wal, as many as leave the target's file system, once the
// backup is written, at least as much free as they take (walRoom):
// wal-fetch then delivers them without a second download. cancel is
// called with the error of a segment that fails its checks, so that the
// restore stops writing at once.
func (o *Options) startWALCheck(ctx context.Context, log zerolog.Logger, files []archive.WALFile, b *archive.BackupInfo, backups []*archive.BackupInfo, space *restoreSpace, cancel context.CancelCauseFunc) *walCheck {
	c := &walCheck{done: make(chan struct{})}
	co := archive.CheckWALOptions{SystemID: BackupSystem(b), Parallel: walCheckParallel}
	switch {
	case o.RestoreCommand != "" || o.WALFetch == nil || !o.WALFetch.Spool:
	case o.WALDir != "":
		// The target's pg_wal links to it (linkWAL), which exists.
		co.Spool = filepath.Join(o.WALDir, archive.SpoolDirName)
		co.Room = walRoom(space, b.SegmentSize())
	default:
		// pg_wal is made now, in the prepared target, for the spool;
		// the extractor finds it and sets its mode. A failure only
		// costs the second download.
		if err := mkdirIn(o.TargetDir, "pg_wal"); err != nil {
			log.Warn().Err(err).Msg("checked wal not kept for wal-fetch")
		} else {
			co.Spool = filepath.Join(o.TargetDir, "pg_wal", archive.SpoolDirName)
			co.Room = walRoom(space, b.SegmentSize())
		}
	}
	go func() {
		defer close(c.done)
		c.kept, c.err = o.Archive.CheckWAL(ctx, files, co)
		if c.err != nil && ctx.Err() == nil {
			c.err = damagedWAL(o.Archive, c.err, b, backups)
			cancel(c.err)
		}
		if c.err == nil {
			log.Info().Int("segments", len(files)).Int("spooled", len(c.kept)).Msg("backup's wal checked")
		}
	}()
	return c
}

// wait waits for the check and returns its error.
func (c *walCheck) wait() error {
	<-c.done
	return c.err
}

// walRoom returns how many segments of segSize the spool in the target's
// pg_wal may keep: half of what the target's file system has free beyond
// the part of the backup restored there, the prefetch worker's rule
// (archive's spool.room), so that the restore and the recovery that
// follows keep room to write.
func walRoom(space *restoreSpace, segSize uint64) int {
	if space == nil || space.wal == nil || segSize == 0 {
		return 0
	}
	f := space.wal // pg_wal's: the target's, or the WAL directory's
	need := f.need
	if !space.split && f.data {
		need = space.need
	}
	spare := f.free - need
	if spare <= 0 {
		return 0
	}
	return int(uint64(spare) / 2 / segSize)
}

// damagedWAL says which segment of b's consistency range failed, why,
// and what to do next. The same WAL serves every restore to a point after
// it, from b or from an older backup: only a good copy of it helps there.
// An older backup of backups that ends before the segment (the newest
// such, named) can be restored to a point before it. Where a (the
// archive restored from) has moved_from sites, the object is named with
// the site that holds it (Archive.InSite).
func damagedWAL(a *archive.Archive, err error, b *archive.BackupInfo, backups []*archive.BackupInfo) error {
	older := "an older backup (hoard list shows them) with --basebackup NAME"
	where := ""
	if ce, ok := errors.AsType[*archive.WALCheckError](err); ok {
		if in := a.InSite(ce.File.Archive); in != "" {
			where = fmt.Sprintf(" (object %s%s)", ce.File.Key, in)
		}
		if seg, perr := wal.ParseSegmentName(ce.File.Name, b.SegmentSize()); perr == nil {
			at := seg.StartLSN(b.SegmentSize())
			older = "no older backup ends before it"
			for _, x := range slices.Backward(backups) {
				if x.Name != b.Name && BackupSystem(x) == BackupSystem(b) && backupEndLSN(x) <= at {
					older = fmt.Sprintf("backup %s ends before it: --basebackup %s with --target-lsn (or --target-time) before %s restores the state up to there", x.Name, x.Name, at)
					break
				}
			}
		}
	}
	// A storage that did not answer reads here as a damaged object does
	// (the codec wraps a cut read in its own errors): the advice covers
	// both.
	return fmt.Errorf("backup %s: a WAL segment PostgreSQL must replay before the restored cluster is consistent cannot be read "+
		"or fails the checks wal-fetch makes before it delivers one%s: %w; recovery would stop there with the data directory written. "+
		"If the storage did not answer, run again once it answers. If the segment is damaged: every restore to a later point "+
		"replays it, from this backup or an older one; store a good copy of it (hoard archive-sync from the primary's pg_wal, "+
		"or another copy) and run again; %s: %w",
		b.Name, where, err, older, ErrDamagedWAL)
}

// mkdirIn makes the directory name in dir, resolved in dir (no link
// followed), unless it exists.
func mkdirIn(dir, name string) error {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := r.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}
