package walstream

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pglogrepl"
	"golang.org/x/sys/unix"

	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// This file holds what a session does with the segment it receives:
// writing WAL into it, completing it, opening the next one when the spool
// has room, and fsyncing it before the server hears of it. The rule it
// keeps: at every instant, either a segment is complete under its final
// name (fsynced, its directory fsynced) or the flush position the server
// heard lies before the segment's end.

// write stores XLogData at its offset in the segment, completing segments
// as they fill. WAL must arrive in order, without gaps or overlaps.
func (s *session) write(x pglogrepl.XLogData) error {
	if x.WALStart != s.pos {
		return fmt.Errorf("server sent WAL at %s, expected %s", x.WALStart, s.pos)
	}
	if err := s.writeData(x.WALData); err != nil {
		return err
	}
	s.progressed = true
	pos, now := s.pos, time.Now()
	s.r.update(func(st *Status) {
		st.Received = pos
		st.ServerLSN = max(st.ServerLSN, x.ServerWALEnd)
		s.r.noteArrival(pos, now)
	})
	return nil
}

// writeData writes data at pos. When a segment completes and the next one
// cannot be opened (the spool is full), the rest of data is kept in
// pending, and the receive loop reads nothing more until openNext has
// written it.
func (s *session) writeData(data []byte) error {
	for len(data) > 0 {
		if s.cur == nil {
			s.pending = append(s.pending[:0], data...)
			return nil
		}
		off := uint64(s.pos - s.cur.seg.StartLSN(s.segSize))
		n := min(uint64(len(data)), s.segSize-off)
		if err := s.cur.writeAt(data[:n], off); err != nil {
			return err
		}
		s.pos += pglogrepl.LSN(n)
		data = data[n:]
		if off+n == s.segSize {
			if err := s.completeSegment(); err != nil {
				return err
			}
		}
	}
	return nil
}

// completeSegment makes the full segment durable under its final name,
// queues it, then opens the next one. The order makes a crash at any
// point safe:
//
//  1. fsync the segment. A crash before the rename leaves a full
//     <segment>.partial: the next run streams that segment again from its
//     start. The server still has it, since no flush position at or past
//     its end was reported (flush never reports a full segment's end).
//  2. rename it to its final name, then
//  3. fsync the directory. Only now is the complete segment sure to
//     survive a crash, and only now may the server hear that it is
//     flushed. A crash between 2 and 3 leaves either name, both safe.
//  4. open the next segment's .partial, if the disk guard lets it (see
//     openNext). A crash before leaves no .partial: the next run resumes
//     after the highest complete segment or, once the uploader deleted it,
//     at the slot's restart_lsn, which is at most this segment's end.
//
// An error at 1 or 2 leaves the full .partial, at 3 it is renamed back:
// the session ends, and the next one streams the segment again. After 1
// succeeded, the segment stays the session's (s.cur) when 2 or 3 fails,
// fsynced whole: the session's end stores it as a .partial
// (storeStreamEnd), as it stores any segment in progress, since a
// server that never comes back leaves it the only copy of that WAL.
func (s *session) completeSegment() error {
	dir := s.r.opts.SpoolDir
	done := s.cur
	if err := done.sync(); err != nil {
		return err
	}
	s.step("synced", done.name())
	if err := done.rename(); err != nil {
		return err
	}
	s.cur = nil
	s.step("renamed", done.name())
	var err error
	if s.r.faults.syncDir != nil {
		err = s.r.faults.syncDir(done.name())
	}
	if err == nil {
		err = storage.SyncDir(dir)
	}
	if err != nil {
		// The rename may not be durable: make the segment a .partial
		// again, to be streamed again by the next session. Failing that,
		// the spool cannot be trusted any more.
		if rerr := os.Rename(filepath.Join(dir, done.name()), done.path()); rerr != nil {
			return fatal(fmt.Errorf("%w; rename back: %w", err, rerr))
		}
		s.cur = done
		return err
	}
	s.step("dir-synced", done.name())
	s.flushed = done.seg.Next().StartLSN(s.segSize)
	s.r.enqueue(uploadTask{kind: taskFile, name: done.name()})
	s.r.log.Debug().Str(logSegment, done.name()).Msg("segment complete")
	flushed := s.flushed
	s.r.update(func(st *Status) { st.Flushed = flushed })
	if err := s.openNext(); err != nil {
		return err
	}
	s.step("next-opened", done.name())
	return nil
}

// step tells the faults hook that completing segment reached step.
func (s *session) step(step, segment string) {
	if s.r.faults.step != nil {
		s.r.faults.step(step, segment)
	}
}

// openNext opens the .partial of the segment at pos, which starts there,
// and writes the WAL pending for it. The disk guard is asked first: a new
// segment needs a whole segment of free space, and the guard pauses when
// the spool would keep less than MinFreeBytes. A full disk (ENOSPC) pauses
// too. While paused, the session has no segment, receives nothing and
// reports the old flush position: the server keeps the WAL for the slot.
// The receive loop calls openNext again every DiskCheckInterval.
func (s *session) openNext() error {
	r := s.r
	seg := wal.SegmentOf(uint32(s.tli), s.pos, s.segSize)
	var need uint64
	if !allocated(r.opts.SpoolDir, seg, s.segSize) {
		need = s.segSize
	}
	if r.guard.min != 0 {
		paused, changed, err := r.guard.check(need)
		if err != nil {
			r.log.Warn().Err(err).Msg("free space check failed")
		}
		s.guardChanged(paused, changed)
		if paused {
			return nil
		}
	}
	if r.spoolFull != nil {
		// A write or fsync into a segment file failed with ENOSPC
		// although the file was preallocated: on a copy-on-write file
		// system (btrfs, XFS with reflinks) an overwrite takes new
		// blocks, which fallocate does not reserve. Writing again before
		// a whole segment fits would fail the same way and end the
		// session again, a reconnection for nothing each time: pause
		// until it fits, as for a failed preallocation. A free space
		// that cannot be read does not hold receiving up.
		free, err := r.guard.free()
		if err != nil {
			r.log.Warn().Err(err).Msg("free space check failed")
		}
		if err == nil && free < s.segSize {
			s.pauseFull(r.spoolFull, seg)
			return nil
		}
		r.spoolFull = nil
	}
	f, err := openSegment(r.opts.SpoolDir, seg, s.segSize, &r.faults)
	// A fatal error is never a pause, ENOSPC or not: a new file whose
	// fsync failed and that could not be removed stays in the spool, and
	// the open after the pause would find it and take it as made durable.
	var fe *fatalError
	if errors.Is(err, unix.ENOSPC) && !errors.As(err, &fe) {
		s.pauseFull(err, seg)
		return nil
	}
	if err != nil {
		return err
	}
	s.cur = f
	if s.full {
		s.full = false
		r.log.Info().Msg("spool disk has room again; receiving resumed")
	}
	name, paused := f.name(), r.guard.paused
	r.update(func(st *Status) {
		st.Segment = name
		st.Paused = paused
	})
	if pending := s.pending; len(pending) > 0 {
		s.pending = nil
		return s.writeData(pending)
	}
	return nil
}

// pauseFull pauses receiving at seg, whose file cannot be opened or
// written for a full disk (err), and logs it once a pause.
func (s *session) pauseFull(err error, seg wal.Segment) {
	if s.full {
		return
	}
	s.full = true
	r := s.r
	r.log.Warn().Err(err).Str(logSegment, seg.Name(s.segSize)).Msg("spool disk full; receiving paused")
	r.update(func(st *Status) { st.Paused = true })
}

// guardChanged logs and publishes a change of the disk guard's state.
func (s *session) guardChanged(paused, changed bool) {
	if !changed {
		return
	}
	r := s.r
	loud := r.guard.loud(paused, time.Now())
	switch {
	case paused && loud:
		r.log.Warn().Uint64("min_free_bytes", r.guard.min).Msg("spool disk nearly full; receiving paused (repeats within a minute are logged at debug level)")
	case paused:
		r.log.Debug().Uint64("min_free_bytes", r.guard.min).Msg("spool disk nearly full; receiving paused")
	case loud:
		r.log.Info().Msg("spool disk has room again; receiving resumed")
	default:
		r.log.Debug().Msg("spool disk has room again; receiving resumed")
	}
	full := s.full
	r.update(func(st *Status) { st.Paused = paused || full })
}

// flush fsyncs the partial segment and advances the flush position to
// the end of what is fsynced, short of a full segment's end: only
// completeSegment reports that, once the segment has its final name.
func (s *session) flush() error {
	if s.cur == nil {
		return nil
	}
	if err := s.cur.sync(); err != nil {
		return err
	}
	if s.cur.synced < s.segSize {
		s.flushed = max(s.flushed, s.cur.seg.StartLSN(s.segSize)+pglogrepl.LSN(s.cur.synced))
	}
	flushed := s.flushed
	s.r.update(func(st *Status) { st.Flushed = flushed })
	return nil
}

// completeChecked renames the full segment name, left as
// <name>.partial in dir, to its final name once check accepted the open
// file: it fsyncs the file, renames it and fsyncs the directory.
func completeChecked(dir, name string, check func(*os.File) error) error {
	p := filepath.Join(dir, name+wal.PartialSuffix)
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := check(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", p, err)
	}
	if err := os.Rename(p, filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("rename %s: %w", p, err)
	}
	return storage.SyncDir(dir)
}
