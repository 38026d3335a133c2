package walstream

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/replication"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// Defaults of Options.
const (
	DefaultStatusInterval = 10 * time.Second
	DefaultDrainTimeout   = 30 * time.Second
	// DefaultResumeMultiplier is PGHoard's resume_multiplier default.
	DefaultResumeMultiplier  = 1.5
	DefaultDiskCheckInterval = time.Second
	// DefaultReceiveTimeout is PostgreSQL's wal_receiver_timeout default.
	DefaultReceiveTimeout = time.Minute
)

// Log field names.
const (
	logLSN     = "lsn"
	logTLI     = "tli"
	logSegment = "segment"
	logFile    = "file"
)

// Retry delays: reconnections and failed uploads back off from the first
// to the second, doubling.
const (
	retryMin = time.Second
	retryMax = 30 * time.Second
)

// finalTimeout bounds the durable work at shutdown: the last fsync and
// status update, and closing the connection.
const finalTimeout = 10 * time.Second

// Options configure a Receiver.
type Options struct {
	// ConnString is the libpq connection string or URI of the server to
	// stream from; the replication package adds replication=true.
	ConnString string
	// Slot is the physical replication slot to stream from. It is created
	// (with RESERVE_WAL) when missing.
	Slot string
	// SpoolDir is the local directory that holds the segments being
	// received and those waiting for upload, for example
	// <backup_location>/<site>/xlog_incoming. It is created if needed, and
	// belongs to one Receiver at a time.
	SpoolDir string
	// Uploader archives completed segments, .partial and .history files.
	Uploader Uploader
	// PartialUploadInterval, when not zero, uploads the growing .partial
	// segment this often when it grew (through Uploader.UploadPartial).
	PartialUploadInterval time.Duration
	// Synchronous reports to the server as flushed only the WAL stored in
	// the archive (Status.Stored), not what is fsynced in the spool: with
	// ApplicationName in the server's synchronous_standby_names, a
	// commit waits until its WAL is stored. The segment being received is
	// uploaded as a .partial whenever it grew and no copy of it is on its
	// way (PartialUploadInterval is then unused): the WAL of every commit
	// that arrives during an upload goes in the next one, so a commit
	// waits for about one upload under any load. A failed copy is tried
	// again with backoff (snapshotRetryAt), ended by any upload that
	// succeeds: the storage is back.
	Synchronous bool
	// ApplicationName is the replication connection's application_name,
	// when the connection string sets none; "" leaves it unset.
	ApplicationName string
	// MinFreeBytes, when not zero, pauses receiving while the spool's
	// filesystem has fewer bytes free, or would have after creating the
	// next segment file (asked before each one), and resumes at
	// ResumeMultiplier times it.
	MinFreeBytes uint64
	// ResumeMultiplier is pg_receivexlog's resume_multiplier; zero means
	// DefaultResumeMultiplier. Values below 1 are taken as 1.
	ResumeMultiplier float64
	// DiskCheckInterval is how often the free space is looked at while
	// MinFreeBytes is set, and how often a paused Receiver tries again to
	// create the next segment file (or, after a write into one failed
	// with ENOSPC, looks whether a segment fits again); zero means
	// DefaultDiskCheckInterval.
	DiskCheckInterval time.Duration
	// StatusInterval is the time between standby status updates; zero
	// means DefaultStatusInterval. A connection to a server whose
	// wal_sender_timeout is shorter than twice it sends them at half
	// that timeout instead (senderStatusInterval).
	StatusInterval time.Duration
	// ReceiveTimeout ends a connection on which nothing came from the
	// server for that long, as PostgreSQL's wal_receiver_timeout does
	// (the network path or the server stalled), and reconnects; half
	// way, the receiver asks the server for a keepalive, which an idle
	// server answers at once. It also bounds a status update's send.
	// Zero means DefaultReceiveTimeout.
	ReceiveTimeout time.Duration
	// DrainTimeout bounds how long Run waits at shutdown for the copy of
	// the segment in progress and the uploads queued before it, or for
	// the upload in progress; zero means DefaultDrainTimeout. Files not
	// uploaded stay in the spool for the next run.
	DrainTimeout time.Duration
	// Archived, when set, is listed after each resume for the hole check:
	// WAL before where streaming resumes must be in the archive or the
	// spool. A hole is logged at Error and kept in Status.Holes.
	Archived ArchiveLister
	// StreamEnd is the stream end's copy that the previous Receiver on
	// SpoolDir left unstored (its PendingStreamEnd, after a Run
	// cancelled with ErrRestartInPlace); zero when none. Run stores it as
	// its own (see streamend.go), also when it never connects.
	StreamEnd StreamEnd
	// Logger receives the Receiver's logs; the zero Logger discards them.
	Logger zerolog.Logger
}

// Status is a snapshot of a Receiver's progress, for monitoring.
type Status struct {
	SystemID string // the server's system identifier
	Timeline int32  // the timeline being streamed
	Segment  string // the segment being received
	// History is the history of Timeline as the server gave it
	// (TIMELINE_HISTORY, the file queued for upload), parsed: the
	// timelines that lead to it, oldest first; nil on timeline 1 and
	// until it is fetched. From the server, not the archive: a site
	// holding only the public key cannot read the archived copy.
	History wal.History
	// Received is the end of the WAL received and written to the spool.
	Received pglogrepl.LSN
	// Flushed is the end of the WAL fsynced to the spool: what the server
	// was (or is about to be) told is flushed.
	Flushed pglogrepl.LSN
	// Uploaded is the end of the last complete segment the Uploader
	// accepted (at start, the start of the oldest segment still waiting).
	Uploaded pglogrepl.LSN
	// ServerLSN is the server's WAL end as of its last message.
	ServerLSN pglogrepl.LSN
	// BytesBehind is ServerLSN minus Uploaded: WAL the server has that is
	// not yet archived as complete segments (0 while either is unknown).
	BytesBehind uint64
	// Stored is the end of the WAL stored in the archive, as a complete
	// segment or as the .partial copy of the segment being received
	// (PartialUploadInterval): what a restore after losing the server
	// and the spool would recover. At start it is Uploaded.
	Stored pglogrepl.LSN
	// StoredBytesBehind is the server's WAL end (ServerLSN, or Received
	// when that is further) minus Stored: the WAL such a loss would lose
	// now, the recovery point objective in bytes (0 while unknown).
	StoredBytesBehind uint64
	// UnstoredSince is when the oldest WAL that is not stored was
	// received (to within a second), or, for WAL the server already had
	// when streaming started, when it started; zero when all the WAL
	// known is stored. Now minus it is the recovery point objective in
	// time.
	UnstoredSince time.Time
	// QueueDepth is the number of files waiting for upload, the one in
	// progress included.
	QueueDepth int
	// QueuedSince is when the oldest file waiting for upload (a complete
	// segment, a .history file or an ended timeline's .partial, the one
	// being uploaded included, and a .partial the storage refuses for
	// good between its retries, RefusedPartials) was first queued: a
	// segment is queued as soon
	// as it is complete and fsynced; a file an earlier run left in the
	// spool counts from when it was last written (its modification
	// time, not after now), not from when this Run queued it. Zero when
	// none waits. Now minus
	// it is how far behind archiving is, in time; unlike how long the
	// queue has not been empty, it stays small on a busy server whose
	// uploads keep up. The .partial copies of the segment being received
	// do not count (UnstoredSince does).
	QueuedSince time.Time
	// RefusedPartials are the ended timelines' .partial files in the
	// spool that the storage refuses for good (another copy stored under
	// the name that may not be replaced: archive.PartialRefused), by
	// name, until each is stored. Out of the upload queue between their
	// retries (refusePartial), they still wait for upload: QueuedSince
	// counts each from when it was first queued.
	RefusedPartials []string
	Connected       bool // streaming now
	// Streamed is set once the server has accepted START_REPLICATION
	// (the receiver held the slot) in this Run, and stays set.
	Streamed bool
	Paused   bool // receiving is paused: the spool is (nearly) full
	// LastError is the newest error that still holds, at LastErrorAt:
	// a connection or stream error (or a spool file an earlier run left
	// that could not be read) until the server accepts START_REPLICATION
	// again, an upload error until an upload succeeds; "" when none
	// holds. Every error is also logged when it happens. LastErr is the
	// error itself, for errors.Is: a connection refused for its
	// credentials wraps replication.ErrAuthentication, one refused by
	// pg_hba.conf or for a role without REPLICATION
	// replication.ErrNotPermitted.
	LastError   string
	LastErr     error
	LastErrorAt time.Time
	// FormerSlot is set once this Run created the replication slot on
	// a server that lacked it after WAL had been streamed through the
	// slot before (formerslot.go): the server streamed from before may
	// still have the slot, keeping its WAL. The newest such creation.
	FormerSlot *FormerSlot
	// Holes are the holes the hole checks of this Run found, oldest
	// first: WAL before where streaming resumed that is neither in the
	// archive nor in the spool (the spool was lost, or the slot moved on
	// without it).
	Holes []Hole
	// HoleCheckUndecided is the last hole check of this Run when it
	// could not decide (a stored segment's first page could not be
	// read); nil when that check decided, or none was made. The next
	// check, at the next resume, replaces it.
	HoleCheckUndecided *UndecidedCheck
}

// Receiver streams WAL from a server into the spool directory and hands
// complete segments to an Uploader. Create it with New; run it with Run.
type Receiver struct {
	opts  Options
	log   zerolog.Logger
	queue *uploadQueue
	// guard pauses receiving when the spool's disk is nearly full.
	guard *diskGuard
	// histories records the timelines whose history file was queued.
	histories map[int32]bool
	// serverHistories holds, by timeline, the histories the server gave
	// (TIMELINE_HISTORY) of the system streamed, parsed: Status.History.
	// Guarded by mu.
	serverHistories map[int32]wal.History
	// retryMin and retryMax bound the reconnection and upload backoff.
	retryMin, retryMax time.Duration
	started            atomic.Bool

	// segSize is the server's WAL segment size, once known.
	segSize atomic.Uint64

	mu     sync.Mutex
	status Status
	// holesBefore is the position (a segment name without its
	// timeline) before which holes are forgotten (ForgetHolesBefore);
	// "" when none is.
	holesBefore string
	// errs are the last errors of each source that still hold (zero
	// when none); status.LastError is the newest of them.
	errs [errSources]heldError
	// refused holds each ended timeline's .partial that the storage
	// refuses for good and that is not stored yet (refusePartial).
	refused map[string]refusal
	// arrivals records when the WAL after status.Stored arrived, oldest
	// first, for Status.UnstoredSince.
	arrivals []arrival
	// storeWant is the position StoreThrough asked to store, until
	// status.Stored reaches it; 0 when none.
	storeWant pglogrepl.LSN

	snapshotMu     sync.Mutex
	snapshotDone   uploadTask // the last snapshot uploaded: name and length
	snapshotFailed time.Time  // when the last snapshot upload failed
	// snapshotFailures counts the snapshot uploads that failed since
	// the last upload of any kind that succeeded: their retries, in
	// synchronous mode and for StoreThrough, back off with it
	// (snapshotRetryAt).
	snapshotFailures int
	// snapshotKnown is set while the stored .partial is snapshotDone's
	// copy as far as this Receiver knows: set by a successful snapshot
	// upload, cleared when one starts (a failed call may or may not have
	// stored its copy) and at each session's start.
	snapshotKnown bool
	// snapshotFile is the copy in the snapshot directory that the last
	// successful snapshot upload left: its first length bytes are the
	// segment's, and the next snapshot of that segment copies only the
	// bytes after them. Zero while there is none.
	snapshotFile uploadTask
	// streamEnd is the copy of the segment in progress that the last
	// session's end queued (storeStreamEnd), until it is stored; zero
	// when none.
	streamEnd uploadTask
	// leftover is the .partial an earlier run left in the spool, stored
	// as the stream end's copy when this Run cannot stream (leftover.go);
	// "" when none or done with. Only Run's goroutine uses it.
	leftover string
	// below are the .partial files under leftover on its timeline: full
	// segments an earlier version left behind (completeBelow). Only
	// Run's goroutine uses it.
	below []string
	// held is how much WAL the spool file of a segment in progress
	// holds from before the session that receives it: an earlier run's
	// (the leftover, Length 0 until read; the adopted StreamEnd) or an
	// earlier session's of this Run. A stream end of that segment stores
	// the longer of it and what its session fsynced (spoolWAL). Only
	// Run's goroutine uses it.
	held StreamEnd
	// earlier is the leftover as this Run found it (noteLeftover), with
	// the length of its valid WAL once read (earlierRead): what an
	// earlier process's copies of it can hold at most (holdsSpool). Unlike
	// held, a session's own WAL never changes it. Only Run's goroutine
	// uses it.
	earlier     StreamEnd
	earlierRead bool
	// spoolFull is the error of a session that ended because a write or
	// fsync into its segment file failed with ENOSPC (a copy-on-write
	// file system's full disk), until a segment fits in the spool's
	// file system again: the next openNext pauses receiving until then.
	// nil when none. Only Run's goroutine uses it.
	spoolFull error

	// wakeMu guards waiting and woken, with which an upload that ends
	// wakes the synchronous receive loop from its wait for the server's
	// next message (armWake, wakeReceiver).
	wakeMu  sync.Mutex
	waiting context.CancelFunc // ends the loop's wait; nil when not waiting
	woken   bool               // an upload ended while the loop was not waiting

	// statusShortened is set once a session of this Run logged that it
	// sends status updates more often for the server's
	// wal_sender_timeout. Only the receive loop's goroutine uses it.
	statusShortened bool
	// holeChecks holds the hole check waiting for holeLoop.
	holeChecks chan holeCheck
	// freed is signalled when an upload removed a file from the spool:
	// a receive loop paused for room looks at the free space again at
	// once instead of at its next DiskCheckInterval.
	freed chan struct{}

	// faults injects file system failures and crashes in tests.
	faults faults
}

// New checks opts and returns a Receiver.
func New(opts Options) (*Receiver, error) {
	switch {
	case opts.Slot == "":
		return nil, errors.New("walstream: no replication slot name")
	case opts.SpoolDir == "":
		return nil, errors.New("walstream: no spool directory")
	case opts.Uploader == nil:
		return nil, errors.New("walstream: no uploader")
	case opts.StatusInterval < 0, opts.PartialUploadInterval < 0, opts.DrainTimeout < 0, opts.DiskCheckInterval < 0:
		return nil, errors.New("walstream: negative interval")
	}
	if opts.StatusInterval == 0 {
		opts.StatusInterval = DefaultStatusInterval
	}
	if opts.DrainTimeout == 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	if opts.ResumeMultiplier == 0 {
		opts.ResumeMultiplier = DefaultResumeMultiplier
	}
	if opts.DiskCheckInterval == 0 {
		opts.DiskCheckInterval = DefaultDiskCheckInterval
	}
	if opts.ReceiveTimeout <= 0 {
		opts.ReceiveTimeout = DefaultReceiveTimeout
	}
	r := &Receiver{
		opts:     opts,
		log:      opts.Logger.With().Str("component", "walstream").Logger(),
		queue:    newUploadQueue(),
		retryMin: retryMin,
		retryMax: retryMax,
		// One check waits at most: a newer one replaces it.
		holeChecks: make(chan holeCheck, 1),
		freed:      make(chan struct{}, 1),
	}
	r.guard = &diskGuard{
		min:    opts.MinFreeBytes,
		resume: uint64(float64(opts.MinFreeBytes) * max(opts.ResumeMultiplier, 1)),
		free:   func() (uint64, error) { return freeBytes(opts.SpoolDir) },
	}
	r.histories = make(map[int32]bool)
	return r, nil
}

// receiveTimeout is Options.ReceiveTimeout, or its default for a
// Receiver not made by New.
func (r *Receiver) receiveTimeout() time.Duration {
	if r.opts.ReceiveTimeout <= 0 {
		return DefaultReceiveTimeout
	}
	return r.opts.ReceiveTimeout
}

// Status returns a snapshot of the Receiver's progress. It is safe to call
// from any goroutine.
func (r *Receiver) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.status
	s.Holes = slices.Clone(s.Holes)
	s.History = slices.Clone(r.serverHistories[s.Timeline])
	if s.ServerLSN > s.Uploaded && s.Uploaded != 0 {
		s.BytesBehind = uint64(s.ServerLSN - s.Uploaded)
	}
	if end := max(s.ServerLSN, s.Received); end > s.Stored && s.Stored != 0 {
		s.StoredBytesBehind = uint64(end - s.Stored)
	}
	if len(r.arrivals) > 0 {
		s.UnstoredSince = r.arrivals[0].at
	}
	if r.queue != nil {
		s.QueuedSince = r.queue.queuedSince()
	}
	// A refused .partial out of the queue between its retries still
	// waits for upload.
	for name, f := range r.refused {
		s.RefusedPartials = append(s.RefusedPartials, name)
		if s.QueuedSince.IsZero() || f.since.Before(s.QueuedSince) {
			s.QueuedSince = f.since
		}
	}
	slices.Sort(s.RefusedPartials)
	return s
}

// arrival is a run of WAL received within arrivalGrain: it ends at end,
// and its first byte arrived at at.
type arrival struct {
	end pglogrepl.LSN
	at  time.Time
}

// arrivalGrain is how finely arrivals are timed; maxArrivals bounds how
// many are kept (the oldest two are merged beyond, keeping the older
// time, so UnstoredSince never moves later than the truth).
const (
	arrivalGrain = time.Second
	maxArrivals  = 4096
)

// noteArrival records that the WAL up to end arrived at now. Caller
// holds r.mu.
func (r *Receiver) noteArrival(end pglogrepl.LSN, now time.Time) {
	if end <= r.status.Stored {
		return
	}
	if n := len(r.arrivals); n > 0 {
		last := &r.arrivals[n-1]
		if end <= last.end {
			return
		}
		if now.Sub(last.at) < arrivalGrain {
			last.end = end
			return
		}
	}
	r.arrivals = append(r.arrivals, arrival{end: end, at: now})
	if len(r.arrivals) > maxArrivals {
		r.arrivals[1].at = r.arrivals[0].at
		r.arrivals = r.arrivals[1:]
	}
}

// stored returns Status.Stored.
func (r *Receiver) stored() pglogrepl.LSN {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status.Stored
}

// storedThrough records that the archive holds the WAL up to end.
func (r *Receiver) storedThrough(end pglogrepl.LSN) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if end <= r.status.Stored {
		return
	}
	r.status.Stored = end
	if end >= r.storeWant {
		r.storeWant = 0
	}
	i := 0
	for i < len(r.arrivals) && r.arrivals[i].end <= end {
		i++
	}
	r.arrivals = r.arrivals[i:]
}

// update changes the status under its lock.
func (r *Receiver) update(fn func(*Status)) {
	r.mu.Lock()
	fn(&r.status)
	r.mu.Unlock()
}

// errSource is what an error in Status.LastError came from, and so what
// clears it when it works again.
type errSource int

const (
	// errStream is the connection, the stream, or a spool file an
	// earlier run left: cleared when the server accepts
	// START_REPLICATION.
	errStream errSource = iota
	// errUpload is an upload: cleared when an upload succeeds.
	errUpload
	// errRefused is an ended timeline's .partial that the storage
	// refuses for good (refusePartial): cleared when no refused
	// .partial is left unstored.
	errRefused
	errSources
)

// heldError is an error that still holds and when it happened.
type heldError struct {
	err error
	at  time.Time
}

// setError records err from src as an error that holds until src works
// again (clearError).
func (r *Receiver) setError(src errSource, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.setErrorLocked(src, err)
}

// setErrorLocked is setError for a caller holding r.mu.
func (r *Receiver) setErrorLocked(src errSource, err error) {
	r.errs[src] = heldError{err: err, at: time.Now()}
	r.showErrorLocked()
}

// clearError records that src works again: its error no longer holds.
// Caller holds r.mu.
func (r *Receiver) clearErrorLocked(src errSource) {
	if r.errs[src].err == nil {
		return
	}
	r.errs[src] = heldError{}
	r.showErrorLocked()
}

// showErrorLocked sets the status's last error to the newest that holds.
// Caller holds r.mu.
func (r *Receiver) showErrorLocked() {
	var newest heldError
	for _, e := range r.errs {
		if e.err != nil && !e.at.Before(newest.at) {
			newest = e
		}
	}
	r.status.LastErr, r.status.LastErrorAt, r.status.LastError = newest.err, newest.at, ""
	if newest.err != nil {
		r.status.LastError = newest.err.Error()
	}
}

// fatalError marks an error that reconnecting cannot fix: the spool
// cannot be written, or the server does not match it.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

// fatal wraps err as a fatalError; nil stays nil.
func fatal(err error) error {
	if err == nil {
		return nil
	}
	return &fatalError{err}
}

// ErrWALRemoved is returned (wrapped) by Run when the server no longer has
// the WAL the spool says streaming must resume from: the slot was dropped
// or advanced by someone else. The archive has a gap from that position;
// a new base backup is needed.
var ErrWALRemoved = errors.New("WAL needed to resume was removed from the server")

// ErrOtherHistory is returned (wrapped) by Run when the spool's timeline
// is not on the server's history: ahead of the server's timeline, or one
// the server's history file does not name. The server was restored from a
// backup to an earlier point (or replaced by a standby that did not
// follow this history), so it never streams the spool's timeline again;
// the spool's WAL is of a history the server abandoned.
var ErrOtherHistory = errors.New("not on the server's timeline history")

// keepsSpoolWAL reports whether, after the fatal error err, the spool's
// WAL is still the site's server's WAL worth storing although streaming
// cannot resume: the server matched the spool (the same system, checked
// first) but no longer has that WAL (ErrWALRemoved) or left its history
// (ErrOtherHistory), so the spool's copy is the only one. Every other
// fatal error keeps it out of the archive: a spool that cannot be written
// or read, another server (wal_segment_size changed), and another system
// (changeSystem stores the old system's WAL itself before it gives up,
// and nothing of the new one).
func keepsSpoolWAL(err error) bool {
	var fe *fatalError
	return errors.As(err, &fe) && (errors.Is(err, ErrWALRemoved) || errors.Is(err, ErrOtherHistory))
}

// Run streams until ctx is cancelled or a fatal error occurs. It
// reconnects, with backoff, after connection and stream errors. At
// shutdown it fsyncs the partial segment, reports its true flush position
// to the server, and stores the segment's fsynced part as a .partial,
// with the uploads queued before it (finishStreamEnd); it waits up to
// DrainTimeout for those (for the queued uploads alone when the stream
// ended at a segment boundary), or for the upload in progress; everything not
// uploaded stays in the spool and is queued again by the next Run. A
// ctx cancelled with the cause ErrRestartInPlace skips that wait
// (PendingStreamEnd gives the copy not stored). Options.StreamEnd, a
// copy the previous Run left, is stored as this Run's own stream end's;
// without it, the spool's .partial that an earlier run left is, when a
// session ends before any WAL arrived (the server is unreachable, or
// cannot stream that WAL again: ErrWALRemoved, ErrOtherHistory), up to
// its last valid record (leftover.go). After those two fatal errors Run
// also waits, within DrainTimeout, for the stream end's copy before it
// returns the error.
// It returns nil after a shutdown by ctx. Run may be called once.
func (r *Receiver) Run(ctx context.Context) error {
	if r.started.Swap(true) {
		return errors.New("walstream: Run called twice")
	}
	if err := os.MkdirAll(r.opts.SpoolDir, 0o700); err != nil {
		return fmt.Errorf("create spool: %w", err)
	}
	if err := cleanSpool(r.opts.SpoolDir); err != nil {
		return err
	}
	// A run killed before it fsynced the directory may have left renames
	// that are not durable yet: make them so before trusting them.
	if err := storage.SyncDir(r.opts.SpoolDir); err != nil {
		return err
	}
	c, err := readSpool(r.opts.SpoolDir)
	if err != nil {
		return err
	}
	r.queueSpool(c)
	r.adoptStreamEnd()
	r.noteLeftover(c)

	stop := make(chan struct{})
	uploadCtx, cancelUploads := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelUploads()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.uploadLoop(uploadCtx, stop)
	}()
	// The hole check is not drained at shutdown: the next run checks
	// again.
	holeCtx, cancelHoles := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHoles()
	if r.opts.Archived != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.holeLoop(holeCtx, stop)
		}()
	}

	err = r.stream(ctx)

	cancelHoles()
	drain := time.AfterFunc(r.opts.DrainTimeout, cancelUploads)
	var fe *fatalError
	switch {
	case errors.Is(context.Cause(ctx), ErrRestartInPlace):
		// The next Run stores the spool where this one would have:
		// abort the upload in progress (whole or nothing) at once.
		r.log.Info().Msg("restarting with the same storage destination: the spool is stored by the next run")
		cancelUploads()
	case !errors.As(err, &fe), keepsSpoolWAL(err):
		r.finishStreamEnd(uploadCtx)
	}
	close(stop)
	wg.Wait()
	drain.Stop()
	n := r.unstoredFiles()
	if n > 0 {
		r.log.Info().Int("files", n).Msg("files left in the spool for the next run")
	}
	if keepsSpoolWAL(err) {
		// Every restart ends the same way (after a failover, the new
		// primary recycled WAL before its slot existed): the error
		// says how the site gets going again.
		err = &resumeError{err: err, spool: r.opts.SpoolDir, unstored: n}
	}
	return err
}

// resumeError is a fatal error after which streaming cannot resume from
// the spool (keepsSpoolWAL): its message says what the operator does.
type resumeError struct {
	err      error
	spool    string
	unstored int // files still in the spool, not stored
}

func (e *resumeError) Error() string {
	first := "the spool's WAL is stored, so"
	if e.unstored > 0 {
		first = fmt.Sprintf("the spool still holds %d files not stored: restart the daemon while the storage answers until the log says they are stored, then", e.unstored)
	}
	return fmt.Sprintf("%v\n  hint: streaming cannot resume from the spool, and the archive has a hole after it; %s "+
		"move the files out of %s and start the daemon, which resumes at the replication slot's position and reports the hole, "+
		"and take a new basebackup (hoard basebackup) to make the site restorable past it", e.err, first, e.spool)
}

func (e *resumeError) Unwrap() error { return e.err }

// stream runs sessions, reconnecting with backoff, until ctx ends or an
// error is fatal.
func (r *Receiver) stream(ctx context.Context) error {
	delay := r.retryMin
	for {
		progressed, err := r.session(ctx)
		// Disconnected and why, in one update: a reader that sees the
		// receiver disconnected sees the error that ended it. The end
		// of replication by a server shutting down (a restart, a
		// failover) is no error.
		held := err != nil && ctx.Err() == nil && !errors.Is(err, replication.ErrStreamEnded)
		r.mu.Lock()
		r.status.Connected = false
		if held {
			r.setErrorLocked(errStream, err)
		}
		r.mu.Unlock()
		r.leftoverAfter(progressed, err, ctx.Err() != nil)
		if ctx.Err() != nil {
			var fe *fatalError
			if errors.As(err, &fe) {
				return err
			}
			return nil
		}
		var fe *fatalError
		if errors.As(err, &fe) {
			r.log.Error().Err(err).Msg("streaming stopped")
			return err
		}
		if progressed {
			delay = r.retryMin
		}
		if errors.Is(err, replication.ErrStreamEnded) {
			// The server is shutting down (a restart, a failover): a
			// normal end, not an error.
			r.log.Info().Int64("retry_in_ms", delay.Round(time.Millisecond).Milliseconds()).Msg("server ended replication")
		} else {
			r.log.Warn().Err(err).Int64("retry_in_ms", delay.Round(time.Millisecond).Milliseconds()).Msg("streaming interrupted; reconnecting")
		}
		r.retryStreamEnd(time.Now())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, r.retryMax)
	}
}
