package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/replication"
	"github.com/hoardbackup/hoard/walstream"
)

// Backup retry delays: a failed basebackup is tried again after the first,
// doubling up to the second. A failure is never fatal to the daemon.
const (
	backupRetryMin = 15 * time.Second
	backupRetryMax = 15 * time.Minute
)

// scheduleCheckInterval is the longest the backup loop sleeps: the
// schedule is looked at again at least this often (the listing may have
// changed, the clock may have jumped).
const scheduleCheckInterval = time.Minute

// maintenanceCheckInterval is how often the backup loop looks for the
// maintenance mode file to go while it exists.
const maintenanceCheckInterval = 5 * time.Second

// Log field names.
const (
	logSite    = "site"
	logBackup  = "backup"
	logKey     = "key"
	logSegment = "segment"
)

// supervisor runs one active site: the WAL receiver (when the site
// streams) and the backup loop, which takes scheduled and requested
// basebackups one at a time and runs retention between them.
type supervisor struct {
	site Site
	d    *daemon
	log  zerolog.Logger
	// started is when the supervisor was made, just before its run.
	started time.Time
	// requests holds the id of one pending backup request.
	requests chan string
	// relist holds one pending request to list the backups now
	// (listSoon).
	relist chan struct{}
	m      siteMetrics
	// streamEnd is the stream end's copy the site's previous run left
	// unstored, for its receiver to adopt (walstream.Options.StreamEnd).
	streamEnd walstream.StreamEnd
	// runBackup takes a basebackup: basebackup.Run, unless a test sets it.
	runBackup func(context.Context, basebackup.Options) (*archive.BackupInfo, error)
	// codec is the site archive's, which noteBackups asks whether a
	// backup's checksum failure count authenticates; set by the backup
	// loop before it lists, read only by it.
	codec *archive.Codec

	mu sync.Mutex
	// requestsEnded is set when the backup loop has ended: request
	// refuses from then on (endRequests).
	requestsEnded bool
	recv          *walstream.Receiver // nil unless streaming (and started)
	up            *uploader
	st            SiteStatus
	// streaming is whether the receiver was connected at the last refresh.
	streaming bool
	// holesBefore is the position (a segment name without its
	// timeline) of the newest basebackup's start: the receiver's holes
	// (Status.Holes) that end before it are harmless for new restores
	// (resolveHoles); "" before the first backup of this run.
	holesBefore string
	// undecidedResolved is the receiver's undecided hole check
	// (Status.HoleCheckUndecided) that a later basebackup made moot for
	// new restores; nil when none.
	undecidedResolved *walstream.UndecidedCheck
	// deltaKept is why the last retention run deleted no delta object
	// (archive.RetentionPlan.DeltaKept), logged when it changes.
	deltaKept string
	// walKept is why the last retention run deleted no WAL
	// (archive.RetentionPlan.WALKept), logged when it changes.
	walKept string
	// seen holds the keys of the site's backups the backup loop listed
	// since the last retention run that succeeded, and those that run
	// kept: retention looks up one its listing leaves out
	// (archive.RetentionPolicy.Seen). Only the backup loop uses it.
	seen map[string]bool
	// sysID is the cluster's system identifier as last asked, at sysIDAt
	// (systemid.go).
	sysID   string
	sysIDAt time.Time
	// nodeErr is the error of the last ask of the node, at nodeErrAt
	// (queryNode).
	nodeErr   error
	nodeErrAt time.Time
	// standbyWALWait bounds the wait for a standby backup's WAL after the
	// daemon's own backup (storeStandbyWAL; defaultStandbyWALWait).
	standbyWALWait time.Duration
	// walKeptMovedFrom holds the keys of the backups of the sites this
	// one moved from whose WAL the last retention plan kept (in
	// plan.Keep, not only because their site is read-only to it:
	// archive.ExtraReadOnly); nil until retention has planned once in
	// this run. The WAL archive check follows those (checkedBackups).
	walKeptMovedFrom map[string]bool
	// walAsked is the end of the last backup whose WAL the backup loop
	// saw to: the daemon's own newest backup, or the last one
	// serveNewestBackupWAL asked the receiver for. Only the backup loop's
	// goroutine uses it.
	walAsked pglogrepl.LSN
}

func newSupervisor(d *daemon, s Site) *supervisor {
	sup := &supervisor{
		site:     s,
		d:        d,
		started:  time.Now(),
		log:      d.log.With().Str(logSite, s.Name).Logger(),
		requests: make(chan string, 1),
		relist:   make(chan struct{}, 1),
		m:        newSiteMetrics(d.metrics, s.Name),

		standbyWALWait: defaultStandbyWALWait,
	}
	if streamsWAL(s) {
		sup.m.connected = walConnectedMetric(d.metrics, s.Name)
	}
	sup.st = SiteStatus{Active: s.Active, ActiveBackupMode: s.ActiveBackupMode, WALMode: s.WAL}
	return sup
}

// request asks for a basebackup and returns the request's id in the
// daemon's requestLog. A request already waiting makes it
// ErrBackupPending; one made while a backup runs is taken after it. Once
// the backup loop has ended (endRequests) it is ErrSiteStopping: nothing
// would take it.
func (s *supervisor) request() (string, error) {
	// s.mu orders a request against endRequests: one queued here is in
	// the channel when endRequests looks, so it is logged as dropped if
	// not taken, and one made after it is refused.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.requestsEnded {
		return "", fmt.Errorf("site %s: %w", s.site.Name, ErrSiteStopping)
	}
	// Recorded before it is queued: the backup loop may take it at once
	// and record it running.
	id := s.d.reqs.add(s.site.Name)
	select {
	case s.requests <- id:
		s.st.BackupRequested = true
		return id, nil
	default:
		s.d.reqs.forget(id)
		return "", fmt.Errorf("site %s: %w", s.site.Name, ErrBackupPending)
	}
}

// endRequests makes request refuse further requests and returns the id
// of the one waiting for the backup loop, if any (it is removed: nothing
// takes it now). It is called when the backup loop ends, and when the
// site stops before it started.
func (s *supervisor) endRequests() (waiting string) {
	s.mu.Lock()
	s.requestsEnded = true
	s.st.BackupRequested = false
	s.mu.Unlock()
	select {
	case id := <-s.requests:
		return id
	default:
		return ""
	}
}

// dropRequests ends the site's requests (endRequests) and marks dropped,
// and logs, those that are lost: the ones the backup loop had taken
// (taken) and the one waiting. Requests live in memory only, and whoever
// asked without waiting was answered when it was queued: the warning tells
// them to ask again.
func (s *supervisor) dropRequests(ctx context.Context, taken []string) {
	lost := taken
	if id := s.endRequests(); id != "" {
		lost = append(lost, id)
	}
	if len(lost) == 0 {
		return
	}
	why := "the backup loop ended"
	if cause := context.Cause(ctx); cause != nil {
		why = cause.Error()
	}
	s.d.reqs.set(lost, RequestDropped, "", "the site stopped (shutdown or reload) before the backup was stored: "+why)
	s.log.Warn().Str("why", why).Strs("requests", lost).
		Msg("basebackup request dropped: the site stopped (shutdown or reload) before the backup was stored; request it again")
}

// listSoon wakes the backup loop to list the backups (a backup was
// stored in the site), unless a wake is pending already.
func (s *supervisor) listSoon() {
	select {
	case s.relist <- struct{}{}:
	default:
	}
}

func (s *supervisor) update(fn func(*SiteStatus)) {
	s.mu.Lock()
	fn(&s.st)
	s.mu.Unlock()
}

func (s *supervisor) setError(err error) {
	now := time.Now().UTC()
	s.update(func(st *SiteStatus) { st.LastError, st.LastErrorAt = err.Error(), &now })
}

// run serves the site until ctx ends (nil) or a fatal error: the archive
// cannot be opened, or the WAL receiver stopped for good (the server is
// not the one the spool came from, or it removed WAL the archive needs).
func (s *supervisor) run(ctx context.Context) error {
	// A site that stops before its backup loop runs (no archive, no
	// receiver) refuses requests too; after the loop this finds none.
	defer s.dropRequests(ctx, nil)
	if s.site.WAL == WALStream {
		// Before anything touches the spool or the storage: a second
		// daemon on this spool stops here (lockSpool).
		release, err := lockSpool(s.site.SpoolDir)
		if err != nil {
			return err
		}
		defer release()
	}
	if s.site.Dir != "" {
		// Every site, spool or none, before the restore tests' clean-up
		// and the first backup or retention: a second daemon of this
		// site stops here (lockSiteDir). A streaming site's spool is
		// locked first, so a second daemon on it is told of its spool,
		// as before the site lock.
		release, err := lockSiteDir(s.site.Dir)
		if err != nil {
			return err
		}
		defer release()
	}
	arch, closeArch, err := s.site.OpenArchive(ctx)
	if err != nil {
		return fmt.Errorf("open archive: %w", err)
	}
	defer closeArch()
	s.update(func(st *SiteStatus) { st.Running = true })
	defer s.update(func(st *SiteStatus) { st.Running = false })

	g, gctx := errgroup.WithContext(ctx)
	switch s.site.WAL {
	case WALStream:
		recv, err := s.receiver(arch)
		if err != nil {
			return err
		}
		s.log.Info().Str("slot", s.site.Slot).Str("spool", s.site.SpoolDir).Msg("streaming wal")
		g.Go(func() error {
			if err := recv.Run(gctx); err != nil {
				return fmt.Errorf("wal receiver: %w", err)
			}
			return nil
		})
	case WALArchiveCommand:
		s.log.Info().Msg("wal arrives through archive_command (hoard wal-push)")
	default:
		s.log.Warn().Str("active_backup_mode", s.site.ActiveBackupMode).
			Msg("no wal capture in this mode: basebackups are restorable only with wal archived some other way")
	}
	g.Go(func() error { return s.backups(gctx, arch) })
	g.Go(func() error { return s.walChecks(gctx, arch) })
	if s.site.RestoreTest.Interval > 0 {
		g.Go(func() error { return s.restoreTests(gctx, arch) })
	}
	return g.Wait()
}

// receiver builds the site's WAL receiver.
func (s *supervisor) receiver(arch *archive.Archive) (*walstream.Receiver, error) {
	conn := s.site.ConnString
	up := &uploader{
		arch: arch, push: s.site.Push, limit: s.d.opts.UploadRetriesWarningLimit, log: s.log,
		systemID: s.systemID,
		serverVersion: func(ctx context.Context) (int, error) {
			ctx, cancel := context.WithTimeout(ctx, serverVersionTimeout)
			defer cancel()
			srv, err := replication.QueryServer(ctx, conn)
			return srv.Version, err
		},
		warn:   func(on bool) { s.d.setAlert(AlertUploadRetries, s.site.Name, on) },
		failed: func() { s.m.uploadErrors.Add(1) },
		uploaded: func() {
			s.m.uploads.Add(1)
			s.m.lastUpload.Set(float64(time.Now().Unix()))
		},
	}
	recv, err := walstream.New(walstream.Options{
		ConnString:            s.site.ConnString,
		Slot:                  s.site.Slot,
		SpoolDir:              s.site.SpoolDir,
		Uploader:              up,
		PartialUploadInterval: s.site.PartialUploadInterval,
		ReceiveTimeout:        s.site.ReceiveTimeout,
		Synchronous:           s.site.Synchronous,
		ApplicationName:       s.site.ApplicationName,
		MinFreeBytes:          s.site.MinFreeBytes,
		ResumeMultiplier:      s.site.ResumeMultiplier,
		DiskCheckInterval:     s.site.DiskCheckInterval,
		Archived:              up,
		DrainTimeout:          s.d.opts.DrainTimeout,
		StreamEnd:             s.streamEnd,
		// walstream names its own component.
		Logger: s.d.opts.Logger.With().Str(logSite, s.site.Name).Logger(),
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.recv, s.up = recv, up
	s.mu.Unlock()
	return recv, nil
}

// pendingStreamEnd returns the stream end's copy the site's receiver
// left unstored, once run returned; zero when it has none.
func (s *supervisor) pendingStreamEnd() walstream.StreamEnd {
	s.mu.Lock()
	recv := s.recv
	s.mu.Unlock()
	if recv == nil {
		return walstream.StreamEnd{}
	}
	return recv.PendingStreamEnd()
}

// ranReceiver tells whether the site's run built its WAL receiver,
// which then knows what of the spool it stored (unstoredWAL).
func (s *supervisor) ranReceiver() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recv != nil
}

// unstoredWAL tells whether the site's stopped receiver left WAL in its
// spool that it did not store (walstream.Receiver.Unstored).
func (s *supervisor) unstoredWAL() bool {
	s.mu.Lock()
	recv := s.recv
	s.mu.Unlock()
	return recv != nil && recv.Unstored()
}

// backups is the backup loop: it takes a backup when the schedule or a
// request says so, one at a time, retrying failures with backoff, and runs
// retention after each backup and every RetentionInterval in between.
func (s *supervisor) backups(ctx context.Context, arch *archive.Archive) error {
	s.codec = arch.Codec
	var (
		// requested holds the ids of the requests the loop has taken
		// and not yet served: the next backup serves them all, as it
		// starts after each was made.
		requested   []string
		failures    int
		retryAt     time.Time
		retentionAt time.Time // zero: at once
		inMaint     bool
		warnedFor   string    // the node's system warnOtherHistories last looked for
		listed      time.Time // when the backups were last listed
		guard       = clockGuard{started: time.Now()}
		clockWarned string // the last clockGuard change logged
	)
	// A request that shutdown (or a reload that restarts the site) cuts
	// short, waiting or running, is gone; later ones are refused.
	defer func() { s.dropRequests(ctx, requested) }()
	if s.site.WAL == WALStream {
		// The receiver must hold the slot before the first backup starts:
		// a slot created after the backup's checkpoint would stream from
		// after the backup's start, a gap no restore could cross.
		if err := s.waitStreaming(ctx); err != nil {
			return nil
		}
	}
	for {
		now := time.Now()
		wake := now.Add(scheduleCheckInterval)
		maint := s.maintenance()
		if maint != inMaint {
			inMaint = maint
			s.update(func(st *SiteStatus) { st.Maintenance = maint })
			if maint {
				s.log.Warn().Str("file", s.d.opts.MaintenanceFile).Msg("maintenance mode: no basebackups and no retention until the file is removed")
			} else {
				s.log.Info().Msg("maintenance mode ended")
			}
		}
		if maint {
			wake = now.Add(maintenanceCheckInterval)
		} else {
			listed = time.Now()
			backups, err := arch.ListBackups(ctx)
			switch {
			case ctx.Err() != nil:
				return nil
			case err != nil:
				s.log.Warn().Err(err).Msg("list basebackups")
				s.setError(err)
			default:
				s.noteListed(backups)
				s.serveNewestBackupWAL(ctx, backups)
				if id := s.systemID(ctx); id != "" && id != warnedFor {
					s.systemChanged(warnedFor, id)
					warnedFor = s.warnOtherHistories(ctx, arch)
				}
				dec := s.decide(ctx, now, backups)
				dec, changed := guard.check(now, s.site.Schedule, dec)
				if changed != "" {
					s.update(func(st *SiteStatus) { st.NextBackup = timePtr(dec.Next) })
				}
				if changed != clockWarned {
					clockWarned = changed
					switch changed {
					case "held":
						s.log.Warn().Time("until", dec.Next).
							Msg("scheduled basebackup held back: due again less than half an interval after the last one this daemon started; if this repeats, this host's clock is ahead of the server's, whose clock the backups' start times are")
					case "future":
						s.log.Warn().
							Msg("the newest basebackup starts after this host's clock reads now (the clock went back, or the backup was taken while a clock was ahead): the next scheduled basebackup is due an interval after this daemon started or took its last one")
					}
				}
				reason := ""
				switch {
				case now.Before(retryAt):
					wake = earliest(wake, retryAt)
				case len(requested) > 0:
					reason = basebackup.ReasonRequested
				case dec.Due:
					reason = basebackup.ReasonScheduled
					s.log.Info().Str("why", dec.Why).Msg("scheduled basebackup due")
				}
				if reason != "" {
					serving := requested
					if reason != basebackup.ReasonRequested {
						serving = nil
					}
					s.d.reqs.set(serving, RequestRunning, "", "")
					name, err := s.backup(ctx, arch, reason, now, dec.Normalized, reason == basebackup.ReasonScheduled && dec.Incremental)
					if err == nil && reason == basebackup.ReasonRequested {
						s.d.reqs.set(serving, RequestStored, name, "")
						requested = nil // served, even if the daemon stops now
					}
					if ctx.Err() != nil {
						return nil
					}
					if err != nil {
						failures++
						delay := min(backupRetryMin<<min(failures-1, 10), backupRetryMax)
						retryAt = time.Now().Add(delay)
						s.log.Error().Err(err).Int("failures", failures).Int64("retry_in_ms", delay.Round(time.Millisecond).Milliseconds()).Msg("basebackup failed")
						// The requests stay taken: the retry serves them.
						s.d.reqs.set(serving, RequestFailed, "", fmt.Sprintf("%v (the daemon retries in %s)", err, delay.Round(time.Second)))
					} else {
						failures, retryAt = 0, time.Time{}
						if reason == basebackup.ReasonScheduled {
							if dec.Incremental {
								guard.lastIncr = now
							} else {
								guard.lastFull = now
							}
						}
						if reason == basebackup.ReasonRequested {
							s.update(func(st *SiteStatus) { st.BackupRequested = false })
						}
						retentionAt = time.Time{}
					}
					s.update(func(st *SiteStatus) { st.BackupFailures = failures })
					continue
				}
				if !dec.Next.IsZero() {
					wake = earliest(wake, dec.Next)
				}
			}
			if !time.Now().Before(retentionAt) {
				s.retention(ctx, arch)
				retentionAt = time.Now().Add(s.d.opts.RetentionInterval)
			}
			wake = earliest(wake, retentionAt)
		}
		timer := time.NewTimer(time.Until(wake))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case id := <-s.requests:
			requested = append(requested, id)
			s.log.Info().Str("request", id).Msg("basebackup requested")
		case <-s.relist:
			if id := s.waitRelist(ctx, listed); id != "" {
				requested = append(requested, id)
			} else if ctx.Err() != nil {
				timer.Stop()
				return nil
			}
			s.log.Info().Msg("told of a stored backup: listing the backups")
		case <-timer.C:
		}
		timer.Stop()
	}
}

// decide records the listed backups in the status and metrics and returns
// what the schedule says at now. Both go by the backups that stand for
// the site's cluster (archive.TrustedOfSystem): backups of another system
// (copied from a site sharing the key pair, or from before a pg_upgrade)
// neither stand for this one nor hold its backups back, and where only
// they authenticate, an unsigned backup planted beside them does not
// either. In a site without keys, where nothing authenticates, a
// backup's metadata that names another system is believed here all the
// same (claimsOtherSystem).
func (s *supervisor) decide(ctx context.Context, now time.Time, backups []*archive.BackupInfo) Decision {
	id := s.systemID(ctx)
	own := slices.DeleteFunc(archive.TrustedOfSystem(backups, id), func(b *archive.BackupInfo) bool { return claimsOtherSystem(b, id) })
	s.noteBackups(len(backups), own)
	dec := s.site.Schedule.Decide(now, own)
	s.update(func(st *SiteStatus) { st.NextBackup = timePtr(dec.Next) })
	return dec
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// liveReceiver returns the site's WAL receiver, nil unless the site streams
// (and the receiver started).
func (s *supervisor) liveReceiver() *walstream.Receiver {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recv
}

// waitStreaming waits until the receiver has connected once (and so holds
// its slot) or ctx ends.
func (s *supervisor) waitStreaming(ctx context.Context) error {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		if recv := s.liveReceiver(); recv != nil {
			// Streamed, not Received: the receiver sets Received to
			// its resume position before START_REPLICATION, which
			// the server refuses while another process (a second
			// daemon) holds the slot.
			if st := recv.Status(); st.Connected || st.Streamed {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// maintenance reports whether the maintenance mode file exists.
func (s *supervisor) maintenance() bool {
	if s.d.opts.MaintenanceFile == "" {
		return false
	}
	_, err := os.Stat(s.d.opts.MaintenanceFile)
	return err == nil
}

// noteBackups records the listing in the status and metrics: listed
// backups, of which bs stand for this system (archive.TrustedOfSystem).
func (s *supervisor) noteBackups(listed int, bs []*archive.BackupInfo) {
	// A planted backup that claims to be new would silence the alert on
	// the newest backup's age: where some authenticate, only they count.
	last := archive.NewestTrusted(bs)
	if last != nil {
		end := last.EndTime
		if end.IsZero() {
			end = last.StartTime
		}
		s.m.lastBackup.Set(float64(end.Unix()))
	}
	status := backupStatus(last)
	if last != nil {
		// A count that does not authenticate (in a site with keys) is
		// not taken for fact: the gauge an alert fires on keeps to
		// believed counts, the status shows the other apart.
		if n, _, trusted := s.codec.ChecksumFailures(last); trusted {
			status.ChecksumFailures = n
		} else {
			status.ChecksumFailuresUnverified = n
		}
	}
	var failures int64
	if status != nil {
		failures = status.ChecksumFailures
	}
	s.m.checksumFailures.Set(float64(failures))
	s.update(func(st *SiteStatus) {
		st.Backups = listed
		st.LastBackup = status
	})
}

// backup takes one basebackup and returns its name.
//
// An incremental backup (PostgreSQL 17+) that the server cannot take, or
// that has no parent (none stored, the newest one's chain continuing
// into a moved_from site, sound there: basebackup.ErrParentMovedFrom,
// counted as none, or the newest one's chain cannot be restored: ErrBrokenParent,
// counted apart), gives way to a full backup at
// once, with a warning, counted in MetricIncrementalFallbacks and the
// site's status: a broken parent makes every scheduled incremental backup
// a full one until it is fixed. One whose parent's chain could not be
// checked (the storage failed: basebackup wraps neither ErrNoParent nor
// ErrBrokenParent) is a failed backup like any other, tried again on the
// backoff: no full backup is taken from a storage that is failing.
func (s *supervisor) backup(ctx context.Context, arch *archive.Archive, reason string, decided, normalized time.Time, incremental bool) (string, error) {
	o := s.site.Backup
	o.ConnString = s.site.ConnString
	o.Archive = arch
	o.Reason = reason
	o.DecisionTime = decided
	o.NormalizedTime = normalized
	o.ActiveBackupMode = s.site.ActiveBackupMode
	// The server's archiver does not see WAL the daemon streams itself:
	// waiting for it would wait for nothing (or forever).
	o.NoWait = o.NoWait || s.site.WAL == WALStream
	o.Logger = s.log
	standby := false
	if s.site.WAL == WALStream {
		o.OnStandby = func(*archive.BackupInfo) { standby = true }
	}

	started := time.Now()
	s.update(func(st *SiteStatus) { st.BackupRunning, st.BackupStartedAt = true, timePtr(started) })
	s.m.backupRunning.Set(1)
	s.log.Info().Str("reason", reason).Bool("incremental", incremental).Msg("basebackup starting")
	run := s.runBackup
	if run == nil {
		run = basebackup.Run
	}
	var info *archive.BackupInfo
	var err error
	if incremental {
		inc := o
		inc.Incremental, inc.Mode, inc.NormalizedTime = true, basebackup.ModeStream, time.Time{}
		info, err = run(ctx, inc)
		noParent := errors.Is(err, basebackup.ErrNoParent)
		if noParent || errors.Is(err, basebackup.ErrIncrementalUnavailable) {
			s.log.Warn().Err(err).Msg("incremental basebackup not possible: taking a full one")
			incremental = false
			switch {
			case errors.Is(err, basebackup.ErrBrokenParent):
				s.m.incrementalBrokenParent.Add(1)
			case noParent:
				s.m.incrementalNoParent.Add(1)
			default:
				s.m.incrementalUnavailable.Add(1)
			}
			s.update(func(st *SiteStatus) {
				st.IncrementalFallbacks, st.LastIncrementalFallback = st.IncrementalFallbacks+1, err.Error()
			})
		}
	}
	if !incremental {
		info, err = run(ctx, o)
	}
	s.m.backupRunning.Set(0)
	s.update(func(st *SiteStatus) { st.BackupRunning, st.BackupStartedAt = false, nil })
	// A backup that was stored as the daemon stopped is stored: it is
	// logged and counted, and a request it served is not dropped.
	if err != nil && ctx.Err() != nil {
		return "", ctx.Err()
	}
	if err != nil {
		s.m.backupsFailed.Add(1)
		s.connectFailed(err)
		s.setError(err)
		s.update(func(st *SiteStatus) { st.LastBackupError = err.Error() })
		return "", err
	}
	took := time.Since(started)
	if info.SystemID != "" {
		s.noteSystemID(info.SystemID)
	}
	s.resolveHoles(info.StartWALSegment)
	s.m.backupsOK.Add(1)
	s.m.backupDuration.Set(took.Seconds())
	s.m.backupSize.Set(float64(info.TotalSizePlain))
	s.m.backupStored.Set(float64(info.TotalSizeEnc + info.StoredSize))
	if took > 0 {
		s.m.backupRate.Set(float64(info.TotalSizePlain) / took.Seconds())
	}
	s.connected()
	s.log.Info().Str(logBackup, info.Name).Str("start_wal", info.StartWALSegment).Str("end_wal", info.EndWALSegment).
		Str("parent", info.Parent).Int64("took_ms", took.Round(time.Millisecond).Milliseconds()).Msg("basebackup stored")
	s.walAsked = info.EndLSN
	if standby {
		s.storeStandbyWAL(ctx, info)
	}
	s.update(func(st *SiteStatus) { st.LastBackupError = "" })
	return info.Name, nil
}

// resolveHoles is called after a basebackup that starts in segment
// start: the WAL holes before it do not affect restores of it. They leave
// the status and the metric, and once none is left wal_hole_error is
// cleared (also when an earlier run raised it). So does a hole check
// that could not decide about the WAL before a resume point at or before
// start.
func (s *supervisor) resolveHoles(start string) {
	s.mu.Lock()
	var holes []walstream.Hole
	var undecided *walstream.UndecidedCheck
	if s.recv != nil {
		rs := s.recv.Status()
		holes, undecided = rs.Holes, rs.HoleCheckUndecided
	}
	// Compare positions, not timelines. The receiver forgets them too,
	// so that its list does not grow with every incident for the
	// process's life.
	if len(start) == 24 && start[8:] > s.holesBefore {
		s.holesBefore = start[8:]
	}
	if s.recv != nil {
		s.recv.ForgetHolesBefore(start)
	}
	holes = unresolvedHoles(holes, s.holesBefore)
	left := len(holes)
	undecidedLeft := undecided != nil && undecided != s.undecidedResolved
	if undecidedLeft && len(start) == 24 && len(undecided.Segment) == 24 && undecided.Segment[8:] <= start[8:] {
		s.undecidedResolved, undecidedLeft = undecided, false
	}
	if s.st.WAL != nil {
		s.st.WAL.Holes = holes
		if !undecidedLeft {
			s.st.WAL.HoleCheckUndecided = nil
		}
	}
	s.mu.Unlock()
	if !undecidedLeft {
		s.m.holeUndecided.Set(0)
	}
	if left == 0 {
		s.m.holeSegments.Set(0)
		s.d.setAlert(AlertWALHole, s.site.Name, false)
	}
}

// unresolvedHoles returns the holes of holes that do not end before
// position before (a segment name without its timeline; "": all).
func unresolvedHoles(holes []walstream.Hole, before string) []walstream.Hole {
	return slices.DeleteFunc(slices.Clone(holes), func(h walstream.Hole) bool { return walstream.HoleBefore(h, before) })
}

// connectFailed raises PGHoard's alert for a connection error: a rejected
// password or authentication method (authentication_error), a refused
// replication connection (configuration_error: pg_hba.conf, a role without
// REPLICATION, a client certificate; no WAL sender free: max_wal_senders
// too low for what streams from the server), an ordinary connection (a
// basebackup's, slots before PostgreSQL 15) refused for want of a slot
// (configuration_error: max_connections, superuser_reserved_connections
// or reserved_connections; it lasts until a session ends, and the backup
// is retried with backoff), a TLS connection the node's sslmode
// asks for that was not made (configuration_error: a server certificate
// that does not verify, a server without TLS; someone in the middle
// looks the same, and retrying does not change it), or a slot another
// process streams from (configuration_error: WAL capture waits for
// someone to stop it). Other errors raise nothing.
func (s *supervisor) connectFailed(err error) {
	switch {
	case errors.Is(err, replication.ErrAuthentication):
		s.d.setAlert(AlertAuthentication, s.site.Name, true)
	case errors.Is(err, replication.ErrNotPermitted), errors.Is(err, replication.ErrNoWALSender),
		errors.Is(err, replication.ErrTooManyConnections), errors.Is(err, replication.ErrTLS),
		errors.Is(err, replication.ErrSlotInUse):
		s.d.setAlert(AlertConfiguration, s.site.Name, true)
	}
}

// connected clears the site's connection alerts: the server accepted a
// connection (the receiver started streaming, or a basebackup was taken).
func (s *supervisor) connected() {
	s.d.setAlert(AlertAuthentication, s.site.Name, false)
	s.d.setAlert(AlertConfiguration, s.site.Name, false)
}

// retention applies the site's retention policy once. Failures are logged
// and recorded; the next run tries again. It waits until the cluster's
// system identifier is known: backups of another system must not count
// (archive.RetentionPolicy.SystemID).
func (s *supervisor) retention(ctx context.Context, arch *archive.Archive) {
	if err := s.site.RetentionRefused; err != nil {
		s.m.retentionFailed.Add(1)
		s.log.Error().Err(err).Msg("retention refused")
		s.setError(err)
		s.update(func(st *SiteStatus) { st.LastRetentionError = err.Error() })
		return
	}
	p := s.site.Retention
	if p.SystemID = s.systemID(ctx); p.SystemID == "" {
		err := errors.New("retention postponed: the node has not said its system identifier yet (is it reachable?)")
		s.log.Warn().Err(err).Msg("retention")
		s.update(func(st *SiteStatus) { st.LastRetentionError = err.Error() })
		return
	}
	for k := range s.seen {
		p.Seen = append(p.Seen, k)
	}
	plan, err := arch.PlanRetention(ctx, p, time.Now())
	if err == nil {
		// Before any WAL goes: the WAL archive check stops following
		// a backup whose WAL this plan deletes.
		s.noteWALKept(arch, plan)
		// Every backup seen before and not listed now is gone: the
		// plan looked each one up.
		s.seen = nil
		for _, k := range plan.Keep {
			if k.Site == "" || k.Site == arch.Site {
				s.noteListed([]*archive.BackupInfo{k.Backup})
			}
		}
		// Kept backups that fail their checks: retention kept older ones
		// in their place (or deleted nothing); someone must look.
		for _, d := range plan.Damaged {
			s.log.Warn().Str("problem", d).Msg("retention: a backup it keeps is damaged")
		}
		if n := plan.KeptExtra(); n > 0 {
			s.log.Warn().Int("extra", n).Strs("notes", plan.Notes).Msg("retention kept more backups than the policy asks: no newer backup is known good")
		}
		if plan.Checked {
			s.d.setAlert(AlertBackupDamaged, s.site.Name, len(plan.Damaged) > 0)
		}
		// Why delta objects are all kept (no private key for the
		// manifests, a delta backup running): once, not every run.
		if plan.DeltaKept != s.deltaKept && plan.DeltaKept != "" {
			s.log.Info().Str("reason", plan.DeltaKept).Msg("retention: no delta object deleted")
		}
		s.deltaKept = plan.DeltaKept
		// A damaged backup holds every WAL file until someone repairs
		// or deletes it: once per reason, as a warning.
		if plan.WALKept != s.walKept && plan.WALKept != "" {
			s.log.Warn().Str("reason", plan.WALKept).Msg("retention: no WAL deleted")
		}
		s.walKept = plan.WALKept
	}
	if err == nil && !plan.Empty() {
		var res archive.RetentionResult
		res, err = arch.ApplyRetention(ctx, plan, s.log)
		s.m.deletedBackups.Add(float64(res.Backups))
		s.m.deletedChunks.Add(float64(res.Chunks))
		s.m.deletedWAL.Add(float64(res.WAL))
		s.m.deletedOrphans.Add(float64(res.Orphans))
		if res != (archive.RetentionResult{}) {
			s.log.Info().Int("basebackups", res.Backups).Int("chunks", res.Chunks).Int("wal", res.WAL).
				Int("orphans", res.Orphans).Int64("bytes", res.Bytes).Msg("retention deleted")
		}
	}
	if ctx.Err() != nil {
		return
	}
	now := time.Now().UTC()
	if err != nil {
		s.m.retentionFailed.Add(1)
		s.log.Error().Err(err).Msg("retention")
		s.setError(err)
		s.update(func(st *SiteStatus) { st.LastRetentionError = err.Error() })
		return
	}
	s.m.retentionOK.Add(1)
	s.update(func(st *SiteStatus) { st.LastRetention, st.LastRetentionError = &now, "" })
}

// noteListed adds the keys of backups, listed in the site's own store, to
// s.seen.
func (s *supervisor) noteListed(backups []*archive.BackupInfo) {
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	for _, b := range backups {
		s.seen[b.Key] = true
	}
}

// refresh updates the WAL part of the status and the metrics from the
// receiver; the daemon calls it every StateInterval.
func (s *supervisor) refresh(now time.Time) {
	s.mu.Lock()
	recv, up := s.recv, s.up
	s.mu.Unlock()
	if recv == nil {
		return
	}
	rs := recv.Status()
	// The newest of this receiver's and its site's earlier receivers'.
	rs.FormerSlot = s.d.formerSlot(s.site.Name, rs.FormerSlot)
	s.mu.Lock()
	// The age of the oldest file waiting for upload, not how long the
	// queue has not been empty: on a busy server whose uploads keep up
	// the queue is never empty, and that grew forever.
	var lag time.Duration
	if !rs.QueuedSince.IsZero() {
		lag = max(now.Sub(rs.QueuedSince), 0)
	}
	var storedLag time.Duration
	if !rs.UnstoredSince.IsZero() {
		storedLag = max(now.Sub(rs.UnstoredSince), 0)
	}
	// A snapshot taken before resolveHoles may still hold holes it
	// resolved: filtered by the same position.
	holes := unresolvedHoles(rs.Holes, s.holesBefore)
	undecided := rs.HoleCheckUndecided
	if undecided == s.undecidedResolved {
		undecided = nil
	}
	s.st.WAL = walStatus(rs, lag, storedLag, holes, undecided)
	s.st.UploadFailures = up.failures()
	wasConnected := s.streaming
	s.streaming = rs.Connected
	s.mu.Unlock()

	s.m.received.Set(float64(rs.Received))
	s.m.flushed.Set(float64(rs.Flushed))
	s.m.uploaded.Set(float64(rs.Uploaded))
	s.m.queue.Set(float64(rs.QueueDepth))
	s.m.lagBytes.Set(float64(rs.BytesBehind))
	s.m.lagSeconds.Set(lag.Seconds())
	s.m.stored.Set(float64(rs.Stored))
	s.m.storedLagBytes.Set(float64(rs.StoredBytesBehind))
	s.m.storedLagSeconds.Set(storedLag.Seconds())
	if b, d := s.site.StoredLagAlertBytes, s.site.StoredLagAlert; b > 0 || d > 0 {
		s.d.setAlert(AlertWALStoredLag, s.site.Name, b > 0 && rs.StoredBytesBehind > b || d > 0 && storedLag > d)
	}
	s.m.connected.Set(boolFloat(rs.Connected))
	s.m.paused.Set(boolFloat(rs.Paused))
	var missing uint64
	for _, h := range holes {
		missing += h.Count
	}
	s.m.holeSegments.Set(float64(missing))
	s.m.holeUndecided.Set(boolFloat(undecided != nil))
	s.m.formerSlot.Set(boolFloat(rs.FormerSlot != nil))
	if len(holes) > 0 {
		s.d.setAlert(AlertWALHole, s.site.Name, true)
	}
	// Alerts follow the connection's changes, so that a backup failing
	// for its credentials while the receiver streams on is not cleared by
	// the next refresh.
	switch {
	case rs.Connected && !wasConnected:
		s.connected()
	case !rs.Connected && rs.LastErr != nil:
		s.connectFailed(rs.LastErr)
	}
}

// status returns a copy of the site's status.
func (s *supervisor) status() SiteStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	if st.WAL != nil {
		w := *st.WAL
		st.WAL = &w
	}
	return st
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
