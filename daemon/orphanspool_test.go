package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/walstream"
)

// leftoverSpool runs a daemon whose site test streams from a real server
// into <root>/test/xlog_incoming while its storage refuses uploads, and
// stops it: the segment in progress stays in the spool as .partial, with
// WAL that no run stored (the stop's copy failed for all of
// DrainTimeout), as a daemon killed, or stopped while its storage
// failed, leaves it. It returns the site (its OpenArchive failing while
// openFails is set), the root and the .partial's name.
func leftoverSpool(t *testing.T) (a Site, st *downStore, openFails *atomic.Bool, root, leftover string) {
	t.Helper()
	root = t.TempDir()
	st = &downStore{Store: storage.NewLocal(t.TempDir())}
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1})
	a = streamingSiteTo(t, c.ConnString("postgres"), st)
	a.Dir = filepath.Join(root, "test")
	a.SpoolDir = filepath.Join(a.Dir, "xlog_incoming")
	a.Destination = "local a"
	openFails = &atomic.Bool{}
	open := a.OpenArchive
	a.OpenArchive = func(ctx context.Context) (*archive.Archive, func(), error) {
		if openFails.Load() {
			return nil, nil, errors.New("storage does not open")
		}
		return open(ctx)
	}
	rd := runDaemon(t, Options{Sites: []Site{a}, DrainTimeout: 2 * time.Second})
	rd.waitFor("test streaming", func(s Status) bool { w := s.Sites["test"].WAL; return w != nil && w.Connected })
	st.down.Store(true)
	t.Cleanup(func() { st.down.Store(false) })
	c.Exec(t, "create table t as select generate_series(1, 1000) as i")
	rd.waitFor("the segment in progress holding wal in the spool", func(Status) bool {
		_, leftover, err := walstream.SpoolUnstored(a.SpoolDir)
		return err == nil && leftover != ""
	})
	rd.stop()
	files, leftover, err := walstream.SpoolUnstored(a.SpoolDir)
	if err != nil || leftover == "" || len(files) != 0 {
		t.Fatalf("spool after the stop: files %v, segment in progress %q, %v; want only the segment in progress", files, leftover, err)
	}
	if _, err := st.Stat(context.Background(), archive.Layout{}.WALKey(leftover)); err == nil {
		t.Fatalf("%s stored, though the storage refused uploads", leftover)
	}
	return a, st, openFails, root, leftover
}

// TestRun_ReloadRemovedStoppedSiteLeftover: a daemon starts with site
// test, whose storage does not open, so that it stops by an error before
// its WAL receiver is built; its spool holds the segment in progress an
// earlier process left, WAL no run stored. Before, a reload that removed
// the site let it go without a word: the .partial was not counted as
// unstored, only complete segments and .history files were. The removal
// is now refused as for those, naming the .partial.
func TestRun_ReloadRemovedStoppedSiteLeftover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	a, _, openFails, root, leftover := leftoverSpool(t)
	openFails.Store(true)
	b := pushSite(filepath.Join(root, "b"), filepath.Join(t.TempDir(), "store-b"), unreachableConn(t))
	b.Name = "b"
	old := siteRetryMin
	siteRetryMin = time.Hour
	t.Cleanup(func() { siteRetryMin = old })
	reload := make(chan []Site)
	rd := runDaemon(t, Options{Sites: []Site{a, b}, Reload: reload})
	rd.waitFor("test stopped by an error", func(s Status) bool {
		x := s.Sites["test"]
		return x.Stopped != nil && !x.Running && x.Stopped.NextRestart != nil
	})
	reload <- []Site{b}
	rd.waitLog(`"message":"configuration reloaded"`)
	time.Sleep(time.Second) // state files written since the reload (every 200 ms)
	if st, _ := rd.status(); st.Sites["test"].ActiveBackupMode == "" {
		t.Fatalf("site test, stopped by an error before its receiver started with %s holding wal no run stored in its spool, was removed without a word", leftover)
	}
	if !logLine(rd.logs.String(), `"level":"error"`, `"site":"test"`, leftover, a.SpoolDir, "reload: site removed while it is stopped by an error") {
		t.Errorf("no error-level log of the refused removal naming %s and the spool %s:\n%s", leftover, a.SpoolDir, rd.logs.String())
	}
	if _, err := os.Stat(filepath.Join(a.SpoolDir, leftover)); err != nil {
		t.Errorf("the segment in progress left the spool: %v", err)
	}
	rd.stop()
}
