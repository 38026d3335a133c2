package walstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/wal"
)

// Uploader archives the files the Receiver completes. The daemon adapts
// archive.PushWAL to it. Both methods are called from one goroutine, one
// file at a time, in the order the files were completed; a call that
// returns an error is retried later with the same file. The file stays in
// place until the call returns; the Receiver deletes it after a nil return.
type Uploader interface {
	// Upload archives the complete WAL segment or timeline .history file
	// at path, named by its base name. It must be idempotent: the same
	// file may be offered again after a crash or a failed call.
	Upload(ctx context.Context, path string) error
	// UploadPartial archives the .partial segment at path, named by its
	// base name ("<segment>.partial"), replacing the previous .partial of
	// this segment: a growing segment is offered again as it grows, and
	// the final copy of a segment cut short by a timeline switch replaces
	// the earlier ones. The copies of a growing segment hold only the
	// WAL received so far (the file is shorter than the segment); the
	// final one of an ended timeline is padded with zeros to the segment
	// size, as pg_receivewal leaves its .partial files. Restores pad a
	// shorter copy with zeros. Calls come one at a time; each copy of a
	// segment is longer than the last one that succeeded (but may be
	// shorter than one whose call failed).
	//
	// stored, when not zero, is the size of the file of the last call for
	// this name, which succeeded, with no call for it since: the stored
	// object is that copy unless something else wrote it. The Uploader may
	// trust it instead of asking the storage (archive.PushOptions'
	// StoredPartial). It is zero for the first copy of a segment a
	// session uploads, after a failed call, and for the final copy of an
	// ended timeline, the storage is asked then.
	//
	// holdsSpool tells that the file holds all the WAL the spool's file
	// of this segment held when an earlier process left it in progress
	// (archive.PushOptions' HoldsSpool): what that process stored of it
	// was a prefix of that file, so an older hoard's copy that this
	// process cannot read to compare may be replaced by this one.
	UploadPartial(ctx context.Context, path string, stored int64, holdsSpool bool) error
}

// taskKind tells what an upload task does.
type taskKind int

const (
	// taskFile uploads a complete segment or .history file with Upload,
	// retrying until it succeeds, then deletes it.
	taskFile taskKind = iota + 1
	// taskPartial uploads a .partial segment that will not grow any more
	// (its timeline ended) with UploadPartial, retrying until it
	// succeeds, then deletes it; refused for good (another copy stored
	// that it may not replace: archive.PartialRefused), it leaves the
	// head of the queue and is queued again later (refusePartial). A
	// failing storage keeps it at the head, so that files are stored in
	// order.
	taskPartial
	// taskSnapshot copies the first length bytes of the growing .partial
	// and uploads the copy with UploadPartial, once: a failure waits for
	// the next PartialUploadInterval.
	taskSnapshot
)

// uploadTask is one entry of the upload queue.
type uploadTask struct {
	kind   taskKind
	name   string // file name in the spool
	length uint64 // taskSnapshot: the fsynced bytes to copy
	// holdsSpool is set on a taskSnapshot whose length holds all the WAL
	// an earlier process left in the file (Receiver.holdsSpool).
	holdsSpool bool
}

// uploadQueue is the FIFO between the receive loop and the uploader. The
// task being uploaded stays at the head until it is done.
type uploadQueue struct {
	mu    sync.Mutex
	tasks []uploadTask
	// queued holds when each task of tasks was queued, for
	// Status.QueuedSince.
	queued []time.Time
	wake   chan struct{}
}

func newUploadQueue() *uploadQueue {
	return &uploadQueue{wake: make(chan struct{}, 1)}
}

// push appends t unless a task for the same file is already queued, and
// returns the queue length.
func (q *uploadQueue) push(t uploadTask) int {
	return q.pushAt(t, time.Now())
}

// pushAt is push of a file that has waited for upload since at (not
// after now): a file an earlier run left in the spool.
func (q *uploadQueue) pushAt(t uploadTask, at time.Time) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, old := range q.tasks {
		if old.name == t.name && old.kind == t.kind {
			return len(q.tasks)
		}
	}
	q.tasks = append(q.tasks, t)
	if now := time.Now(); at.After(now) {
		at = now
	}
	q.queued = append(q.queued, at)
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return len(q.tasks)
}

// head returns the first task without removing it.
func (q *uploadQueue) head() (uploadTask, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.tasks) == 0 {
		return uploadTask{}, false
	}
	return q.tasks[0], true
}

// pop removes the first task and returns the queue length.
func (q *uploadQueue) pop() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.tasks = q.tasks[1:]
	q.queued = q.queued[1:]
	return len(q.tasks)
}

// len returns the number of queued tasks, the one in progress included.
func (q *uploadQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.tasks)
}

// queuedSince returns when the oldest file task still queued (the one in
// progress included) was queued; the zero time when none is. Snapshot
// copies of the segment being received are left out: they are no file
// waiting for upload, and Status.UnstoredSince times the WAL in them.
func (q *uploadQueue) queuedSince() time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	var oldest time.Time
	for i, t := range q.tasks {
		if t.kind != taskSnapshot && (oldest.IsZero() || q.queued[i].Before(oldest)) {
			oldest = q.queued[i]
		}
	}
	return oldest
}

// since returns when the task t still queued was queued; false when it
// is not queued.
func (q *uploadQueue) since(t uploadTask) (time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, old := range q.tasks {
		if old.name == t.name && old.kind == t.kind {
			return q.queued[i], true
		}
	}
	return time.Time{}, false
}

// has reports whether a file task for name is queued.
func (q *uploadQueue) has(name string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, t := range q.tasks {
		if t.name == name && t.kind != taskSnapshot {
			return true
		}
	}
	return false
}

// hasSnapshot reports whether a snapshot upload is queued.
func (q *uploadQueue) hasSnapshot() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, t := range q.tasks {
		if t.kind == taskSnapshot {
			return true
		}
	}
	return false
}

// enqueue adds a task and publishes the queue depth.
func (r *Receiver) enqueue(t uploadTask) {
	r.enqueueAt(t, time.Now())
}

// enqueueWritten is enqueue of a file that may have waited in the spool
// since an earlier run: it has waited for upload since it was last
// written (its modification time, not after now), which
// Status.QueuedSince, and so hoard_wal_lag_seconds, reports; since now
// when it cannot be told. A segment is written whole before it is
// renamed complete, and a .history file once.
func (r *Receiver) enqueueWritten(t uploadTask) {
	at := time.Now()
	if fi, err := os.Stat(filepath.Join(r.opts.SpoolDir, t.name)); err == nil {
		at = fi.ModTime()
	}
	r.enqueueAt(t, at)
}

// enqueueAt is enqueue of a file waiting for upload since at.
func (r *Receiver) enqueueAt(t uploadTask, at time.Time) {
	n := r.queue.pushAt(t, at)
	r.update(func(s *Status) { s.QueueDepth = n })
}

// uploadLoop drains the queue until stop is closed, then returns after
// the task in progress: it ends when that task succeeds, when ctx is
// cancelled (at the drain deadline) or at its next retry.
func (r *Receiver) uploadLoop(ctx context.Context, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		t, ok := r.queue.head()
		if !ok {
			select {
			case <-stop:
				return
			case <-r.queue.wake:
			}
			continue
		}
		if !r.runTask(ctx, stop, t) {
			return
		}
		n := r.queue.pop()
		r.update(func(s *Status) { s.QueueDepth = n })
		r.wakeReceiver()
	}
}

// armWake makes cancel, which ends the receive loop's wait, the way
// wakeReceiver wakes it. It returns false, arming nothing, when an upload
// ended since the last wait: the loop must look at its state again first.
func (r *Receiver) armWake(cancel context.CancelFunc) bool {
	r.wakeMu.Lock()
	defer r.wakeMu.Unlock()
	if r.woken {
		r.woken = false
		return false
	}
	r.waiting = cancel
	return true
}

// disarmWake ends what armWake armed, once the wait is over.
func (r *Receiver) disarmWake() {
	r.wakeMu.Lock()
	r.waiting = nil
	r.wakeMu.Unlock()
}

// wakeReceiver tells the receive loop that an upload ended (stored WAL,
// or failed): in synchronous mode it reports what is stored and queues
// the next copy at once, instead of on a timer. It ends the loop's wait,
// or, when the loop is not waiting, makes its next armWake fail.
func (r *Receiver) wakeReceiver() {
	r.wakeMu.Lock()
	defer r.wakeMu.Unlock()
	if r.waiting != nil {
		r.waiting()
		r.waiting = nil
		return
	}
	r.woken = true
}

// uploadWorked records that an upload succeeded: an upload error no
// longer holds.
func (r *Receiver) uploadWorked() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.clearErrorLocked(errUpload)
}

// runTask runs one task, retrying files forever with backoff. It returns
// false when it gave up because of shutdown; the file then stays in the
// spool for the next run. An ended timeline's .partial that the storage
// refuses for good leaves the head of the queue (refusePartial): it
// returns true, the file still in the spool.
func (r *Receiver) runTask(ctx context.Context, stop <-chan struct{}, t uploadTask) bool {
	if t.kind == taskSnapshot {
		if err := r.uploadSnapshot(ctx, t); err != nil {
			r.snapshotMu.Lock()
			r.snapshotFailed = time.Now()
			r.snapshotFailures++
			r.snapshotMu.Unlock()
			// One line a failure, so one a backoff step.
			r.log.Warn().Err(err).Str(logSegment, t.name).Int64("retry_in_ms", time.Until(r.snapshotRetryAt()).Round(time.Millisecond).Milliseconds()).
				Msg("partial segment upload failed; retrying after the backoff (or at the next interval)")
			r.setError(errUpload, err)
		} else {
			r.uploadWorked()
		}
		return ctx.Err() == nil
	}
	delay := r.retryMin
	for attempt := 1; ; attempt++ {
		err := r.uploadFile(ctx, t)
		if err == nil {
			r.uploadWorked()
			if t.kind == taskPartial {
				r.partialStored(t.name)
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if t.kind == taskPartial && archive.PartialRefused(err) {
			r.refusePartial(t, err, stop)
			return true
		}
		r.log.Warn().Err(err).Str(logFile, t.name).Int("attempt", attempt).Int64("retry_in_ms", delay.Round(time.Millisecond).Milliseconds()).Msg("upload failed; retrying")
		r.setError(errUpload, err)
		select {
		case <-stop:
			return false
		case <-time.After(delay):
		}
		delay = min(2*delay, r.retryMax)
	}
}

// refusePartial takes the ended timeline's .partial t, which the storage
// refused for good (archive.PartialRefused), off the head of the queue,
// so that the files queued behind it, the next timeline's, are stored: retrying
// it there would store nothing more, forever, while the slot makes the
// server keep its WAL. The file stays in the spool, never deleted; the
// error stays in Status until it is stored (partialStored), and so does
// the file, in RefusedPartials and in QueuedSince from when it was first
// queued (out of the queue, it still waits for upload); it is queued
// again after a backoff (retryMin, doubling with each refusal up to
// retryMax) unless the upload loop stopped by then, and at the next start
// (queueSpool).
func (r *Receiver) refusePartial(t uploadTask, err error, stop <-chan struct{}) {
	// Still at the head of the queue: when it was queued.
	at, ok := r.queue.since(t)
	if !ok {
		at = time.Now()
	}
	r.mu.Lock()
	if r.refused == nil {
		r.refused = make(map[string]refusal)
	}
	f, seen := r.refused[t.name]
	if !seen || at.Before(f.since) {
		f.since = at
	}
	f.count++
	r.refused[t.name] = f
	n := f.count
	r.setErrorLocked(errRefused, err)
	r.mu.Unlock()
	delay := min(r.retryMin<<min(n-1, 16), r.retryMax)
	r.log.Error().Err(err).Str(logFile, t.name).Int("attempt", n).Int64("retry_in_ms", delay.Milliseconds()).
		Msg("the storage holds another copy of this ended timeline's .partial, which the daemon may not replace: the file stays in the spool " +
			"and is retried after the backoff while the files queued after it are stored; check the stored object the error names " +
			"with a configuration holding the private key, and move it away, keeping it, if it holds no more of this WAL than the file " +
			"(docs/wal-archiving.md)")
	time.AfterFunc(delay, func() {
		select {
		case <-stop:
			// The next run queues it (queueSpool).
		default:
			r.enqueueWritten(t)
		}
	})
}

// refusal is an ended timeline's .partial that the storage refuses for
// good (refusePartial).
type refusal struct {
	// count is its refusals so far.
	count int
	// since is when it was first queued: out of the queue between its
	// retries, it still waits for upload, and Status.QueuedSince counts
	// it from then.
	since time.Time
}

// partialStored records that the ended timeline's .partial name is
// stored: a refusal of it no longer holds.
func (r *Receiver) partialStored(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.refused[name]; !ok {
		return
	}
	delete(r.refused, name)
	if len(r.refused) == 0 {
		r.clearErrorLocked(errRefused)
	}
}

// uploadFile uploads a complete segment, .history or finished .partial,
// then deletes it from the spool.
func (r *Receiver) uploadFile(ctx context.Context, t uploadTask) error {
	p := filepath.Join(r.opts.SpoolDir, t.name)
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		// Queued twice around a reconnection, and already uploaded.
		r.log.Debug().Str(logFile, t.name).Msg("queued file already gone")
		return nil
	}
	var err error
	if t.kind == taskPartial {
		// The whole file: all the WAL it holds.
		err = r.opts.Uploader.UploadPartial(ctx, p, 0, true)
	} else {
		err = r.opts.Uploader.Upload(ctx, p)
	}
	if err != nil {
		return fmt.Errorf("upload %s: %w", t.name, err)
	}
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("remove uploaded %s: %w", p, err)
	}
	r.spoolFreed()
	r.storageAnswered()
	r.log.Debug().Str(logFile, t.name).Msg("uploaded")
	if t.kind == taskFile && wal.IsSegmentName(t.name) {
		if segSize := r.segSize.Load(); segSize != 0 {
			if seg, err := wal.ParseSegmentName(t.name, segSize); err == nil {
				end := seg.Next().StartLSN(segSize)
				r.update(func(s *Status) { s.Uploaded = max(s.Uploaded, end) })
				r.storedThrough(end)
			}
		}
	}
	return nil
}

// spoolFreed tells a receive loop paused for room that a file left the
// spool. One signal waits at most: the loop looks at the free space
// itself.
func (r *Receiver) spoolFreed() {
	select {
	case r.freed <- struct{}{}:
	default:
	}
}

// uploadSnapshot copies the fsynced head of the growing .partial into
// the snapshot directory and uploads it: the first t.length bytes only,
// not padded to the segment size (a trimmed copy; restores pad it again),
// so a copy costs in proportion to the WAL in it, not to the segment
// size. The bytes below t.length are never rewritten while the stream
// goes on, so the copy is consistent although the receive loop keeps
// writing beyond. The copy stays after a successful upload, and the next
// snapshot of the segment appends only the bytes received since; it is
// made again from the start after a failed upload, for another segment,
// or when it is not the size it was left at.
// When the segment was completed meanwhile, the complete segment
// supersedes the snapshot and nothing is uploaded.
func (r *Receiver) uploadSnapshot(ctx context.Context, t uploadTask) error {
	src, err := os.Open(filepath.Join(r.opts.SpoolDir, t.name))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", t.name, err)
	}
	defer src.Close()
	dir := filepath.Join(r.opts.SpoolDir, snapshotDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("snapshot %s: %w", t.name, err)
	}
	p := filepath.Join(dir, t.name)
	r.snapshotMu.Lock()
	prev := r.snapshotFile
	r.snapshotFile = uploadTask{}
	r.snapshotMu.Unlock()
	if prev.name != "" && prev.name != t.name {
		// The previous segment's copy is done with.
		_ = os.Remove(filepath.Join(dir, prev.name))
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.Remove(p)
		}
	}()
	if err := copySnapshot(src, p, prev, t); err != nil {
		return fmt.Errorf("snapshot %s: %w", t.name, err)
	}
	r.snapshotMu.Lock()
	var stored int64
	if r.snapshotKnown && r.snapshotDone.name == t.name {
		stored = int64(r.snapshotDone.length)
	}
	r.snapshotKnown = false
	r.snapshotMu.Unlock()
	if err := r.opts.Uploader.UploadPartial(ctx, p, stored, t.holdsSpool); err != nil {
		return fmt.Errorf("upload %s: %w", t.name, err)
	}
	ok = true
	r.log.Debug().Str(logFile, t.name).Uint64("bytes", t.length).Msg("uploaded partial segment")
	if segSize := r.segSize.Load(); segSize != 0 {
		if seg, err := wal.ParseSegmentName(strings.TrimSuffix(t.name, wal.PartialSuffix), segSize); err == nil {
			r.storedThrough(seg.StartLSN(segSize) + pglogrepl.LSN(t.length))
		}
	}
	r.storageAnswered()
	r.snapshotMu.Lock()
	r.snapshotDone = uploadTask{name: t.name, length: t.length}
	r.snapshotKnown = true
	r.snapshotFile = uploadTask{name: t.name, length: t.length}
	r.snapshotMu.Unlock()
	r.streamEndStored(t, p)
	return nil
}

// copySnapshot makes p hold the first t.length bytes of src. When prev,
// the copy the last snapshot left, is of the same segment, no longer,
// and p is still its size, only the bytes after it are copied.
func copySnapshot(src *os.File, p string, prev, t uploadTask) error {
	dst, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	from := uint64(0)
	if prev.name == t.name && prev.length <= t.length {
		if fi, err := dst.Stat(); err == nil && uint64(fi.Size()) == prev.length {
			from = prev.length
		}
	}
	if from == 0 {
		err = dst.Truncate(0)
	}
	if err == nil {
		_, err = dst.Seek(int64(from), io.SeekStart)
	}
	if err == nil {
		_, err = io.Copy(dst, io.NewSectionReader(src, int64(from), int64(t.length-from)))
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	return err
}

// forgetSnapshot makes the next snapshot upload ask the storage what it
// holds (UploadPartial's stored is 0): at the start of each session, in
// case something else wrote the .partial meanwhile (PostgreSQL archives
// one at a promotion).
func (r *Receiver) forgetSnapshot() {
	r.snapshotMu.Lock()
	r.snapshotKnown = false
	r.snapshotMu.Unlock()
}

// snapshotRetryAt returns when a failed snapshot upload may be tried
// again, in synchronous mode and for StoreThrough: after the retry delay,
// doubling with each failure in a row up to the longest (1 s to 30 s),
// so a storage that is down is not asked every second. The zero time
// when none failed since the storage last answered.
func (r *Receiver) snapshotRetryAt() time.Time {
	r.snapshotMu.Lock()
	defer r.snapshotMu.Unlock()
	if r.snapshotFailures == 0 {
		return time.Time{}
	}
	return r.snapshotFailed.Add(min(r.retryMin<<min(r.snapshotFailures-1, 16), r.retryMax))
}

// storageAnswered ends the snapshot backoff after an upload of any kind
// succeeded: the storage is back, and a commit waiting in synchronous
// mode (or a StoreThrough request) must not wait out the rest of a long
// backoff. The complete segments' own retries are the probe: the upload
// loop wakes the receive loop after each of them.
func (r *Receiver) storageAnswered() {
	r.snapshotMu.Lock()
	r.snapshotFailures = 0
	r.snapshotMu.Unlock()
}

// snapshotUploaded returns how many bytes of the .partial name the last
// successful snapshot upload held.
func (r *Receiver) snapshotUploaded(name string) uint64 {
	r.snapshotMu.Lock()
	defer r.snapshotMu.Unlock()
	if r.snapshotDone.name != name {
		return 0
	}
	return r.snapshotDone.length
}

// finishPartial queues the .partial name of an ended timeline for upload,
// or removes it when it holds no WAL.
func (r *Receiver) finishPartial(name string) error {
	p := filepath.Join(r.opts.SpoolDir, name)
	empty, err := isEmptyPartial(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if empty {
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("remove empty %s: %w", p, err)
		}
		return nil
	}
	r.enqueueWritten(uploadTask{kind: taskPartial, name: name})
	return nil
}
