package walstream

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/wal"
)

// TestReceiver_StoreThrough asks a Receiver with no
// PartialUploadInterval to store the WAL up to the server's position,
// which lies in the segment being received, while every upload fails:
// the .partial upload is tried again until it succeeds, and then
// Status.Stored reaches the position and the stored .partial holds the
// server's WAL up to it. Nothing is stored as a .partial before the
// request.
func TestReceiver_StoreThrough(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[0], WALSegmentSizeMB: 1})
	s := newSink(t)
	rr := start(t, c, t.TempDir(), s, Options{})
	c.Exec(t, "create table t as select generate_series(1, 1000) as i")
	target := lsn(t, c, "select pg_current_wal_flush_lsn()")
	waitFor(t, "WAL received", func() bool { return rr.r.Status().Received >= target })
	seg := rr.r.Status().Segment
	name := seg + wal.PartialSuffix
	if s.has(name) {
		t.Fatalf("%s stored before StoreThrough, with no PartialUploadInterval", name)
	}

	s.failing.Store(true)
	rr.r.StoreThrough(target)
	waitFor(t, "failed .partial uploads tried again", func() bool { return s.failures.Load() >= 3 })
	if st := rr.r.Status(); st.Stored >= target {
		t.Fatalf("Stored %s while every upload fails, want below %s", st.Stored, target)
	}
	s.failing.Store(false)
	waitFor(t, "WAL stored through the target", func() bool { return rr.r.Status().Stored >= target })
	got, err := os.ReadFile(filepath.Join(s.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	segStart := uint64(target) - uint64(target)%segSizeOf(t, c)
	n := int64(uint64(target) - segStart)
	if int64(len(got)) < n {
		t.Fatalf("stored %s holds %d bytes, want at least %d (up to %s)", name, len(got), n, target)
	}
	if want := readPrefix(t, filepath.Join(c.DataDir, "pg_wal", seg), n); string(got[:n]) != string(want) {
		t.Errorf("stored %s differs from the server's segment", name)
	}
	rr.stop(t)
}

// TestReceiver_StoreThroughBackoff asks a Receiver to store the WAL in
// the segment being received while every upload fails: the .partial
// upload is tried again with backoff (here 20 ms doubling to 200 ms), so
// a 2 s window sees at most 20 attempts (about 100 at the first delay
// each time, as before), each logged once. Once the
// storage answers again, the WAL is stored.
func TestReceiver_StoreThroughBackoff(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[0], WALSegmentSizeMB: 1})
	s := newSink(t)
	var logs testio.SyncBuffer
	rr := startLogged(t, c, t.TempDir(), s, Options{}, &logs)
	c.Exec(t, "create table t as select generate_series(1, 1000) as i")
	target := lsn(t, c, "select pg_current_wal_flush_lsn()")
	waitFor(t, "WAL received", func() bool { return rr.r.Status().Received >= target })

	s.failing.Store(true)
	rr.r.StoreThrough(target)
	// Attempts are counted by their log lines (one a failed copy): a
	// complete segment's upload, retried on its own, fails too.
	attempts := func() int { return strings.Count(logs.String(), "partial segment upload failed") }
	waitFor(t, "a failed .partial upload", func() bool { return attempts() >= 1 })
	from := attempts()
	// The window attempts are counted over: a rate, not an event to
	// wait for.
	time.Sleep(2 * time.Second)
	if n := attempts() - from; n > 20 {
		t.Errorf("%d .partial upload attempts in 2 s while the storage fails, want at most 20 (backoff to 200 ms)", n)
	}
	if got, want := int64(attempts()), s.failures.Load(); got > want {
		t.Errorf("%d log lines for %d failed uploads, want at most one a failure", got, want)
	}
	s.failing.Store(false)
	waitFor(t, "WAL stored through the target", func() bool { return rr.r.Status().Stored >= target })
	rr.stop(t)
}

// TestReceiver_snapshotRetryAt: a failed .partial copy is tried again
// after the retry delay doubling with each failure in a row, up to the
// longest; an upload of any kind that succeeds (the storage answered)
// ends the backoff at once, so a commit waiting in synchronous mode does
// not wait out a long step once the storage is back.
func TestReceiver_snapshotRetryAt(t *testing.T) {
	r := &Receiver{retryMin: time.Second, retryMax: 30 * time.Second}
	if got := r.snapshotRetryAt(); !got.IsZero() {
		t.Fatalf("retry at %v before any failure, want at once", got)
	}
	failed := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i, want := range []time.Duration{1, 2, 4, 8, 16, 30, 30, 30} {
		r.snapshotFailed, r.snapshotFailures = failed, i+1
		if got := r.snapshotRetryAt().Sub(failed); got != want*time.Second {
			t.Errorf("after %d failures: retry %v after the last, want %v", i+1, got, want*time.Second)
		}
	}
	r.snapshotFailures = 100 // no overflow of the shift
	if got := r.snapshotRetryAt().Sub(failed); got != 30*time.Second {
		t.Errorf("after 100 failures: retry %v after the last, want 30s", got)
	}
	r.storageAnswered()
	if got := r.snapshotRetryAt(); !got.IsZero() {
		t.Errorf("retry at %v after a successful upload, want at once", got)
	}
}
