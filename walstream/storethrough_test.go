package walstream

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
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
