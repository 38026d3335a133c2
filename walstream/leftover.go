package walstream

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/hoardbackup/hoard/replication"
	"github.com/hoardbackup/hoard/wal"
)

// This file stores the segment in progress that a run killed without its
// stop path (kill -9, the OOM killer, a host that rebooted) left in the
// spool, when the next run cannot stream. That run received and fsynced
// WAL into <segment>.partial and reported it flushed, so the server may
// have recycled it; nothing stored it (the stream end's copy and the
// stop's are that run's, and died with it; PartialUploadInterval may be
// off). With the server reachable, the next run streams the segment
// again from its start, as always. If the server is gone for good (its
// host died while the daemon was down: the disaster backups are for), the
// last commits exist only in the spool, and a restore would lose them
// although hoard had them on disk.
//
// So Run notes the newest .partial of the spool at its start (leftover),
// unless it adopted the copy the previous Run handed over
// (Options.StreamEnd, whose length that Run knew). When a session ends
// before any WAL arrived because no server answered (the first
// connection attempt, or any retry while the server stays unreachable),
// or Run stops first, the leftover becomes this Run's stream end's
// copy, as if its own session had ended there: queued after the spool's
// complete segments, retried with the stream end's backoff while not
// connected (retryStreamEnd), stored at Run's stop within DrainTimeout,
// handed over by a restart in place (PendingStreamEnd), and replaced by
// the copy of a session that streams. A server that answers but does not
// stream yet keeps it waiting (leftoverAfter). Once a session received
// WAL it is forgotten: that session rewrote the segment, and its own
// stream end stores it, as far as the file's valid WAL goes if the
// session received less of it again (spoolWAL: the server died again).
//
// How much of the file to store. The dead run knew how many bytes it
// fsynced; the file does not say (it is preallocated to the segment
// size; past the WAL it holds zeros, or, after a power loss, a torn
// tail of writes that never reached the disk). Persisting that length
// beside the spool at each flush would cost a second fsync per status
// update on the receive path; instead the file is read once, here, as
// PostgreSQL's own recovery reads a segment (wal.RecordEnd, xlogreader.c):
// the first page header must be this segment's (wal.CheckSegment: its
// address, timeline and sizes), every later page must carry its own
// address (so pages left from another segment, as in a recycled file,
// end the walk), and each record must have a valid CRC-32C and name the
// record before it (xl_prev). The copy ends at the end of the last such
// record. It may hold WAL the dead run wrote and never fsynced, or never
// reported flushed: every record in it passed those checks, so it is the
// server's WAL, which PostgreSQL would replay from pg_wal just the same.
// The bytes need not be on this disk to be worth storing, so the file is
// not fsynced first; a copy read before a power loss and one read after
// differ only in how far the valid records go.
//
// The stored copy never goes backwards: the Uploader replaces a stored
// .partial only by one that holds more of the same WAL (a longer stored
// copy that starts with this one's bytes counts as stored, Stale), as for
// every stream end's copy. When the server comes back, streaming resumes
// at the segment's start as always, and once the segment is complete its
// upload deletes the .partial object.

// queueSpool queues the files an earlier run left in the spool listing
// c, in segment order (the order of their names: timeline, then
// position, a timeline's .history before its segments): the complete
// segments and .history files, and the .partial files of ended timelines
// (endedPartials), whether or not a server answers. An ended timeline's
// .partial is final: the stream left that timeline (switchTimeline fsyncs
// it whole first) and never writes it again, so it is stored whole as
// queuePartials stores it once a session knows the server's timeline.
// Before, only a session queued it: after a crash at or past a timeline
// switch (the server promoted while the daemon was down), with the server
// gone for good, the old timeline's last WAL stayed in the spool.
func (r *Receiver) queueSpool(c spoolContents) {
	names := slices.Concat(c.uploads, c.endedPartials())
	slices.Sort(names)
	for _, name := range names {
		if !wal.IsPartialName(name) {
			r.enqueueWritten(uploadTask{kind: taskFile, name: name})
			continue
		}
		if err := r.finishPartial(name); err != nil {
			r.log.Error().Err(err).Str(logSegment, name).
				Msg("cannot read the last segment of an ended timeline in the spool; it is stored once a session starts")
			r.setError(errStream, err)
		}
	}
}

// noteLeftover remembers the .partial of the spool listing c that the
// previous run was receiving, unless this Run adopted that run's own copy
// (adoptStreamEnd, called first): the newest .partial (timeline, then
// position: the order of the names) that holds WAL, when no complete
// segment is as new and its timeline did not end (queueSpool stores it
// then).
//
// Newer .partial files of the same timeline that hold none (their first
// page header is zeros) are passed over: earlier hoard versions opened
// the next segment's file, preallocated with zeros, before they renamed
// the finished one complete, so a crash in between left the finished
// segment as <segment>.partial, the last WAL that run received, with an
// empty .partial after it (see repairSpool, which completes or streams
// it again when a server answers). Without a server, that file is the
// leftover: its valid WAL is stored as its .partial, by the same rules
// as any leftover (validWAL, never shorter than the stored copy); the
// complete segment supersedes it once the server is back. A newer file
// that holds WAL is the one the run was receiving, in any version.
//
// The .partial files below the leftover on its timeline are noted too
// (below): full segments an earlier version left behind as .partial
// when its rename failed and it went on into the next segment
// (repairSpool's case). That version had fsynced them whole and went on
// to report the WAL after them flushed, so the server may have recycled
// them; storeLeftover completes them first (completeBelow), or else the
// leftover's copy would be stored behind a hole that only the spool
// could fill, and a restore would stop before it.
func (r *Receiver) noteLeftover(c spoolContents) {
	if r.PendingStreamEnd().Name != "" {
		return
	}
	p, below := leftoverIn(r.opts.SpoolDir, c)
	if p == "" {
		return
	}
	r.leftover = p
	r.held = StreamEnd{Name: p}
	r.earlier = StreamEnd{Name: p}
	r.below = below
}

// leftoverIn returns the .partial of the spool dir listing c that a run
// was receiving when it ended (noteLeftover), "" when none, with the
// .partial files below it on its timeline.
func leftoverIn(dir string, c spoolContents) (p string, below []string) {
	if len(c.partials) == 0 {
		return "", nil
	}
	i := len(c.partials) - 1
	p = c.partials[i]
	if wal.SegmentTimeline(p) < c.newestTimeline() {
		return "", nil
	}
	for ; i > 0 && wal.SegmentTimeline(c.partials[i-1]) == wal.SegmentTimeline(p); i-- {
		empty, err := isEmptyPartial(filepath.Join(dir, c.partials[i]))
		if err != nil || !empty {
			// One that cannot be read is the leftover: storeLeftover
			// reports why.
			break
		}
	}
	p = c.partials[i]
	for _, name := range c.uploads {
		if wal.IsSegmentName(name) && name >= p[:24] {
			return "", nil
		}
	}
	for _, name := range c.partials[:i] {
		if wal.SegmentTimeline(name) == wal.SegmentTimeline(p) {
			below = append(below, name)
		}
	}
	return p, below
}

// leftoverAfter deals with the leftover after a session that ended with
// err, having received WAL (progressed) or not, by Run's stop
// (stopping) or not. A session that received WAL rewrote the segment and
// stores it itself: the leftover is forgotten. A session that found no
// server (replication.ErrUnreachable), or Run's stop, stores it as the
// stream end's copy. So does a fatal error after which the spool's WAL is
// still the server's and the server no longer has it or never streams it
// again (keepsSpoolWAL: the slot was dropped or invalidated while no run
// held it, ErrWALRemoved; the server was restored to an earlier point,
// ErrOtherHistory): every next start would end the same way, so the
// spool's file is the WAL's only copy, and Run stores it before it
// returns the error. Any other fatal error (the spool, or another server
// or system) stores nothing and forgets it. Any other end keeps it for
// the next session: a server that answers still holds the WAL for the
// slot, and streams it again soon (a restart right after a crash may find
// the slot still active for the dead run's walsender), so the copy is not
// stored for nothing.
func (r *Receiver) leftoverAfter(progressed bool, err error, stopping bool) {
	name, below := r.leftover, r.below
	var fe *fatalError
	switch {
	case name == "":
	case progressed:
		r.leftover, r.below = "", nil
	case keepsSpoolWAL(err):
		r.leftover, r.below = "", nil
		r.completeBelow(below)
		r.storeLeftover(name, err)
	case errors.As(err, &fe):
		r.leftover, r.below = "", nil
	case stopping, errors.Is(err, replication.ErrUnreachable):
		r.leftover, r.below = "", nil
		r.completeBelow(below)
		r.storeLeftover(name, nil)
	}
}

// completeBelow completes the full segments an earlier version left as
// .partial below the leftover (names, noted by noteLeftover), in order,
// and queues each ahead of the leftover's copy, when no session will
// (no server answers, Run stops, or the server can no longer stream
// them: keepsSpoolWAL): a file that is a whole segment of valid WAL
// (wholeWAL) is fsynced and renamed complete, as repairSpool does once
// a server answers and its slot is past it. A file already gone was
// completed by a session (repairSpool); one that holds no WAL is left
// alone. One that is not whole is not stored: it stays in the spool, as
// it is, for a session to stream again, and the error is logged and
// kept in Status; the leftover's copy is stored all the same.
func (r *Receiver) completeBelow(names []string) {
	for _, name := range names {
		p := filepath.Join(r.opts.SpoolDir, name)
		empty, err := isEmptyPartial(p)
		if errors.Is(err, os.ErrNotExist) || err == nil && empty {
			continue
		}
		if err == nil {
			err = completeFull(r.opts.SpoolDir, name, 0)
		}
		if err != nil {
			r.log.Error().Err(err).Str(logSegment, name).
				Msg("a full segment an earlier version left as .partial is not whole; it stays in the spool and is streamed again once the server answers")
			r.setError(errStream, err)
			continue
		}
		r.log.Warn().Str(logSegment, name[:24]).Msg("a full segment was left as .partial; completed it")
		r.enqueueWritten(uploadTask{kind: taskFile, name: name[:24]})
	}
}

// completeFull renames the .partial name in dir complete when it is a
// whole segment of valid WAL (wholeWAL) of segSize bytes, or of the size
// its first page header gives when segSize is 0 (no server told it).
func completeFull(dir, name string, segSize uint64) error {
	return completeChecked(dir, name[:24], func(f *os.File) error { return wholeWAL(f, name, segSize) })
}

// wholeWAL checks that the file f, the .partial name, is a whole
// segment of WAL, as recovery reads it (wal.RecordEnd, as validWAL
// does): segSize bytes, the segment size its first page header gives
// (any, when segSize is 0: no server told it), and valid records from
// its first page to its last, the last one continued in the next
// segment, or up to an XLOG_SWITCH record, after which PostgreSQL leaves
// the rest of the segment without WAL (zeros, page headers included: a
// check that wants every page's header refuses such a segment, as
// repairSpool's did). A record whose CRC fails is refused too, where a
// page check would store it.
func wholeWAL(f *os.File, name string, segSize uint64) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	hdr := make([]byte, wal.PageHeaderSize)
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, wal.PageHeaderSize), hdr); err != nil {
		return fmt.Errorf("%w: read the first page header of %s: %v", wal.ErrBadPageHeader, name, err)
	}
	h, err := wal.CheckSegment(name, hdr, fi.Size())
	if err != nil {
		return err
	}
	if segSize == 0 {
		segSize = uint64(h.SegmentSize)
	}
	if uint64(fi.Size()) != segSize || uint64(h.SegmentSize) != segSize {
		return fmt.Errorf("%s: %d bytes, its header says segments are %d bytes, want %d", name, fi.Size(), h.SegmentSize, segSize)
	}
	var rec wal.RecordEnd
	if _, err := io.Copy(&rec, io.NewSectionReader(f, 0, fi.Size())); err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if rec.Stopped() && !rec.Switched() {
		return fmt.Errorf("%s: no valid WAL record at offset %d, before the end of the segment (the last valid record ends at %d)", name, rec.Stop(), rec.End())
	}
	return nil
}

// storeLeftover queues the valid WAL of the leftover .partial name as
// the stream end's copy: a failed copy is queued again by
// retryStreamEnd. cause is the fatal error that keeps streaming from
// resuming (keepsSpoolWAL), nil when no server answered or Run stops;
// with a cause, what is stored is logged at Error, with why.
func (r *Receiver) storeLeftover(name string, cause error) {
	n, err := validWAL(filepath.Join(r.opts.SpoolDir, name), name)
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, wal.ErrBadPageHeader):
		// Gone since (completed), or never written (a file opened ahead
		// of the stream holds zeros): no WAL to store.
		r.log.Debug().Err(err).Str(logSegment, name).Msg("no WAL to store in the segment in progress an earlier run left")
		return
	case err != nil:
		r.log.Error().Err(err).Str(logSegment, name).
			Msg("cannot read the segment in progress an earlier run left; it is stored once the server streams it again")
		r.setError(errStream, err)
		return
	case n == 0:
		return
	}
	r.held = StreamEnd{Name: name, Length: n}
	t := uploadTask{kind: taskSnapshot, name: name, length: n, holdsSpool: r.holdsSpool(name, n)}
	r.snapshotMu.Lock()
	if r.streamEnd.name != "" {
		r.snapshotMu.Unlock()
		return
	}
	r.streamEnd = t
	r.snapshotMu.Unlock()
	switch {
	case errors.Is(cause, ErrOtherHistory):
		r.log.Error().Err(cause).Str(logSegment, name).Uint64("bytes", n).
			Msg("streaming cannot resume: storing the segment in progress an earlier run left in the spool as .partial; " +
				"it is WAL of a history the server left (restored to an earlier point?)")
	case cause != nil:
		r.log.Error().Err(cause).Str(logSegment, name).Uint64("bytes", n).
			Msg("streaming cannot resume: the server no longer has the segment in progress an earlier run left in the spool; " +
				"storing the spool's copy, the only one, as .partial")
	default:
		r.log.Info().Str(logSegment, name).Uint64("bytes", n).
			Msg("server unreachable: storing the segment in progress an earlier run left in the spool as .partial")
	}
	r.enqueue(t)
}

// validWAL returns how many bytes from the start of the .partial file at
// path, called name, are WAL of that segment: up to the end of its last
// valid record (see the comment at the top of this file), 0 when no
// record is whole. A first page header that is not this segment's gives
// an error wrapping wal.ErrBadPageHeader.
func validWAL(path, name string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	hdr := make([]byte, wal.PageHeaderSize)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return 0, fmt.Errorf("%w: read the first page header of %s: %v", wal.ErrBadPageHeader, path, err)
	}
	if _, err := wal.CheckSegment(name, hdr, fi.Size()); err != nil {
		return 0, err
	}
	var rec wal.RecordEnd
	_, _ = rec.Write(hdr)
	buf := make([]byte, 256<<10)
	for !rec.Stopped() {
		n, err := f.Read(buf)
		_, _ = rec.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", path, err)
		}
	}
	return uint64(min(rec.End(), fi.Size())), nil
}

// holdsSpool tells whether a copy of the first length bytes of the
// spool's file name holds all the WAL the file held when this Run found
// it left by an earlier process (r.earlier): up to the end of its last
// valid record, read once. Every copy that process stored of the
// segment was a prefix of that file, fsynced before it was copied, so
// such a copy holds all their WAL (PushOptions.HoldsSpool): hoard before
// f44d08a (2026-12-02) stored its copies padded, without the
// partial-data-size that says how much WAL they hold, and a daemon with
// only the public key cannot read them to compare. Another file (the
// segments after it, or a spool of its own on another host) says
// nothing about what a copy stored elsewhere holds.
func (r *Receiver) holdsSpool(name string, length uint64) bool {
	if r.earlier.Name != name {
		return false
	}
	if !r.earlierRead {
		r.earlierRead = true
		n, err := validWAL(filepath.Join(r.opts.SpoolDir, name), name)
		switch {
		case err == nil, errors.Is(err, wal.ErrBadPageHeader):
			// A file whose first page is not the segment's holds no WAL.
			r.earlier.Length = n
		default:
			r.log.Warn().Err(err).Str(logSegment, name).
				Msg("cannot read the WAL an earlier run left in the segment; an older version's copy of it that cannot be read is not replaced")
			r.earlier = StreamEnd{}
			return false
		}
	}
	return length >= r.earlier.Length
}

// SpoolUnstored returns the files of the spool dir holding WAL that no
// run is known to have stored, in the order a Run stores them: the
// complete segments and .history files (a Run removes each once it is
// stored), the .partial files of ended timelines (queueSpool), and the
// full segments an earlier version left as .partial below the leftover
// (completeBelow). leftover is the .partial of the segment in progress
// when the last run ended, when it holds valid WAL (noteLeftover) and
// the spool's marker (StoredMarkerName, storedmarker.go) does not say
// that a stream end's copy holding all of it is stored: a clean stop
// with its storage working writes that marker, a run killed or stopped
// while its storage failed does not, and a marker that does not match
// the file's bytes counts for nothing. A marker that cannot be read is
// passed to warn (unless nil) and counts for nothing either. A file that
// cannot be read is named with why ("<name> (cannot read it: ...)"):
// what it holds is not known to be stored. Nothing when dir does not
// exist. SpoolUnstored only reads: it takes no lock (the spool may be a
// running Receiver's) and changes nothing.
func SpoolUnstored(dir string, warn func(error)) (files []string, leftover string, err error) {
	c, err := readSpool(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	files = slices.Clone(c.uploads)
	// holds names name when it holds WAL: a first page header that is
	// not zeros.
	holds := func(name string) string {
		empty, err := isEmptyPartial(filepath.Join(dir, name))
		switch {
		case errors.Is(err, os.ErrNotExist), err == nil && empty:
			return ""
		case err != nil:
			return fmt.Sprintf("%s (cannot read it: %v)", name, err)
		}
		return name
	}
	p, below := leftoverIn(dir, c)
	for _, name := range slices.Concat(c.endedPartials(), below) {
		if n := holds(name); n != "" {
			files = append(files, n)
		}
	}
	slices.Sort(files)
	if p != "" {
		leftover = unstoredLeftover(dir, p, warn)
	}
	return files, leftover, nil
}

// unstoredLeftover names the leftover .partial name of the spool dir
// when it holds valid WAL (validWAL) that the spool's marker does not
// say is stored (storedByMarker); "" otherwise.
func unstoredLeftover(dir, name string, warn func(error)) string {
	n, err := validWAL(filepath.Join(dir, name), name)
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, wal.ErrBadPageHeader), err == nil && n == 0:
		return ""
	case err != nil:
		return fmt.Sprintf("%s (cannot read it: %v)", name, err)
	}
	stored, err := storedByMarker(dir, name, n)
	if err != nil && warn != nil {
		warn(err)
	}
	if stored {
		return ""
	}
	return name
}
