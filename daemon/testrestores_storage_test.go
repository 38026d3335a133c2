package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/verify"
)

// failingOpen is a Store whose downloads of key fail with err: Open at
// once, or, with cut, Open's reader after half the object (as verify's
// tests inject storage faults).
type failingOpen struct {
	storage.Store
	key string
	err error
	cut bool
}

func (s failingOpen) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	if key == s.key && !s.cut {
		return nil, storage.Object{}, fmt.Errorf("open %s: %w", key, s.err)
	}
	rc, o, err := s.Store.Open(ctx, key)
	if key != s.key || err != nil {
		return rc, o, err
	}
	return storetest.CutHalf(rc, o, key, s.err), o, nil
}

// keepResult writes a finished test's result into dir, as an earlier
// run of the daemon kept it, and returns the file's bytes.
func keepResult(t *testing.T, dir string, ok bool, finished time.Time) []byte {
	t.Helper()
	r := RestoreTestStatus{Started: &finished, Finished: &finished, OK: &ok, Backup: "2024-04-30_0"}
	if ok {
		r.LastSuccess = &finished
	} else {
		r.Error = "restore test failed: replay"
	}
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, restoreTestResultFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return data
}

// TestSupervisor_RestoreTestsStorageFailed: a scheduled test restore that
// the storage kept from running (verify.RestoreTestResult.StorageFailed:
// a chunk's GET answered 503 past the retries) is not a test: it neither
// raises restore_test_failed over a passing result, nor clears it over a
// failed one, nor changes hoard_restore_test_ok, the last run or the kept
// result file. It counts in hoard_restore_test_storage_failures_total,
// shows in the status (storage_failures, storage_error naming the object)
// and is tried again after restoreTestRetryMin, not an interval later.
// Before, it was recorded as a failed test: the alert paged "your backup
// does not restore" for a storage outage.
func TestSupervisor_RestoreTestsStorageFailed(t *testing.T) {
	for _, keptOK := range []bool{true, false} {
		t.Run(fmt.Sprintf("KeptOK=%v", keptOK), func(t *testing.T) {
			d := testDaemon(t)
			dir := t.TempDir()
			finished := time.Now().Add(-2 * time.Hour).UTC().Truncate(time.Second)
			kept := keepResult(t, dir, keptOK, finished)
			msg := "restore test could not be run: the storage failed, and nothing was found wrong with the backup " +
				"(run the test again once the storage answers): open site/basebackup_chunk/2024-05-01_0/0000_0.pghoard: 503 SlowDown"
			calls := make(chan struct{}, 10)
			site := restoreTestSite(dir, time.Hour, nil)
			site.RestoreTest.run = func(ctx context.Context, _ verify.RestoreTestOptions) (*verify.RestoreTestResult, error) {
				calls <- struct{}{}
				return &verify.RestoreTestResult{Backup: "2024-05-01_0", PGMajor: 17, Started: time.Now().UTC(),
					StorageFailed: true, Error: msg, Checks: []verify.Check{}}, errors.New(msg)
			}
			sup := newSupervisor(d, site)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- sup.restoreTests(ctx, archiveWithBackup(t)) }()
			select {
			case <-calls:
			case <-time.After(runTimeout):
				t.Fatal("no test started")
			}
			waitUntil(t, "the test's retry scheduled", func() bool {
				r := sup.status().RestoreTest
				return r != nil && !r.Running && r.StorageFailures == 1 && r.Next != nil
			})
			ranAt := time.Now()
			r := sup.status().RestoreTest
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("restoreTests = %v", err)
			}
			_, alertErr := os.Stat(filepath.Join(d.opts.AlertDir, AlertRestoreTest))
			if alerted := alertErr == nil; alerted != !keptOK {
				t.Errorf("restore_test_failed raised %v after a test the storage kept from running, want %v (as the kept result)", alerted, !keptOK)
			}
			if r.OK == nil || *r.OK != keptOK || r.Finished == nil || !r.Finished.Equal(finished) || r.Backup != "2024-04-30_0" {
				t.Errorf("status = %+v, want the kept result (ok %v, finished %v) unchanged", r, keptOK, finished)
			}
			if r.StorageError != msg {
				t.Errorf("status storage_error = %q, want %q", r.StorageError, msg)
			}
			if late := ranAt.Add(restoreTestRetryMin + 5*time.Second); r.Next.After(late) {
				t.Errorf("next test at %v, want by %v (retried after %s, not an interval later)", r.Next, late, restoreTestRetryMin)
			}
			okG, _, runG, _ := sup.restoreTestMetrics()
			if okG.Value() != boolFloat(keptOK) || runG.Value() != float64(finished.Unix()) {
				t.Errorf("metrics ok %v last run %v, want %v, %v (the kept result's)", okG.Value(), runG.Value(), boolFloat(keptOK), finished.Unix())
			}
			if n := sup.restoreTestStorageFailures().Value(); n != 1 {
				t.Errorf("%s = %v, want 1", MetricRestoreTestStorageFailures, n)
			}
			if got, _ := os.ReadFile(filepath.Join(dir, restoreTestResultFile)); string(got) != string(kept) {
				t.Errorf("kept result file changed:\n%s\nwant\n%s", got, kept)
			}
			// The next finished test replaces the kept one, and ends the
			// storage's run of failures in the status.
			pass := &verify.RestoreTestResult{Backup: "2024-05-01_0", Started: time.Now(), OK: true}
			if got := sup.recordRestoreTest(pass, nil, time.Now()); !got.passed() || got.StorageFailures != 0 || got.StorageError != "" {
				t.Errorf("recorded %+v", got)
			}
			if r := sup.status().RestoreTest; !r.passed() || r.StorageFailures != 0 || r.StorageError != "" {
				t.Errorf("status after a passing test = %+v, want no storage failures", r)
			}
			if _, err := os.Stat(filepath.Join(d.opts.AlertDir, AlertRestoreTest)); !os.IsNotExist(err) {
				t.Errorf("alert after a passing test: %v", err)
			}
		})
	}
}

// TestRestoreTestRetry: a test the storage kept from running is tried
// again after restoreTestRetryMin, doubling with each one in a row up to
// restoreTestRetryMax, never later than an interval.
func TestRestoreTestRetry(t *testing.T) {
	for _, c := range []struct {
		failures int
		interval time.Duration
		want     time.Duration
	}{
		{1, 24 * time.Hour, restoreTestRetryMin},
		{2, 24 * time.Hour, 2 * restoreTestRetryMin},
		{3, 24 * time.Hour, 4 * restoreTestRetryMin},
		{100, 24 * time.Hour, restoreTestRetryMax},
		{100, time.Minute, time.Minute},
	} {
		if got := restoreTestRetry(c.failures, c.interval); got != c.want {
			t.Errorf("restoreTestRetry(%d, %s) = %s, want %s", c.failures, c.interval, got, c.want)
		}
	}
}

// TestSupervisor_restoreTestOnceStorageFailed runs the real test restore
// (verify.RestoreTest) on a backup whose chunk the storage fails to send
// (a GET answered 503 past the retries, access denied, a download cut in
// the middle): no failed test is recorded (no restore_test_failed, no
// result file), the status says the
// storage failed, naming the chunk. A chunk that does not decode
// (tampered) still fails the test and raises the alert.
func TestSupervisor_restoreTestOnceStorageFailed(t *testing.T) {
	binDir := pgtest.BinDir(t, pgtest.DebianMajor, true)
	unavailable := errors.New("https response error StatusCode: 503, SlowDown")
	denied := fmt.Errorf("access denied to s3 bucket %q: %w", "b", storage.ErrPermanent)
	for _, c := range []struct {
		name string
		err  error // nil: the chunk is tampered with instead
		cut  bool
	}{
		{"ChunkUnavailable", unavailable, false},
		{"ChunkDenied", denied, false},
		{"ChunkCut", io.ErrUnexpectedEOF, true},
		{"ChunkTampered", nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: "zstd"})
			b := hostile.Benign()
			b.Chunks = [][]hostile.Member{{{Name: "pgdata/base/5/16401", Body: strings.Repeat("x", 64<<10)}}}
			stored := hostile.Put(t, a, b)
			key := stored.ChunkKeys[0]
			if c.err == nil {
				storetest.Tamper(t, a.Store, key)
			} else {
				a.Store = failingOpen{Store: a.Store, key: key, err: c.err, cut: c.cut}
			}
			d := testDaemon(t)
			dir := pgtest.TempDir(t)
			site := Site{Name: "site", Active: true, WAL: WALArchiveCommand,
				RestoreTest: RestoreTest{Interval: time.Hour, Dir: dir, RestoreCommand: "false", PGBinDir: binDir}}
			sup := newSupervisor(d, site)
			r, skip := sup.restoreTestOnce(context.Background(), a)
			_, alertErr := os.Stat(filepath.Join(d.opts.AlertDir, AlertRestoreTest))
			_, keptErr := os.Stat(filepath.Join(dir, restoreTestResultFile))
			st := sup.status().RestoreTest
			if c.err == nil {
				if skip || r == nil || r.passed() || alertErr != nil || keptErr != nil {
					t.Fatalf("tampered chunk: restoreTestOnce = %+v, skip %v, alert %v, result file %v; want a failed test", r, skip, alertErr, keptErr)
				}
				return
			}
			if !skip || r != nil {
				t.Fatalf("restoreTestOnce = %+v, skip %v; want no test recorded", r, skip)
			}
			if alertErr == nil || keptErr == nil {
				t.Errorf("alert %v, result file %v; want neither after a test the storage kept from running", alertErr, keptErr)
			}
			if st == nil || st.Finished != nil || st.OK != nil || st.StorageFailures != 1 ||
				!strings.Contains(st.StorageError, "could not be run: the storage failed") || !strings.Contains(st.StorageError, key) {
				t.Errorf("status = %+v; want no finished test, storage_error naming %s", st, key)
			}
			if n := sup.restoreTestStorageFailures().Value(); n != 1 {
				t.Errorf("%s = %v, want 1", MetricRestoreTestStorageFailures, n)
			}
		})
	}
}
