package walstream

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// File names in the spool directory.
const (
	// tmpSuffix ended the temporary files of earlier versions (now
	// storage.WriteFileAtomic's): cleanSpool still removes them.
	tmpSuffix = ".tmp"
	// snapshotDir holds the copies of the growing .partial segment that
	// PartialUploadInterval uploads; they are temporary.
	snapshotDir = "partial-upload"
)

// faults injects failures and crashes into the spool's file operations,
// for tests. The zero value injects nothing.
type faults struct {
	// sync, when set, is called before each fsync of a segment file with
	// the file's path; an error it returns stands for fsync's.
	sync func(path string) error
	// write, when set, is called before each write into a segment file
	// with the file's path and the number of bytes written to it and not
	// yet fsynced; an error it returns stands for write's.
	write func(path string, unsynced uint64) error
	// step, when set, is called between the steps of completing a
	// segment, with the step's name and the segment's.
	step func(step, segment string)
	// syncDir, when set, is called before the directory fsync that makes
	// a complete segment's rename durable (completeSegment), with the
	// segment's name; an error it returns stands for that fsync's.
	syncDir func(segment string) error
	// syncNew, when set, is called before the fsyncs that make a newly
	// created segment file durable (openSegment), with the file's path,
	// then with its directory's; an error it returns stands for that
	// fsync's.
	syncNew func(path string) error
	// preallocate, when set, is called before a segment file is
	// preallocated (openSegment), with the file's path; an error it
	// returns stands for preallocate's.
	preallocate func(path string) error
}

// segmentFile is the .partial file of the segment being received. WAL is
// written at its offset in the segment; the file is preallocated to the
// segment size, as pg_receivewal does, so that fsync never has to extend
// the file and a full disk shows up when the segment is opened, not in
// the middle of it.
type segmentFile struct {
	dir     string
	seg     wal.Segment
	segSize uint64
	f       *os.File
	faults  *faults
	// written is the number of bytes from the segment start received in
	// this session; synced is how many of them are fsynced. Bytes beyond
	// written are zeros or left over from an earlier session and are
	// overwritten as the stream goes on.
	written, synced uint64
	// failed is the first write or fsync error. After it nothing more of
	// the file counts as fsynced: Linux reports a lost write once, and a
	// second fsync succeeds whether or not the bytes reached the disk
	// (PostgreSQL PANICs on a failed fsync for this reason,
	// data_sync_retry=off). A failed write leaves the bytes written since
	// the last fsync as uncertain as a failed fsync does. The file must be
	// written again from a new session, which streams the segment from its
	// start: the server still has it, since no flush position past the
	// last successful fsync was reported.
	failed error
}

// name returns the segment's file name without the .partial suffix.
func (s *segmentFile) name() string { return s.seg.Name(s.segSize) }

// path returns the path of the .partial file.
func (s *segmentFile) path() string {
	return filepath.Join(s.dir, s.name()+wal.PartialSuffix)
}

// allocated reports whether the .partial file of seg in dir exists with
// its full size, so that opening it needs no space.
func allocated(dir string, seg wal.Segment, segSize uint64) bool {
	fi, err := os.Stat(filepath.Join(dir, seg.Name(segSize)+wal.PartialSuffix))
	return err == nil && fi.Size() == int64(segSize)
}

// openSegment opens (or creates) the .partial file of seg in dir and makes
// it exactly segSize bytes long. A new file is fsynced, with its directory
// entry, before openSegment returns. When a new file cannot be allocated
// (the error wraps unix.ENOSPC when the disk is full) or either fsync
// fails, it is removed; when it cannot be, the error is fatal.
func openSegment(dir string, seg wal.Segment, segSize uint64, fl *faults) (*segmentFile, error) {
	if fl == nil {
		fl = &faults{}
	}
	s := &segmentFile{dir: dir, seg: seg, segSize: segSize, faults: fl}
	p := s.path()
	_, statErr := os.Stat(p)
	created := errors.Is(statErr, os.ErrNotExist)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	if fl.preallocate != nil {
		err = fl.preallocate(p)
	}
	if err == nil {
		err = preallocate(f, int64(segSize))
	}
	if err != nil {
		f.Close()
		err = fmt.Errorf("preallocate %s: %w", p, err)
		if created {
			// Give back what fallocate may have reserved. A file left
			// would be found by the next open and taken as made durable
			// (see below): the spool cannot be trusted.
			if rerr := os.Remove(p); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				return nil, fatal(fmt.Errorf("%w; remove %s: %w", err, p, rerr))
			}
		}
		return nil, err
	}
	if created {
		var err error
		if fl.syncNew != nil {
			err = fl.syncNew(p)
		}
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			err = fmt.Errorf("sync %s: %w", p, err)
		} else {
			if fl.syncNew != nil {
				err = fl.syncNew(dir)
			}
			if err == nil {
				err = storage.SyncDir(dir)
			}
		}
		if err != nil {
			// A failed fsync is final (see segmentFile.failed): the file
			// and its directory entry may never reach the disk, and a
			// later open would find the file and take it as made durable
			// here. So it goes, and the next open creates it again and
			// fsyncs both; failing that, the spool cannot be trusted.
			f.Close()
			if rerr := os.Remove(p); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				return nil, fatal(fmt.Errorf("%w; remove %s: %w", err, p, rerr))
			}
			return nil, err
		}
	}
	s.f = f
	return s, nil
}

// preallocate makes f exactly size bytes long with its blocks allocated.
// fallocate reserves the space without writing it; where the filesystem
// cannot, zeros are written, as pg_receivewal does.
func preallocate(f *os.File, size int64) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() > size {
		return f.Truncate(size)
	}
	if fi.Size() == size {
		return nil
	}
	err = unix.Fallocate(int(f.Fd()), 0, 0, size)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
		return err
	}
	zeros := make([]byte, 1<<16)
	for off := fi.Size(); off < size; {
		n := min(int64(len(zeros)), size-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// writeAt writes data at offset off of the segment. After a write error
// it fails for good, and so does sync (see failed).
func (s *segmentFile) writeAt(data []byte, off uint64) error {
	if s.failed != nil {
		return s.failed
	}
	var err error
	if s.faults.write != nil {
		err = s.faults.write(s.path(), s.written-s.synced)
	}
	if err == nil {
		_, err = s.f.WriteAt(data, int64(off))
	}
	if err != nil {
		s.failed = fmt.Errorf("write %s: %w", s.path(), err)
		return s.failed
	}
	s.written = max(s.written, off+uint64(len(data)))
	return nil
}

// sync fsyncs what was written since the last sync. After a write or
// fsync error it fails for good (see failed): never fsync again and count
// the bytes as durable.
func (s *segmentFile) sync() error {
	if s.failed != nil {
		return s.failed
	}
	if s.synced == s.written {
		return nil
	}
	var err error
	if s.faults.sync != nil {
		err = s.faults.sync(s.path())
	}
	if err == nil {
		err = s.f.Sync()
	}
	if err != nil {
		s.failed = fmt.Errorf("sync %s: %w", s.path(), err)
		return s.failed
	}
	s.synced = s.written
	return nil
}

// rename closes the fsynced full segment and renames it to its final name.
// The caller fsyncs the directory.
func (s *segmentFile) rename() error {
	if s.failed != nil {
		return s.failed
	}
	if s.synced != s.segSize {
		return fmt.Errorf("complete %s: %d of %d bytes fsynced", s.path(), s.synced, s.segSize)
	}
	if err := s.f.Close(); err != nil {
		s.f = nil
		return fmt.Errorf("close %s: %w", s.path(), err)
	}
	s.f = nil
	if err := os.Rename(s.path(), filepath.Join(s.dir, s.name())); err != nil {
		return fmt.Errorf("rename %s: %w", s.path(), err)
	}
	return nil
}

// close fsyncs and closes the .partial file, which stays in the spool.
func (s *segmentFile) close() error {
	if s.f == nil {
		return nil
	}
	err := s.sync()
	if cerr := s.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", s.path(), cerr)
	}
	s.f = nil
	return err
}

// spoolContents is what a spool directory holds.
type spoolContents struct {
	// uploads are the complete segments and .history files waiting for
	// upload, in upload order (by name: timeline, then position, with a
	// timeline's .history before its segments).
	uploads []string
	// partials are the .partial segments, by name.
	partials []string
}

// newestTimeline returns the highest timeline of a WAL file in c: a
// segment, a .partial or a .history file (written when the stream moved
// to its timeline).
func (c spoolContents) newestTimeline() uint32 {
	var newest uint32
	for _, name := range slices.Concat(c.uploads, c.partials) {
		tli := wal.SegmentTimeline(name)
		if wal.IsHistoryFile(name) {
			tli, _ = wal.ParseHistoryFileName(name)
		}
		newest = max(newest, tli)
	}
	return newest
}

// endedPartials returns the .partial files of c on a timeline below its
// newest (newestTimeline): the last segments of timelines the stream
// left. The stream moves to a timeline, and writes its .history or
// segments, only once the one before ended.
func (c spoolContents) endedPartials() []string {
	newest := c.newestTimeline()
	var ended []string
	for _, name := range c.partials {
		if wal.SegmentTimeline(name) < newest {
			ended = append(ended, name)
		}
	}
	return ended
}

// cleanSpool removes the temporary files an interrupted run left in dir.
func cleanSpool(dir string) error {
	if err := os.RemoveAll(filepath.Join(dir, snapshotDir)); err != nil {
		return fmt.Errorf("clean spool: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("clean spool: %w", err)
	}
	for _, e := range entries {
		if e.Type().IsRegular() && (strings.HasSuffix(e.Name(), tmpSuffix) || storage.IsTempName(e.Name())) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("clean spool: %w", err)
			}
		}
	}
	return nil
}

// readSpool lists the WAL files in dir.
func readSpool(dir string) (spoolContents, error) {
	var c spoolContents
	entries, err := os.ReadDir(dir)
	if err != nil {
		return c, fmt.Errorf("read spool: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case !e.Type().IsRegular():
		case wal.IsSegmentName(name), wal.IsHistoryFile(name):
			c.uploads = append(c.uploads, name)
		case wal.IsPartialName(name):
			c.partials = append(c.partials, name)
		}
	}
	sort.Strings(c.uploads)
	sort.Strings(c.partials)
	return c, nil
}

// spoolPosition is where the spool says streaming should resume.
type spoolPosition struct {
	found bool
	// seg is the segment to stream next: the highest .partial, or the one
	// after the highest complete segment, whichever is later (timeline
	// first, then position).
	seg wal.Segment
}

// resumeSegment finds the segment to resume with from the spool's
// complete segments (queued or not yet deleted) and .partial files.
func resumeSegment(c spoolContents, segSize uint64) (spoolPosition, error) {
	var p spoolPosition
	consider := func(s wal.Segment) {
		if !p.found || s.Timeline > p.seg.Timeline || s.Timeline == p.seg.Timeline && s.No > p.seg.No {
			p = spoolPosition{found: true, seg: s}
		}
	}
	for _, name := range c.uploads {
		if !wal.IsSegmentName(name) {
			continue
		}
		s, err := wal.ParseSegmentName(name, segSize)
		if err != nil {
			return p, fmt.Errorf("spool: %w", err)
		}
		consider(s.Next())
	}
	for _, name := range c.partials {
		s, err := wal.ParseSegmentName(strings.TrimSuffix(name, wal.PartialSuffix), segSize)
		if err != nil {
			return p, fmt.Errorf("spool: %w", err)
		}
		consider(s)
	}
	return p, nil
}

// isEmptyPartial reports whether the .partial at path holds no WAL: its
// first page header is zeros (a file opened ahead of the stream and never
// written).
func isEmptyPartial(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	buf := make([]byte, wal.PageHeaderSize)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	for _, b := range buf[:n] {
		if b != 0 {
			return false, nil
		}
	}
	return true, nil
}

// writeFileAtomic writes data to dir/name as storage.WriteFileAtomic does:
// through an fsynced temporary file, renamed, the directory fsynced. A
// temporary file a crash leaves is removed by cleanSpool.
func writeFileAtomic(dir, name string, data []byte) error {
	return storage.WriteFileAtomic(filepath.Join(dir, name), bytes.NewReader(data), nil)
}
