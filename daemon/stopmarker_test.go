package daemon

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/walstream"
)

// TestRun_OrphanSpoolStoppedCleanly: a daemon streams site test and
// stops cleanly (Run's stop, as at SIGTERM) with its storage working: the
// stop stores the segment in progress as .partial and leaves the file in
// the spool. A new daemon without the site (the operator removed it and
// restarted the service) must not report that spool: the receiver's
// marker (walstream.StoredMarkerName) says the copy is stored. Before,
// it was reported, a false alarm at every decommission. The marker is
// never trusted when it does not match: the same .partial with other
// bytes (another cluster streaming into the same site's spool), a marker
// that cannot be parsed (reported, and a warning), and the file holding
// more WAL than the marker's copy (a later run killed, or stopped while
// its storage failed, after it fsynced more) are reported.
func TestRun_OrphanSpoolStoppedCleanly(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	root := t.TempDir()
	st := &downStore{Store: storage.NewLocal(t.TempDir())}
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1})
	a := streamingSiteTo(t, c.ConnString("postgres"), st)
	a.Dir = filepath.Join(root, "test")
	a.SpoolDir = filepath.Join(a.Dir, "xlog_incoming")
	a.Destination = "local a"
	streamAndStop := func(what string) string {
		t.Helper()
		rd := runDaemon(t, Options{Sites: []Site{a}, DrainTimeout: 2 * time.Second})
		rd.waitFor("test streaming", func(s Status) bool { w := s.Sites["test"].WAL; return w != nil && w.Connected })
		c.Exec(t, what)
		rd.waitFlushed(c, "the wal written fsynced into the spool")
		rd.stop()
		partials, err := filepath.Glob(filepath.Join(a.SpoolDir, "*.partial"))
		if err != nil || len(partials) != 1 {
			t.Fatalf("spool after the stop: .partial files %v, %v; want the segment in progress", partials, err)
		}
		return filepath.Base(partials[0])
	}
	leftover := streamAndStop("create table t as select generate_series(1, 1000) as i")
	if _, err := st.Stat(context.Background(), archive.Layout{}.WALKey(leftover)); err != nil {
		t.Fatalf("%s not stored by the clean stop: %v", leftover, err)
	}

	b := pushSite(filepath.Join(root, "b"), filepath.Join(t.TempDir(), "store-b"), unreachableConn(t))
	b.Name = "b"
	reload := make(chan []Site)
	rd := runDaemon(t, Options{Sites: []Site{b}, Reload: reload})
	// looked waits until the daemon's look at the spools after a reload
	// is done (the next reload is taken only after it) and its state
	// file written.
	looked := func() Status {
		t.Helper()
		reload <- []Site{b}
		reload <- []Site{b}
		time.Sleep(time.Second) // state files written since (every 200 ms)
		s, _ := rd.status()
		return s
	}
	reported := func(what string) {
		t.Helper()
		rd.waitFor(what+": test's spool in orphan_spools", func(s Status) bool {
			return slices.ContainsFunc(s.OrphanSpools, func(o OrphanSpool) bool {
				return o.Spool == a.SpoolDir && slices.Equal(o.Files, []string{leftover})
			})
		})
	}
	if s := looked(); len(s.OrphanSpools) != 0 || rd.alertFile(AlertOrphanSpool) {
		t.Fatalf("the spool of a site stopped cleanly with its segment in progress stored reported as orphaned: %+v", s.OrphanSpools)
	}

	// The same .partial with other bytes within the stored copy.
	p := filepath.Join(a.SpoolDir, leftover)
	orig, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(a.SpoolDir, walstream.StoredMarkerName)
	origMarker, err := os.ReadFile(marker)
	if err != nil {
		t.Fatalf("no marker: %v", err)
	}
	other := slices.Clone(orig)
	other[100] ^= 0xff // in the first record, after the page header
	if err := os.WriteFile(p, other, 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- []Site{b}
	reported("a .partial of the same name with other bytes")
	if err := os.WriteFile(p, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	if s := looked(); len(s.OrphanSpools) != 0 {
		t.Fatalf("the original bytes back: still reported %+v", s.OrphanSpools)
	}

	// A marker that cannot be parsed: reported, with a warning.
	if err := os.WriteFile(marker, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- []Site{b}
	reported("a corrupt marker")
	if !logLine(rd.logs.String(), `"level":"warn"`, marker) {
		t.Errorf("no warning naming the marker %s that cannot be read:\n%s", marker, rd.logs.String())
	}
	if err := os.WriteFile(marker, origMarker, 0o600); err != nil {
		t.Fatal(err)
	}
	if s := looked(); len(s.OrphanSpools) != 0 {
		t.Fatalf("the marker back: still reported %+v", s.OrphanSpools)
	}

	// A later run fsyncs more WAL into the same segment and ends without
	// storing it (its storage refuses: its stop's copy fails, as a kill
	// -9 leaves it): the marker names a shorter copy.
	st.down.Store(true)
	if again := streamAndStop("insert into t select generate_series(1, 100)"); again != leftover {
		t.Fatalf("the second run left %s, not %s: the test shows nothing", again, leftover)
	}
	st.down.Store(false)
	reload <- []Site{b}
	reported("more wal fsynced than stored")
	if _, err := os.Stat(p); err != nil {
		t.Errorf("the segment in progress left the spool: %v", err)
	}
	rd.stop()
}
