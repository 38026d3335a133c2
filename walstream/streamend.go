package walstream

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/hoardbackup/hoard/replication"
	"github.com/hoardbackup/hoard/wal"
)

// This file stores the segment in progress when a stream ends, whatever
// PartialUploadInterval says. A server that shuts down cleanly sends its
// WAL through the shutdown checkpoint before its walsender ends the
// stream (WalSndDone in walsender.c), and the Receiver fsyncs it into
// the spool's .partial. If that server never comes back (its host lost
// after the shutdown; the old cluster of a pg_upgrade, never started
// again), the transactions committed since the last segment switch would
// exist only in the spool. So each session that ends with WAL fsynced in
// the segment it was receiving queues a copy of that part as
// <segment>.partial, through the snapshot path of
// wal_partial_upload_interval (same metadata, the stored copy never goes
// backwards, same backoff), before the next connection.
//
// Which ends count: the server's own (CopyDone or CommandComplete,
// ErrStreamEnded), any other error that ends the connection (a server
// killed or crashed, or a network failure: the daemon cannot tell these
// apart, and a crashed server's host may be lost too; also a full
// segment fsynced whole whose rename or directory fsync failed, which
// completeSegment leaves a .partial, stored whole; and a write or fsync
// of the file that failed, whose part fsynced before is stored), and Run's own stop
// (the daemon's SIGTERM, or a site restarted by a reload). A network
// failure costs one copy of WAL that would have been stored anyway once
// the segment completes; a copy is queued only when the segment grew
// since the last one stored. Not a fatal error (the spool or the server
// cannot be trusted), except one after which the server can never stream
// that WAL again (keepsSpoolWAL: ErrWALRemoved, ErrOtherHistory), when
// the spool's copy is the only one: Run stores it before it returns.
//
// At Run's stop, Run does not return before the copy is stored, with
// the uploads queued before it (finishStreamEnd), or DrainTimeout
// passed. A reload that gives the site another prefix restarts it, and
// the new configuration takes effect only once Run returned: so the WAL
// received under this Run's Uploader is stored where it points, whenever
// the reload comes. Before, a copy still queued at the stop (the old
// cluster's last segment, after a pg_upgrade's stop of the old server)
// stayed in the spool, and the next Run stored it into the new prefix
// only. A storage that fails for all of DrainTimeout still leaves it in
// the spool (logged at Error).
//
// The wait serves only a restart that stores elsewhere. A restart that
// stores into the same place (a reload that fixes credentials, an
// endpoint's rate limit, keys, compression) cancels Run's ctx with the
// cause ErrRestartInPlace: Run aborts its uploads and returns at once,
// the copy's WAL stays in the spool, and the next Run stores it there.
// Without this, a reload meant to fix a storage that refuses uploads
// would wait all of DrainTimeout before it applied.
//
// The next Run stores the copy itself, not only the complete segment or
// its own stream end's copy: if the server is gone for good, it never
// connects, has no stream end, and the last commits would stay in the
// spool for as long as the daemon runs. The stopped Run's copy, not
// stored (PendingStreamEnd), is handed to it (Options.StreamEnd, in
// the same process: only that Run knows how many bytes of the
// preallocated file it fsynced), and it adopts it before its first
// connection (adoptStreamEnd), as if its own session had ended there:
// queued after the spool's complete segments and retried by
// retryStreamEnd while not connected. A session that connects rewrites
// the same WAL at the same offsets, and its own stream end replaces the
// copy, with no less WAL than the file held (spoolWAL). A crash loses the hand-over, and the copy of a run that died
// before its stream end never existed: then the next Run reads the length
// of the valid WAL from the spool file itself and stores it when it
// cannot stream (leftover.go).
//
// A restart of the same server changes nothing: streaming resumes at the
// start of the same segment, and once it is complete its upload deletes
// the .partial object (the Uploader's contract).

// ErrRestartInPlace, as the cause of the cancellation of Run's ctx
// (context.WithCancelCause), says that the next Run stores into the same
// storage location, prefix and site as this one: Run returns without
// waiting for its uploads (DrainTimeout), leaving them in the spool.
var ErrRestartInPlace = errors.New("restarted to store into the same place")

// StreamEnd is a stream end's copy that a Run did not store: the first
// Length bytes of the spool file Name ("<segment>.partial"), all
// fsynced by that Run before it queued the copy.
type StreamEnd struct {
	Name   string
	Length uint64
}

// PendingStreamEnd returns the stream end's copy that Run left unstored,
// zero when none. Call it after Run returned: a restart in place
// (ErrRestartInPlace) hands it to the next Receiver (Options.StreamEnd).
func (r *Receiver) PendingStreamEnd() StreamEnd {
	r.snapshotMu.Lock()
	defer r.snapshotMu.Unlock()
	return StreamEnd{Name: r.streamEnd.name, Length: r.streamEnd.length}
}

// Unstored tells whether Run left WAL in the spool that it did not store:
// complete segments still queued, an ended timeline's .partial the
// storage refused (refusePartial), or the stream end's copy of the segment
// in progress (PendingStreamEnd). Call it after Run returned. The server
// was told that WAL is flushed, and may have recycled it: only a later
// Run from the same spool stores it.
func (r *Receiver) Unstored() bool {
	r.mu.Lock()
	refused := len(r.refused)
	r.mu.Unlock()
	return r.queue.len() > 0 || refused > 0 || r.PendingStreamEnd().Name != ""
}

// unstoredFiles counts the files queued for upload (the one in progress
// included) and the refused .partial files out of the queue between
// their retries (refusePartial): what a stop leaves in the spool unstored.
func (r *Receiver) unstoredFiles() int {
	n := r.queue.len()
	r.mu.Lock()
	defer r.mu.Unlock()
	for name := range r.refused {
		if !r.queue.has(name) {
			n++
		}
	}
	return n
}

// adoptStreamEnd makes Options.StreamEnd, the copy the previous Run left
// unstored, this Run's stream end's copy and queues it, after the
// complete files of the spool: retryStreamEnd then tries it again while
// this Run is not connected, and a session's own stream end replaces it.
// Its length is the one that Run fsynced, not the file's size (the file
// is preallocated to the segment size, and bytes past what a session
// wrote are zeros or older WAL). A file that is gone or shorter (the
// segment completed since) is not this copy's.
func (r *Receiver) adoptStreamEnd() {
	e := r.opts.StreamEnd
	if e.Length == 0 || !wal.IsPartialName(e.Name) {
		return
	}
	fi, err := os.Stat(filepath.Join(r.opts.SpoolDir, e.Name))
	if err != nil || !fi.Mode().IsRegular() || uint64(fi.Size()) < e.Length {
		return
	}
	t := uploadTask{kind: taskSnapshot, name: e.Name, length: e.Length}
	r.snapshotMu.Lock()
	r.streamEnd = t
	r.snapshotMu.Unlock()
	r.held = e
	r.log.Info().Str(logSegment, t.name).Uint64("bytes", t.length).
		Msg("storing the previous run's segment in progress as .partial")
	r.enqueue(t)
}

// storeStreamEnd queues the copy of the fsynced part of cur, the segment
// the ended session was receiving (nil when none), after the session
// ended with err, or by Run's stop when stopping. It remembers the copy,
// and the reconnect loop (retryStreamEnd) or Run's stop (finishStreamEnd)
// tries it again after a failure.
func (r *Receiver) storeStreamEnd(cur *segmentFile, err error, stopping bool) {
	var fe *fatalError
	if cur == nil || cur.synced == 0 || errors.As(err, &fe) && !keepsSpoolWAL(err) {
		return
	}
	name := cur.name() + wal.PartialSuffix
	t := uploadTask{kind: taskSnapshot, name: name, length: r.spoolWAL(name, cur.synced)}
	t.holdsSpool = r.holdsSpool(name, t.length)
	if stored := r.snapshotUploaded(t.name); t.length <= stored {
		// A snapshot (PartialUploadInterval, synchronous mode) stored
		// it all already: only the marker is missing.
		r.markStored(name, filepath.Join(r.opts.SpoolDir, name), stored)
		return
	}
	r.snapshotMu.Lock()
	r.streamEnd = t
	r.snapshotMu.Unlock()
	ev := r.log.Info()
	msg := "stream ended: storing the segment in progress as .partial"
	switch {
	case keepsSpoolWAL(err):
		ev = r.log.Error().Err(err)
		msg = "streaming cannot resume: storing the segment in progress as .partial"
	case stopping:
		msg = "stopping: storing the segment in progress as .partial"
	case !errors.Is(err, replication.ErrStreamEnded):
		ev = r.log.Warn().Err(err)
	}
	ev.Str(logSegment, t.name).Uint64("bytes", t.length).Msg(msg)
	r.enqueue(t)
}

// spoolWAL returns how many bytes of the spool's .partial name a stream
// end stores when its session fsynced synced bytes of it: more when the
// file held more WAL before that session (r.held). A session streams a
// segment from its start, and receives from the server the same bytes
// the file holds at the same offsets: the same segment name is the same
// timeline and position, and the server sends only WAL it flushed, so
// what an earlier session or run fsynced past the new session's end is
// still there and still the server's WAL. Without this, a server that
// died again before the session received as much as the file held
// (briefly back after a crash, or dying twice while the storage failed)
// left a stored copy shorter than the WAL the spool had, and the rest
// was never stored. The length a run died with is read from the file
// (validWAL), once; a length this process fsynced is trusted as
// adoptStreamEnd trusts it.
func (r *Receiver) spoolWAL(name string, synced uint64) uint64 {
	h := r.held
	if h.Name == name && h.Length == 0 {
		n, err := validWAL(filepath.Join(r.opts.SpoolDir, name), name)
		if err != nil && !errors.Is(err, wal.ErrBadPageHeader) {
			r.log.Warn().Err(err).Str(logSegment, name).Msg("cannot read the WAL an earlier run left in the segment; storing what this session received")
		}
		h.Length = n
	}
	if h.Name == name {
		synced = max(synced, h.Length)
	}
	r.held = StreamEnd{Name: name, Length: synced}
	return synced
}

// finishStreamEnd, at Run's stop, waits until the stream end's copy and
// the files queued before it are stored, queueing the copy again after a
// failure (retryStreamEnd's backoff), or until ctx ends (DrainTimeout).
// The upload loop goes on meanwhile, so the files queued before the copy
// are stored first. A stream that ended at a segment boundary (an idle
// server after a switch) has no copy to store, but may still have the
// segment it completed last queued: it is waited for all the same.
func (r *Receiver) finishStreamEnd(ctx context.Context) {
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for {
		r.retryStreamEnd(time.Now())
		r.snapshotMu.Lock()
		t := r.streamEnd
		r.snapshotMu.Unlock()
		n := r.queue.len()
		if t.name == "" && n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			if t.name != "" {
				r.log.Error().Str(logSegment, t.name).Uint64("bytes", t.length).
					Msg("stopping: the segment in progress is not stored within the drain timeout; it stays in the spool for the next run")
			} else {
				r.log.Error().Int("files", n).
					Msg("stopping: wal queued for upload is not stored within the drain timeout; it stays in the spool for the next run")
			}
			return
		case <-tick.C:
		}
	}
}

// retryStreamEnd queues the stream end's copy again, while the Receiver
// is not connected, when it is not stored yet, no copy is queued, its
// spool file is still there (not completed since) and the backoff of
// failed copies (snapshotRetryAt) is over.
func (r *Receiver) retryStreamEnd(now time.Time) {
	r.snapshotMu.Lock()
	t := r.streamEnd
	r.snapshotMu.Unlock()
	if t.name == "" || r.queue.hasSnapshot() || now.Before(r.snapshotRetryAt()) {
		return
	}
	if stored := r.snapshotUploaded(t.name); stored >= t.length {
		// A snapshot stored it meanwhile: only the marker is missing.
		r.clearStreamEnd(t)
		r.markStored(t.name, filepath.Join(r.opts.SpoolDir, t.name), stored)
		return
	}
	if _, err := os.Stat(filepath.Join(r.opts.SpoolDir, t.name)); errors.Is(err, os.ErrNotExist) {
		r.clearStreamEnd(t)
		return
	}
	r.enqueue(t)
}

// streamEndStored logs, once, that the snapshot upload t, made of the
// copy at src, stored the stream end's copy, and writes the spool's
// marker saying so (markStored).
func (r *Receiver) streamEndStored(t uploadTask, src string) {
	r.snapshotMu.Lock()
	end := r.streamEnd
	r.snapshotMu.Unlock()
	if end.name == t.name && t.length >= end.length {
		r.clearStreamEnd(end)
		r.log.Info().Str(logSegment, t.name).Uint64("bytes", t.length).Msg("stored the segment in progress at the stream end as .partial")
		r.markStored(t.name, src, t.length)
	}
}

// markStored writes the spool's marker (StoredMarkerName) saying that
// the first length bytes of the .partial name, read from src, are
// stored, so that a look at the spool after this Run (SpoolUnstored:
// the daemon's look at the spools of sites it does not run, a reload's
// removal of a stopped site) does not count the file while it holds no
// more WAL. A marker that is not written only leaves the file counted:
// it is logged and Run goes on.
func (r *Receiver) markStored(name, src string, length uint64) {
	if err := writeStoredMarker(r.opts.SpoolDir, name, src, length); err != nil {
		r.log.Warn().Err(err).Str(logSegment, name).
			Msg("cannot write the marker saying the segment in progress is stored; a look at the spool after this run counts it as unstored")
	}
}

// clearStreamEnd forgets the stream end's copy t, unless a newer one
// replaced it.
func (r *Receiver) clearStreamEnd(t uploadTask) {
	r.snapshotMu.Lock()
	if r.streamEnd == t {
		r.streamEnd = uploadTask{}
	}
	r.snapshotMu.Unlock()
}
