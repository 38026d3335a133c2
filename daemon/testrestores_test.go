package daemon

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/metrics"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/verify"
)

func TestDecideRestoreTest(t *testing.T) {
	start := at("2024-05-01 00:00")
	const h = time.Hour
	tests := []struct {
		name                 string
		now, lastRun         string
		backupRunning, maint bool
		wantDue              bool
		wantNext             string
		wantRecheck          bool // next is restoreTestRecheck after now
	}{
		{name: "FirstNotDueBeforeAnIntervalSinceStart", now: "2024-05-01 05:59", wantNext: "2024-05-01 06:00"},
		{name: "FirstDueAnIntervalAfterStart", now: "2024-05-01 06:00", wantDue: true},
		// A run kept by an earlier daemon counts, not this start.
		{name: "KeptRunRecentNotDue", now: "2024-05-01 01:00", lastRun: "2024-04-30 23:00", wantNext: "2024-05-01 05:00"},
		{name: "KeptRunOldDueAtOnce", now: "2024-05-01 00:01", lastRun: "2024-04-29 00:00", wantDue: true},
		{name: "NotDueLaterThanStartRule", now: "2024-05-01 06:30", lastRun: "2024-05-01 03:00", wantNext: "2024-05-01 09:00"},
		{name: "DueAfterLastRun", now: "2024-05-01 09:00", lastRun: "2024-05-01 03:00", wantDue: true},
		{name: "SkippedWhileBackupRuns", now: "2024-05-01 09:00", lastRun: "2024-05-01 03:00", backupRunning: true, wantRecheck: true},
		{name: "SkippedInMaintenance", now: "2024-05-01 07:00", maint: true, wantRecheck: true},
		{name: "BackupRunningButNotDue", now: "2024-05-01 01:00", backupRunning: true, wantNext: "2024-05-01 06:00"},
		// A kept run that finished after this host's clock reads now
		// (the clock went back, or the run was kept while a clock was a
		// year ahead): the tests go on one interval after the start,
		// not a year later.
		{name: "KeptRunInFutureDueAnIntervalAfterStart", now: "2024-05-01 06:00", lastRun: "2025-05-01 00:00", wantDue: true},
		{name: "KeptRunInFutureNotDueBeforeStartRule", now: "2024-05-01 05:00", lastRun: "2025-05-01 00:00", wantNext: "2024-05-01 06:00"},
		// Minutes ahead are a clock's jitter: the run counts.
		{name: "KeptRunMinutesAheadCounts", now: "2024-05-01 03:00", lastRun: "2024-05-01 03:02", wantNext: "2024-05-01 09:02"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec := decideRestoreTest(at(tt.now), 6*h, start, timeOrZero(tt.lastRun), tt.backupRunning, tt.maint)
			if dec.Due != tt.wantDue {
				t.Errorf("due = %v, want %v (%s)", dec.Due, tt.wantDue, dec.Why)
			}
			want := timeOrZero(tt.wantNext)
			if tt.wantRecheck {
				want = at(tt.now).Add(restoreTestRecheck)
			}
			if got := dec.Next; !got.Equal(want) {
				t.Errorf("next = %v, want %v (%s)", got, want, dec.Why)
			}
			if dec.Why == "" {
				t.Error("no reason given")
			}
		})
	}
}

// testDaemon is a daemon with alert files in a temporary directory, for
// driving a supervisor without Run.
func testDaemon(t *testing.T) *daemon {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "alerts")
	return &daemon{
		opts:     Options{AlertDir: dir},
		log:      zerolog.New(zerolog.NewTestWriter(t)),
		metrics:  metrics.New(nil),
		alerts:   NewAlerts(dir),
		started:  time.Now(),
		sups:     map[string]*supervisor{},
		raisedBy: map[string]map[string]bool{},
		down:     map[string]time.Time{},
	}
}

// archiveWithBackup returns an archive in memory holding one backup's main
// object (its metadata is all ListBackups reads).
func archiveWithBackup(t *testing.T) *archive.Archive {
	t.Helper()
	a := &archive.Archive{Store: storage.NewMem(), Codec: &archive.Codec{}, Site: "test"}
	b := &archive.BackupInfo{StartTime: time.Now().Add(-time.Hour), StartWALSegment: "000000010000000000000002"}
	if err := a.Store.Put(context.Background(), a.Layout.BackupKey("2024-05-01_0"), strings.NewReader("x"), b.ToMetadata()); err != nil {
		t.Fatal(err)
	}
	return a
}

// fakeRestoreTests answers verify.RestoreTest with scripted results.
type fakeRestoreTests struct {
	mu    sync.Mutex
	calls int
	fail  map[int]bool // calls (from 1) that fail
	// held, when set, holds every call after the first until it is
	// closed, so that a test can look at the first call's outcome
	// before the next replaces it.
	held chan struct{}
}

func (f *fakeRestoreTests) run(ctx context.Context, o verify.RestoreTestOptions) (*verify.RestoreTestResult, error) {
	f.mu.Lock()
	f.calls++
	n := f.calls
	f.mu.Unlock()
	if f.held != nil && n > 1 {
		select {
		case <-f.held:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	res := &verify.RestoreTestResult{
		Backup: "2024-05-01_0", PGMajor: 17, Started: time.Now().UTC(),
		Restore: verify.Duration(2 * time.Second), Replay: verify.Duration(3 * time.Second), Elapsed: verify.Duration(6 * time.Second),
		Checks: []verify.Check{{Name: "connect", Status: verify.CheckOK}},
	}
	if o.RestoreCommand != "hoard wal-fetch %f %p" || o.ScratchDir == "" {
		return res, fmt.Errorf("options: %+v", o)
	}
	if f.fail[n] {
		res.Checks = append(res.Checks, verify.Check{Name: "databases", Status: verify.CheckFailed, Detail: "unreadable: x"})
		res.Error = "restore test failed: databases: unreadable: x"
		return res, fmt.Errorf("%w: databases: unreadable: x", verify.ErrRestoreTest)
	}
	res.OK = true
	return res, nil
}

func (f *fakeRestoreTests) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// waitUntil polls cond, failing the test after runTimeout.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(runTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, runTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func restoreTestSite(dir string, interval time.Duration, f *fakeRestoreTests) Site {
	return Site{
		Name: "test", Active: true, WAL: WALArchiveCommand,
		RestoreTest: RestoreTest{Interval: interval, Dir: dir, RestoreCommand: "hoard wal-fetch %f %p", run: f.run},
	}
}

// TestSupervisor_RestoreTests runs the loop with a short interval: a
// failed test raises the alert and sets the metrics to failure; the next,
// passing, clears it; the result file keeps the last result, and a new
// supervisor with a long interval shows it and does not test again at its
// start.
func TestSupervisor_RestoreTests(t *testing.T) {
	d := testDaemon(t)
	dir := filepath.Join(t.TempDir(), "restore-test")
	// A scratch directory left by a killed daemon is removed at the start.
	left := filepath.Join(dir, "hoard-restore-test-123")
	if err := os.MkdirAll(filepath.Join(left, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	f := &fakeRestoreTests{fail: map[int]bool{1: true}, held: make(chan struct{})}
	sup := newSupervisor(d, restoreTestSite(dir, 50*time.Millisecond, f))
	arch := archiveWithBackup(t)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.restoreTests(ctx, arch) }()
	alert := filepath.Join(d.opts.AlertDir, AlertRestoreTest)
	waitUntil(t, "the failed test's alert", func() bool { _, err := os.Stat(alert); return err == nil })
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Errorf("left-over scratch directory: stat = %v, want it removed", err)
	}
	close(f.held) // the second test, which passes, may run now
	waitUntil(t, "a passing test", func() bool { return sup.status().RestoreTest.passed() })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("restoreTests = %v", err)
	}
	if _, err := os.Stat(alert); !os.IsNotExist(err) {
		t.Errorf("alert file after a passing test: stat = %v, want it cleared", err)
	}
	st := sup.status().RestoreTest
	if st.Finished == nil || st.LastSuccess == nil || !st.LastSuccess.Equal(*st.Finished) || st.Error != "" || st.Backup != "2024-05-01_0" {
		t.Errorf("status = %+v", st)
	}
	if st.RestoreSeconds != 2 || st.ReplaySeconds != 3 || st.ElapsedSeconds != 6 || len(st.Checks) != 1 {
		t.Errorf("status durations and checks = %+v", st)
	}
	okG, durG, runG, successG := sup.restoreTestMetrics()
	if okG.Value() != 1 || durG.Value() != 6 || runG.Value() != float64(st.Finished.Unix()) || successG.Value() != float64(st.LastSuccess.Unix()) {
		t.Errorf("metrics ok %v duration %v last run %v last success %v", okG.Value(), durG.Value(), runG.Value(), successG.Value())
	}
	calls := f.count()

	// A restart: the kept result is shown, the next test is an interval
	// after it, not now.
	d2 := testDaemon(t)
	sup2 := newSupervisor(d2, restoreTestSite(dir, time.Hour, f))
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { done <- sup2.restoreTests(ctx2, arch) }()
	waitUntil(t, "the next test in the status", func() bool {
		r := sup2.status().RestoreTest
		return r != nil && r.Next != nil
	})
	cancel2()
	if err := <-done; err != nil {
		t.Fatalf("restoreTests = %v", err)
	}
	r := sup2.status().RestoreTest
	if !r.passed() || r.Finished == nil || !r.Finished.Equal(*st.Finished) {
		t.Errorf("kept result = %+v, want the last one (%v)", r, st.Finished)
	}
	if want := st.Finished.Add(time.Hour); !r.Next.Equal(want) {
		t.Errorf("next = %v, want %v (an interval after the kept test)", r.Next, want)
	}
	if got := f.count(); got != calls {
		t.Errorf("tests after the restart = %d, want none", got-calls)
	}
	if okG, _, runG, _ := sup2.restoreTestMetrics(); okG.Value() != 1 || runG.Value() != float64(st.Finished.Unix()) {
		t.Errorf("metrics after the restart: ok %v last run %v", okG.Value(), runG.Value())
	}
}

// TestSupervisor_RestoreTestsKeptFailure: a kept failed result raises the
// alert again at the start and keeps the time of the last success.
func TestSupervisor_RestoreTestsKeptFailure(t *testing.T) {
	dir := t.TempDir()
	ok := false
	finished, success := time.Now().Add(-time.Minute).UTC().Truncate(time.Second), time.Now().Add(-48*time.Hour).UTC().Truncate(time.Second)
	kept := RestoreTestStatus{Finished: &finished, OK: &ok, Error: "restore test failed: replay", LastSuccess: &success}
	data, _ := json.Marshal(kept)
	if err := os.WriteFile(filepath.Join(dir, restoreTestResultFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
	d := testDaemon(t)
	sup := newSupervisor(d, restoreTestSite(dir, time.Hour, &fakeRestoreTests{}))
	r := sup.loadRestoreTest()
	if r == nil || r.passed() || r.Error != kept.Error {
		t.Fatalf("loaded %+v", r)
	}
	if _, err := os.Stat(filepath.Join(d.opts.AlertDir, AlertRestoreTest)); err != nil {
		t.Errorf("alert after loading a failed result: %v", err)
	}
	okG, _, _, successG := sup.restoreTestMetrics()
	if okG.Value() != 0 || successG.Value() != float64(success.Unix()) {
		t.Errorf("metrics ok %v last success %v", okG.Value(), successG.Value())
	}
	// The next failure keeps the last success.
	res := &verify.RestoreTestResult{Started: time.Now(), Error: "boom"}
	got := sup.recordRestoreTest(res, errors.New("boom"), time.Now())
	if got.LastSuccess == nil || !got.LastSuccess.Equal(success) || got.Error != "boom" {
		t.Errorf("recorded %+v", got)
	}
}

// TestSupervisor_RestoreTestStatusLast: a finished test reaches the
// status last, after its metrics, its alert and its result file, so
// whoever sees it in /status (the e2e tests, a script polling it) finds
// the rest already there. The status is watched in a tight loop while
// failed results are recorded.
func TestSupervisor_RestoreTestStatusLast(t *testing.T) {
	for i := range 20 {
		d := testDaemon(t)
		dir := t.TempDir()
		sup := newSupervisor(d, restoreTestSite(dir, time.Hour, nil))
		res := &verify.RestoreTestResult{Backup: "2024-05-01_0", Started: time.Now(), Elapsed: verify.Duration(6 * time.Second), Error: "boom"}
		done := make(chan struct{})
		go func() {
			defer close(done)
			sup.recordRestoreTest(res, errors.New("boom"), time.Now())
		}()
		for r := sup.status().RestoreTest; r == nil || r.Finished == nil; r = sup.status().RestoreTest {
			select {
			case <-done:
				if r := sup.status().RestoreTest; r == nil || r.Finished == nil {
					t.Fatalf("round %d: the recorded test never reached the status", i)
				}
			default:
			}
		}
		_, durG, runG, _ := sup.restoreTestMetrics()
		_, alertErr := os.Stat(filepath.Join(d.opts.AlertDir, AlertRestoreTest))
		_, keptErr := os.Stat(filepath.Join(dir, restoreTestResultFile))
		<-done
		if durG.Value() != 6 || runG.Value() == 0 || alertErr != nil || keptErr != nil {
			t.Fatalf("round %d: the status showed the finished test with duration %v, last run %v, alert %v, result file %v",
				i, durG.Value(), runG.Value(), alertErr, keptErr)
		}
	}
}

// TestSupervisor_restoreTestOnceSkips: no test starts while a basebackup
// of the site runs, nor before the site has a backup.
func TestSupervisor_restoreTestOnceSkips(t *testing.T) {
	f := &fakeRestoreTests{}
	sup := newSupervisor(testDaemon(t), restoreTestSite(t.TempDir(), time.Millisecond, f))
	sup.update(func(st *SiteStatus) { st.BackupRunning = true })
	if _, skip := sup.restoreTestOnce(context.Background(), archiveWithBackup(t)); !skip {
		t.Error("a test started while a basebackup runs")
	}
	sup.update(func(st *SiteStatus) { st.BackupRunning = false })
	empty := &archive.Archive{Store: storage.NewMem(), Codec: &archive.Codec{}, Site: "test"}
	if _, skip := sup.restoreTestOnce(context.Background(), empty); !skip {
		t.Error("a test started without a backup")
	}
	if n := f.count(); n != 0 {
		t.Errorf("tests run = %d, want 0", n)
	}
}

// TestSupervisor_RestoreTestsShutdown: a test interrupted by the end of ctx
// is not recorded as a failure.
func TestSupervisor_RestoreTestsShutdown(t *testing.T) {
	d := testDaemon(t)
	dir := t.TempDir()
	started := make(chan struct{})
	site := restoreTestSite(dir, time.Millisecond, nil)
	site.RestoreTest.run = func(ctx context.Context, _ verify.RestoreTestOptions) (*verify.RestoreTestResult, error) {
		close(started)
		<-ctx.Done()
		return &verify.RestoreTestResult{Error: ctx.Err().Error()}, ctx.Err()
	}
	d.started = time.Now().Add(-time.Hour)
	sup := newSupervisor(d, site)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.restoreTests(ctx, archiveWithBackup(t)) }()
	<-started
	if r := sup.status().RestoreTest; r == nil || !r.Running {
		t.Errorf("status while running = %+v", r)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("restoreTests = %v", err)
	}
	if r := sup.status().RestoreTest; r.Running || r.Finished != nil {
		t.Errorf("status after shutdown = %+v, want nothing recorded", r)
	}
	if _, err := os.Stat(filepath.Join(dir, restoreTestResultFile)); !os.IsNotExist(err) {
		t.Errorf("result file after shutdown: %v", err)
	}
	if _, err := os.Stat(filepath.Join(d.opts.AlertDir, AlertRestoreTest)); !os.IsNotExist(err) {
		t.Errorf("alert after shutdown: %v", err)
	}
}

// TestSupervisor_restoreTestOncePassedOver: a test that restored an older
// backup than the newest listed (the restore passed over the newest, whose
// chain is broken) fails and names both; one of the newest passes.
func TestSupervisor_restoreTestOncePassedOver(t *testing.T) {
	d := testDaemon(t)
	sup := newSupervisor(d, restoreTestSite(t.TempDir(), time.Hour, &fakeRestoreTests{}))
	arch := archiveWithBackup(t) // 2024-05-01_0, the one the fake restores
	newer := &archive.BackupInfo{StartTime: time.Now().Add(-time.Minute), StartWALSegment: "000000010000000000000004"}
	if err := arch.Store.Put(context.Background(), arch.Layout.BackupKey("2024-05-02_0"), strings.NewReader("x"), newer.ToMetadata()); err != nil {
		t.Fatal(err)
	}
	r, skip := sup.restoreTestOnce(context.Background(), arch)
	if skip || r == nil {
		t.Fatalf("restoreTestOnce = %+v, skip %v", r, skip)
	}
	if r.passed() || !strings.Contains(r.Error, "backup 2024-05-01_0 restored, but the newest, 2024-05-02_0, was passed over") {
		t.Errorf("status = %+v, want a failure naming the newest backup", r)
	}
	if _, err := os.Stat(filepath.Join(d.opts.AlertDir, AlertRestoreTest)); err != nil {
		t.Errorf("alert: %v", err)
	}

	// Only the older backup listed: it is the newest, and passes.
	sup2 := newSupervisor(testDaemon(t), restoreTestSite(t.TempDir(), time.Hour, &fakeRestoreTests{}))
	if r, _ := sup2.restoreTestOnce(context.Background(), archiveWithBackup(t)); r == nil || !r.passed() {
		t.Errorf("status with one backup = %+v, want passed", r)
	}
}

// TestSupervisor_restoreTestOncePlanted: in a site whose backups are
// signed, a planted backup without a valid metadata HMAC that claims to be
// newer is not the newest the test must restore: a test that restored
// the newest authenticated backup (as restore chooses) passes, where it
// failed naming the planted one as passed over and raised the alert.
func TestSupervisor_restoreTestOncePlanted(t *testing.T) {
	arch, put := signedArchive(t)
	put("2024-05-01_0", &archive.BackupInfo{StartTime: time.Now().Add(-time.Hour), StartWALSegment: "000000010000000000000002"}, true)
	put("2099-01-01_0", &archive.BackupInfo{StartTime: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC), StartWALSegment: "000000010000001000000000"}, false)
	d := testDaemon(t)
	sup := newSupervisor(d, restoreTestSite(t.TempDir(), time.Hour, &fakeRestoreTests{}))
	r, skip := sup.restoreTestOnce(context.Background(), arch)
	if skip || r == nil || !r.passed() {
		t.Fatalf("restoreTestOnce = %+v, skip %v; want the test of 2024-05-01_0 passed", r, skip)
	}
	if _, err := os.Stat(filepath.Join(d.opts.AlertDir, AlertRestoreTest)); !os.IsNotExist(err) {
		t.Errorf("alert raised: %v", err)
	}
}

// TestSupervisor_restoreTestOnceForeign: another cluster's backup, newer
// and authenticated (copied from a site sharing the key pair), is neither
// the one the test must restore nor one it passed over, where the node's
// system identifier is known; the test is told that identifier, so that
// its restore chooses as the schedule does. Before, the test of this
// cluster's newest failed naming the other one as passed over.
func TestSupervisor_restoreTestOnceForeign(t *testing.T) {
	arch, put := signedArchive(t)
	put("2024-05-01_0", &archive.BackupInfo{StartTime: time.Now().Add(-time.Hour), StartWALSegment: "000000010000000000000002", SystemID: "7000000000000000001"}, true)
	put("2099-01-01_0", &archive.BackupInfo{StartTime: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC), StartWALSegment: "000000010000001000000000", SystemID: "7000000000000000002"}, true)
	d := testDaemon(t)
	f := &fakeRestoreTests{}
	site := restoreTestSite(t.TempDir(), time.Hour, f)
	var got string
	site.RestoreTest.run = func(ctx context.Context, o verify.RestoreTestOptions) (*verify.RestoreTestResult, error) {
		got = o.SystemID
		return f.run(ctx, o)
	}
	sup := newSupervisor(d, site)
	sup.noteSystemID("7000000000000000001")
	r, skip := sup.restoreTestOnce(context.Background(), arch)
	if skip || r == nil || !r.passed() {
		t.Fatalf("restoreTestOnce = %+v, skip %v; want the test of 2024-05-01_0 passed", r, skip)
	}
	if got != "7000000000000000001" {
		t.Errorf("the restore test was told system identifier %q, want 7000000000000000001", got)
	}

	// With only the other system's backups, there is nothing to test yet.
	sup.noteSystemID("7000000000000000003")
	if r, skip := sup.restoreTestOnce(context.Background(), arch); !skip {
		t.Errorf("restoreTestOnce with no backup of the system = %+v, want skipped", r)
	}
}

// signedArchive returns an archive in memory whose codec signs backups
// with a key of its own, and a function that stores a backup's control
// object there, its metadata signed or not.
func signedArchive(t *testing.T) (*archive.Archive, func(name string, b *archive.BackupInfo, sign bool)) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	c := &archive.Codec{KeyID: "k1", PublicKey: &key.PublicKey}
	arch := &archive.Archive{Store: storage.NewMem(), Codec: c, Site: "test"}
	return arch, func(name string, b *archive.BackupInfo, sign bool) {
		t.Helper()
		md := b.ToMetadata()
		if sign {
			if err := c.SignBackup(name, md); err != nil {
				t.Fatal(err)
			}
		}
		if err := arch.Store.Put(context.Background(), arch.Layout.BackupKey(name), strings.NewReader("x"), md); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSupervisor_restoreTestOnceScratchDir: a due test whose scratch
// directory cannot be made (a file in its path here; a full or read-only
// disk, wrong ownership) cannot restore anything, whatever the backups:
// it is a failed test (status, hoard_restore_test_ok 0, the alert file),
// not one that could not start yet, which leaves the last result
// standing and is looked at again 15 s later, forever.
func TestSupervisor_restoreTestOnceScratchDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := testDaemon(t)
	f := &fakeRestoreTests{}
	sup := newSupervisor(d, restoreTestSite(filepath.Join(file, "restore-test"), time.Millisecond, f))
	res, skip := sup.restoreTestOnce(context.Background(), archiveWithBackup(t))
	if skip {
		t.Fatal("scratch directory cannot be made: the test was skipped, as one that could not start yet; want a failed test")
	}
	if res == nil || res.passed() || !strings.Contains(res.Error, "scratch directory") {
		t.Errorf("result %+v, want a failure naming the scratch directory", res)
	}
	if okG, _, _, _ := sup.restoreTestMetrics(); okG.Value() != 0 {
		t.Errorf("%s = %v, want 0", MetricRestoreTestOK, okG.Value())
	}
	if _, err := os.Stat(filepath.Join(d.opts.AlertDir, AlertRestoreTest)); err != nil {
		t.Errorf("alert file %s: %v", AlertRestoreTest, err)
	}
	if n := f.count(); n != 0 {
		t.Errorf("restores run = %d, want 0", n)
	}
}
