package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/metrics"
	"github.com/hoardbackup/hoard/verify"
)

// AlertRestoreTest is raised while a site's last scheduled test restore
// failed, and cleared by the next one that passes. It is hoard's own: PGHoard
// has no test restores.
const AlertRestoreTest = "restore_test_failed"

// Restore test metric names. Each series has a site label and appears once
// the site has a result (after its first test, or from the result kept by
// an earlier run).
const (
	MetricRestoreTestOK          = "hoard_restore_test_ok"
	MetricRestoreTestDuration    = "hoard_restore_test_duration_seconds"
	MetricRestoreTestLastRun     = "hoard_restore_test_last_run_timestamp_seconds"
	MetricRestoreTestLastSuccess = "hoard_restore_test_last_success_timestamp_seconds"
	// MetricRestoreTestStorageFailures counts the scheduled tests the
	// storage kept from running (verify.RestoreTestResult.StorageFailed).
	// It appears, at 0, when the site's restore test loop starts.
	MetricRestoreTestStorageFailures = "hoard_restore_test_storage_failures_total"
)

// restoreTestRecheck is how soon a test that was due but could not start
// (a basebackup of the site runs, maintenance mode, no backup yet, the
// listing failed) is looked at again.
const restoreTestRecheck = 15 * time.Second

// Retry delays of a test the storage kept from running: it is tried again
// after the first, doubling with each such test in a row up to the second,
// never later than an interval (restoreTestRetry), as a failed basebackup
// is (backupRetryMin, backupRetryMax).
const (
	restoreTestRetryMin = backupRetryMin
	restoreTestRetryMax = backupRetryMax
)

// restoreTestRetry is how long after the failures'th test in a row that
// the storage kept from running the next one starts.
func restoreTestRetry(failures int, interval time.Duration) time.Duration {
	return min(restoreTestRetryMin<<min(max(failures, 1)-1, 10), restoreTestRetryMax, interval)
}

// restoreTestResultFile is the file in RestoreTest.Dir that keeps the last
// result across restarts.
const restoreTestResultFile = "last.json"

// RestoreTest configures a site's scheduled test restores
// (restore_test_interval_hours): verify.RestoreTest of the newest backup to
// the end of the archive. The zero value runs none.
type RestoreTest struct {
	// Interval is the time from the end of one test to the start of the
	// next; zero runs none. The first test starts one interval after the
	// end of the last one recorded in Dir, or one interval after the
	// daemon started when none is recorded.
	Interval time.Duration
	// Dir holds the scratch directories and the last result
	// (<backup_location>/<site>/restore-test). "" makes the scratch
	// directories in the system temp directory and keeps no result across
	// restarts.
	Dir string
	// RestoreCommand is the restore_command the restored server replays
	// with: this binary's wal-fetch for the site.
	RestoreCommand string
	// PGBinDir is the site's pg_bin_directory, searched for the backup's
	// PostgreSQL binaries (see verify.RestoreTestOptions).
	PGBinDir string
	// Parallel is how many chunks are downloaded at once (0: restore's
	// default).
	Parallel int

	// run replaces verify.RestoreTest in tests.
	run func(context.Context, verify.RestoreTestOptions) (*verify.RestoreTestResult, error)
}

// RestoreTestStatus is a site's scheduled test restores in its status: the
// last finished test (absent before the first) and the next one.
type RestoreTestStatus struct {
	Running bool       `json:"running"`
	Next    *time.Time `json:"next,omitempty"`
	// Waiting says why a test that was due did not start, when nothing
	// in any site it restores from can be tested yet (no backup, none of
	// the cluster's system): cleared when a test starts.
	Waiting string `json:"waiting,omitempty"`

	Started        *time.Time     `json:"started,omitempty"`
	Finished       *time.Time     `json:"finished,omitempty"`
	OK             *bool          `json:"ok,omitempty"`
	Backup         string         `json:"backup,omitempty"`
	PGMajor        int            `json:"pg_major,omitempty"`
	RestoreSeconds float64        `json:"restore_seconds"`
	ReplaySeconds  float64        `json:"replay_seconds"`
	ElapsedSeconds float64        `json:"elapsed_seconds"`
	ReplayedTo     string         `json:"replayed_to_lsn,omitempty"`
	Checks         []verify.Check `json:"checks,omitempty"`
	Error          string         `json:"error,omitempty"`
	// LastSuccess is when the last passing test finished.
	LastSuccess *time.Time `json:"last_success,omitempty"`
	// StorageFailures counts the tests in a row, since the last one that
	// finished, that the storage kept from running (it failed to send an
	// object the restore reads: nothing was tested, and nothing found
	// wrong with the backup); StorageError is the last one's error,
	// naming the object. Neither is kept in the result file.
	StorageFailures int    `json:"storage_failures,omitempty"`
	StorageError    string `json:"storage_error,omitempty"`
}

// passed reports whether the status holds a finished, passing test.
func (r *RestoreTestStatus) passed() bool { return r != nil && r.OK != nil && *r.OK }

// oneAtATime is a semaphore of one whose zero value is ready: the daemon
// runs at most one test restore at a time, whatever the number of sites.
type oneAtATime struct {
	once sync.Once
	ch   chan struct{}
}

func (o *oneAtATime) acquire(ctx context.Context) error {
	o.once.Do(func() { o.ch = make(chan struct{}, 1) })
	select {
	case o.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (o *oneAtATime) release() { <-o.ch }

// restoreTestSlot is shared by every site of the process.
var restoreTestSlot oneAtATime

// restoreTestDecision is what the restore test schedule says at one moment.
type restoreTestDecision struct {
	Due  bool
	Next time.Time // when to look again when not due
	Why  string
}

// decideRestoreTest applies the schedule at now: a test is due one
// interval after the last one finished (lastRun), or, with none recorded,
// one interval after the daemon started; it does not start while a
// basebackup of the site runs or in maintenance mode, and is then looked
// at again restoreTestRecheck later. A last run that finished more than
// clockSkewTolerance after now (the clock went back, or the run was
// kept while the clock was ahead) counts as none: by it, no test would
// run until the clock caught up, a year later after a clock a year ahead.
func decideRestoreTest(now time.Time, interval time.Duration, daemonStart, lastRun time.Time, backupRunning, maintenance bool) restoreTestDecision {
	ref, from := lastRun, "the last restore test"
	if ref.After(now.Add(clockSkewTolerance)) {
		ref = time.Time{}
	}
	if ref.IsZero() {
		ref, from = daemonStart, "the daemon started"
	}
	next := ref.Add(interval)
	switch {
	case now.Before(next):
		return restoreTestDecision{Next: next, Why: "less than an interval since " + from}
	case backupRunning:
		return restoreTestDecision{Next: now.Add(restoreTestRecheck), Why: "a basebackup of the site is running"}
	case maintenance:
		return restoreTestDecision{Next: now.Add(restoreTestRecheck), Why: "maintenance mode"}
	}
	return restoreTestDecision{Due: true, Why: "an interval has passed since " + from}
}

// restoreTestMetrics returns the site's restore test series, registering
// them on first use.
func (s *supervisor) restoreTestMetrics() (ok, duration, lastRun, lastSuccess *metrics.Gauge) {
	l := map[string]string{"site": s.site.Name}
	m := s.d.metrics
	return m.Gauge(MetricRestoreTestOK, "1 when the last scheduled restore test passed, 0 when it failed.", l),
		m.Gauge(MetricRestoreTestDuration, "How long the last scheduled restore test took, in seconds.", l),
		m.Gauge(MetricRestoreTestLastRun, "When the last scheduled restore test finished (Unix seconds).", l),
		m.Gauge(MetricRestoreTestLastSuccess, "When the last passing scheduled restore test finished (Unix seconds); 0 when none has passed.", l)
}

// restoreTestStorageFailures returns the site's counter of tests the
// storage kept from running, registering it on first use.
func (s *supervisor) restoreTestStorageFailures() *metrics.Counter {
	return s.d.metrics.Counter(MetricRestoreTestStorageFailures,
		"Scheduled restore tests the storage kept from running (it failed to send an object the restore reads).",
		map[string]string{"site": s.site.Name})
}

// restoreTests is the site's restore test loop: it runs verify.RestoreTest
// when decideRestoreTest says so, one at a time in the whole daemon, until
// ctx ends. Results are recorded (status, metrics, the alert, the result
// file); failures are never fatal.
func (s *supervisor) restoreTests(ctx context.Context, arch *archive.Archive) error {
	rt := s.site.RestoreTest
	s.restoreTestStorageFailures() // at 0 from the start, for increase()
	s.cleanRestoreScratch()
	last := s.loadRestoreTest()
	var notBefore time.Time // after a test that could not start
	for {
		now := time.Now()
		var lastRun time.Time
		if last != nil && last.Finished != nil {
			lastRun = *last.Finished
		}
		st := s.status()
		dec := decideRestoreTest(now, rt.Interval, s.d.started, lastRun, st.BackupRunning, s.maintenance())
		if dec.Due && now.Before(notBefore) {
			dec = restoreTestDecision{Next: notBefore}
		}
		if !dec.Due {
			s.log.Debug().Str("why", dec.Why).Time("next", dec.Next).Msg("restore test not due")
			s.setRestoreTest(func(r *RestoreTestStatus) { r.Next = timePtr(dec.Next) })
			if !sleepUntil(ctx, earliest(dec.Next, now.Add(scheduleCheckInterval))) {
				return nil
			}
			continue
		}
		if err := restoreTestSlot.acquire(ctx); err != nil {
			return nil
		}
		res, skip := s.restoreTestOnce(ctx, arch)
		restoreTestSlot.release()
		switch {
		case ctx.Err() != nil:
			return nil
		case skip:
			delay := restoreTestRecheck
			if r := s.status().RestoreTest; r != nil && r.StorageFailures > 0 {
				// The storage kept the last tries from running: back
				// off, as for a failed basebackup, but try again well
				// before an interval.
				delay = restoreTestRetry(r.StorageFailures, rt.Interval)
			}
			notBefore = time.Now().Add(delay)
		default:
			last = res
		}
	}
}

// restoreTestOnce runs one test under the daemon's slot and records it. It
// returns skip when the test could not start: a basebackup began while the
// slot was awaited, neither the site nor its moved_from sites hold a
// backup (of its cluster's system) yet (said in the status's Waiting),
// or the listing failed. A scratch directory that cannot be made is a
// failed test.
func (s *supervisor) restoreTestOnce(ctx context.Context, arch *archive.Archive) (*RestoreTestStatus, bool) {
	if s.status().BackupRunning {
		return nil, true
	}
	// The backups hoard restore chooses among: the site's and those of
	// the sites it moved from (moved_from), each name once, the site's
	// own copy first (archive.Archive.FirstCopies), as restore.Run and
	// verify.RestoreTest list them. A site that moved (archive-copy, or
	// none copied) and has taken no backup of its own yet is restored
	// from its old site, and that is what the test tests.
	listed, err := arch.ScanAllBackups(ctx)
	bs := arch.FirstCopies(listed).Sound
	switch {
	case ctx.Err() != nil:
		return nil, true
	case err != nil:
		s.log.Warn().Err(err).Msg("restore test: list basebackups")
		return nil, true
	case len(bs) == 0:
		why := "no basebackup in the site yet"
		if len(arch.MovedFrom) > 0 {
			why = "no basebackup yet in the site or its moved_from sites"
		}
		s.log.Info().Str("why", why).Msg("restore test due but there is no basebackup to test")
		s.setRestoreTest(func(r *RestoreTestStatus) { r.Waiting = why })
		return nil, true
	}
	// The test restores what hoard restore would choose, among the backups
	// whose metadata authenticates where any does (archive.Trusted): a
	// planted backup claiming to be newer is neither the one named as
	// starting nor one the test passed over (passedOver). Where the
	// node's system identifier is known, among that system's
	// (archive.TrustedOfSystem): another cluster's backups, copied from a
	// site sharing the key pair, are neither restored (recovery would
	// stop at this site's WAL) nor passed over.
	sysID := s.systemID(ctx)
	if bs = archive.TrustedOfSystem(bs, sysID); len(bs) == 0 {
		why := "no basebackup of the cluster's system (" + sysID + ") yet"
		s.log.Info().Str("system_identifier", sysID).Str("why", why).Msg("restore test due but there is no basebackup to test")
		s.setRestoreTest(func(r *RestoreTestStatus) { r.Waiting = why })
		return nil, true
	}
	rt := s.site.RestoreTest
	if rt.Dir != "" {
		// The server's user must be able to reach its scratch directory
		// when the daemon runs as root.
		// One that cannot be made (a full or read-only disk, wrong
		// ownership) fails the test: no restore can run until someone
		// fixes it, so it is no test that could not start yet, which
		// would leave the last result standing.
		if err := os.MkdirAll(rt.Dir, 0o711); err != nil {
			err = fmt.Errorf("%w: create the scratch directory %s: %w", verify.ErrRestoreTest, rt.Dir, err)
			return s.recordRestoreTest(nil, err, time.Now()), false
		}
	}
	run := rt.run
	if run == nil {
		run = verify.RestoreTest
	}
	s.setRestoreTest(func(r *RestoreTestStatus) { r.Running, r.Next, r.Waiting = true, nil, "" })
	s.log.Info().Str(logBackup, bs[len(bs)-1].Name).Msg("restore test starting")
	res, err := run(ctx, verify.RestoreTestOptions{
		Archive:        arch,
		SitePGBinDir:   rt.PGBinDir,
		ScratchDir:     rt.Dir,
		RestoreCommand: rt.RestoreCommand,
		Parallel:       rt.Parallel,
		SystemID:       sysID,
		Logger:         s.log,
	})
	s.setRestoreTest(func(r *RestoreTestStatus) { r.Running = false })
	if ctx.Err() != nil {
		s.log.Info().Msg("restore test interrupted by shutdown")
		return nil, true
	}
	if err != nil && res != nil && res.StorageFailed {
		s.restoreTestNotRun(bs[len(bs)-1].Name, err)
		return nil, true
	}
	if err == nil && res != nil {
		err = passedOver(bs, res)
	}
	return s.recordRestoreTest(res, err, time.Now()), false
}

// restoreTestNotRun records a test the storage kept from running
// (verify.RestoreTestResult.StorageFailed: it failed to send an object the
// restore reads, err names it). Nothing was tested and nothing found
// wrong with the backup, so it is not a result: the last finished test
// stays in the status, metrics, alert and result file, neither raising
// restore_test_failed over a pass (a page saying the backup does not
// restore, for a storage outage) nor clearing it over a failure (as if
// the backup were proven good). It counts in
// MetricRestoreTestStorageFailures and shows in the status, and the loop
// tries again after restoreTestRetry.
func (s *supervisor) restoreTestNotRun(backup string, err error) {
	s.restoreTestStorageFailures().Add(1)
	var n int
	s.setRestoreTest(func(r *RestoreTestStatus) {
		r.StorageFailures++
		r.StorageError = err.Error()
		n = r.StorageFailures
	})
	s.log.Warn().Err(err).Str(logBackup, backup).Int("failures", n).
		Int64("retry_in_ms", restoreTestRetry(n, s.site.RestoreTest.Interval).Milliseconds()).
		Msg("restore test not run: the storage failed")
}

// passedOver fails a passing test that restored an older backup than the
// newest one listed (bs, oldest first, archive.Trusted) when it started. The restore
// chooses as hoard restore does, and passes over a backup that cannot
// reach the end of the archive (the archive's timeline does not descend
// from it); a restore of an older backup then proves nothing about the
// newest, so the test fails and says which one was passed over. One
// passed over as damaged or with a broken incremental chain already fails
// the test (verify.RestoreTestResult.PassedOver names it and why). A
// backup newer than the listing (taken meanwhile by another process) is
// not passed over.
func passedOver(bs []*archive.BackupInfo, res *verify.RestoreTestResult) error {
	i := slices.IndexFunc(bs, func(b *archive.BackupInfo) bool { return b.Name == res.Backup })
	if i < 0 || i == len(bs)-1 {
		return nil
	}
	newest := bs[len(bs)-1].Name
	err := fmt.Errorf("%w: backup %s restored, but the newest, %s, was passed over: it cannot reach the end of the archive "+
		"(damaged, a broken incremental chain, or a timeline the archive's end does not descend from); hoard verify says why",
		verify.ErrRestoreTest, res.Backup, newest)
	res.OK, res.Error = false, err.Error()
	return err
}

// recordRestoreTest turns a test's outcome into the site's status, metrics,
// alert and result file, logs a failure, and returns the new status.
func (s *supervisor) recordRestoreTest(res *verify.RestoreTestResult, err error, finished time.Time) *RestoreTestStatus {
	if res == nil {
		res = &verify.RestoreTestResult{Started: finished}
	}
	ok := err == nil && res.OK
	r := &RestoreTestStatus{
		Started: timePtr(res.Started), Finished: timePtr(finished), OK: &ok,
		Backup: res.Backup, PGMajor: res.PGMajor, ReplayedTo: res.ReplayedTo, Checks: res.Checks,
		RestoreSeconds: time.Duration(res.Restore).Seconds(),
		ReplaySeconds:  time.Duration(res.Replay).Seconds(),
		ElapsedSeconds: time.Duration(res.Elapsed).Seconds(),
	}
	s.mu.Lock()
	if prev := s.st.RestoreTest; prev != nil {
		r.LastSuccess = prev.LastSuccess
	}
	s.mu.Unlock()
	if ok {
		r.LastSuccess = r.Finished
	} else {
		if err == nil {
			err = errors.New(res.Error)
		}
		r.Error = err.Error()
		s.log.Error().Err(err).Str(logBackup, res.Backup).Msg("restore test failed")
	}
	if err := s.saveRestoreTest(r); err != nil {
		s.log.Warn().Err(err).Msg("restore test: keep the result")
	}
	s.showRestoreTest(r)
	return r
}

// showRestoreTest puts a finished test into the metrics, alert and status.
// The status comes last: whoever sees the test finished in /status finds
// its metrics, its alert and its result file already there.
func (s *supervisor) showRestoreTest(r *RestoreTestStatus) {
	okG, durG, runG, successG := s.restoreTestMetrics()
	okG.Set(boolFloat(r.passed()))
	durG.Set(r.ElapsedSeconds)
	runG.Set(float64(r.Finished.Unix()))
	if r.LastSuccess != nil {
		successG.Set(float64(r.LastSuccess.Unix()))
	}
	s.d.setAlert(AlertRestoreTest, s.site.Name, !r.passed())
	s.setRestoreTest(func(cur *RestoreTestStatus) {
		running, next := cur.Running, cur.Next
		*cur = *r
		cur.Running, cur.Next = running, next
	})
}

// setRestoreTest changes the site's restore test status. The status holds
// a fresh copy each time, so copies handed out by status stay unchanged.
func (s *supervisor) setRestoreTest(fn func(*RestoreTestStatus)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var r RestoreTestStatus
	if s.st.RestoreTest != nil {
		r = *s.st.RestoreTest
	}
	fn(&r)
	s.st.RestoreTest = &r
}

// saveRestoreTest writes the finished test to the result file, atomically.
func (s *supervisor) saveRestoreTest(r *RestoreTestStatus) error {
	dir := s.site.RestoreTest.Dir
	if dir == "" {
		return nil
	}
	kept := *r
	kept.Running, kept.Next = false, nil
	data, err := json.MarshalIndent(kept, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, restoreTestResultFile)
	if err := writeFileAtomic(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// loadRestoreTest reads the result an earlier run kept, shows it (status,
// metrics, alert) and returns it; nil when there is none. An unreadable
// file is logged and ignored: the schedule then counts from the daemon's
// start.
func (s *supervisor) loadRestoreTest() *RestoreTestStatus {
	dir := s.site.RestoreTest.Dir
	if dir == "" {
		return nil
	}
	path := filepath.Join(dir, restoreTestResultFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var r RestoreTestStatus
	if err == nil {
		err = json.Unmarshal(data, &r)
	}
	if err == nil && (r.Finished == nil || r.OK == nil) {
		err = errors.New("no finished test")
	}
	if err != nil {
		s.log.Warn().Err(err).Str("file", path).Msg("restore test: ignoring the kept result")
		return nil
	}
	r.Running, r.Next = false, nil
	s.showRestoreTest(&r)
	return &r
}

// cleanRestoreScratch removes scratch directories a killed daemon left in
// Dir. A PostgreSQL still running in one stops by itself once its data
// directory is gone: the postmaster checks its postmaster.pid every minute
// and shuts down when the file has vanished (RecheckDataDirLockFile in
// PostgreSQL's miscinit.c).
func (s *supervisor) cleanRestoreScratch() {
	dir := s.site.RestoreTest.Dir
	if dir == "" {
		return
	}
	left, _ := filepath.Glob(filepath.Join(dir, "hoard-restore-test-*"))
	for _, p := range left {
		if err := os.RemoveAll(p); err != nil {
			s.log.Warn().Err(err).Str("dir", p).Msg("restore test: remove a scratch directory left by an earlier run")
			continue
		}
		s.log.Info().Str("dir", p).Msg("restore test: removed a scratch directory left by an earlier run")
	}
}

// sleepUntil waits until t or ctx ends; it reports whether ctx is still
// alive.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
