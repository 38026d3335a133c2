package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
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
		_, leftover, err := walstream.SpoolUnstored(a.SpoolDir, nil)
		return err == nil && leftover != ""
	})
	rd.stop()
	files, leftover, err := walstream.SpoolUnstored(a.SpoolDir, nil)
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

// TestRun_OrphanSpool: the daemon restarted with site test gone from its
// configuration (the operator removed it and restarted the service),
// while test's spool under the same backup_location holds a segment in
// progress that no run stored. Before, the new daemon said nothing. Now
// its start logs the spool at error level with its files and what to
// do, shows it in /status orphan_spools and hoard_orphan_spool_files, and
// raises orphan_spool_error; it never touches the files. A spool another
// daemon holds locked (streams into now) is not reported; released, the
// next reload reports it; once the files are moved away, a reload clears
// all of it.
func TestRun_OrphanSpool(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	a, _, _, root, leftover := leftoverSpool(t)
	// A spool another daemon streams into: locked, a complete segment
	// waiting for its upload.
	other := filepath.Join(root, "eu", "other", "xlog_incoming")
	release, err := lockSpool(other)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { release() }()
	seg := leftover[:24]
	if err := os.WriteFile(filepath.Join(other, seg), []byte("wal"), 0o600); err != nil {
		t.Fatal(err)
	}

	b := pushSite(filepath.Join(root, "b"), filepath.Join(t.TempDir(), "store-b"), unreachableConn(t))
	b.Name = "b"
	port := testio.FreePort(t)
	reload := make(chan []Site)
	rd := runDaemon(t, Options{Sites: []Site{b}, Reload: reload, HTTP: &HTTPConfig{Address: "127.0.0.1", Port: port}})
	orphan := func(site, spool string, files ...string) func(Status) bool {
		return func(s Status) bool {
			return slices.ContainsFunc(s.OrphanSpools, func(o OrphanSpool) bool {
				return o.Site == site && o.Spool == spool && slices.Equal(o.Files, files)
			})
		}
	}
	st := rd.waitFor("test's spool in orphan_spools", orphan("test", a.SpoolDir, leftover))
	if len(st.OrphanSpools) != 1 {
		t.Errorf("orphan_spools %+v, want only test's: eu/other's spool is locked by a live daemon", st.OrphanSpools)
	}
	if !logLine(rd.logs.String(), `"level":"error"`, a.SpoolDir, leftover, "hoard wal-push", "does not run") {
		t.Errorf("no error-level log naming the spool %s, %s and what to do:\n%s", a.SpoolDir, leftover, rd.logs.String())
	}
	if !rd.alertFile(AlertOrphanSpool) {
		t.Errorf("no %s alert file", AlertOrphanSpool)
	}
	if got := metric(t, port, `hoard_orphan_spool_files{site="test"}`); got != `hoard_orphan_spool_files{site="test"} 1` {
		t.Errorf("metric %q, want 1", got)
	}
	if got := metric(t, port, `hoard_orphan_spool_files{site="eu/other"}`); got != "" {
		t.Errorf("metric %q for a locked spool, want none", got)
	}
	if _, err := os.Stat(filepath.Join(a.SpoolDir, leftover)); err != nil {
		t.Errorf("the orphaned spool's file: %v", err)
	}

	// The other daemon stops: the next reload finds its spool too.
	release()
	release = func() {}
	reload <- []Site{b}
	rd.waitFor("eu/other's spool in orphan_spools once unlocked", orphan("eu/other", other, seg))
	if got := metric(t, port, `hoard_orphan_spool_files{site="eu/other"}`); got != `hoard_orphan_spool_files{site="eu/other"} 1` {
		t.Errorf("metric %q, want 1", got)
	}

	// Stored and moved away: a reload clears it all.
	for _, dir := range []string{a.Dir, filepath.Join(root, "eu")} {
		if err := os.Rename(dir, filepath.Join(t.TempDir(), "moved")); err != nil {
			t.Fatal(err)
		}
	}
	reload <- []Site{b}
	rd.waitFor("orphan_spools empty", func(s Status) bool { return len(s.OrphanSpools) == 0 })
	if rd.alertFile(AlertOrphanSpool) {
		t.Errorf("%s still raised", AlertOrphanSpool)
	}
	if got := metric(t, port, `hoard_orphan_spool_files{site="test"}`); got != "" {
		t.Errorf("metric %q after the spool went, want none", got)
	}
	rd.stop()
}

// TestRun_OrphanSpoolRemovedByReload: a reload removes streaming site
// test while it runs with its storage working: its stop stores the
// segment in progress, which stays in the spool as .partial (as every
// stop leaves it). The reload's look at the spools does not report that
// spool: this process stored its WAL (and the spool's marker says so
// to a restarted daemon: TestRun_OrphanSpoolStoppedCleanly).
func TestRun_OrphanSpoolRemovedByReload(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	root := t.TempDir()
	st := storage.NewLocal(t.TempDir())
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1})
	a := streamingSiteTo(t, c.ConnString("postgres"), st)
	a.Dir = filepath.Join(root, "test")
	a.SpoolDir = filepath.Join(a.Dir, "xlog_incoming")
	b := pushSite(filepath.Join(root, "b"), filepath.Join(t.TempDir(), "store-b"), unreachableConn(t))
	b.Name = "b"
	reload := make(chan []Site)
	rd := runDaemon(t, Options{Sites: []Site{a, b}, Reload: reload})
	rd.waitFor("test streaming", func(s Status) bool { w := s.Sites["test"].WAL; return w != nil && w.Connected })
	c.Exec(t, "create table t as select generate_series(1, 1000) as i")
	rd.waitFor("the segment in progress holding wal in the spool", func(Status) bool {
		_, leftover, err := walstream.SpoolUnstored(a.SpoolDir, nil)
		return err == nil && leftover != ""
	})
	reload <- []Site{b}
	rd.waitFor("test removed", func(s Status) bool { _, ok := s.Sites["test"]; return !ok })
	rd.waitLog(`"message":"configuration reloaded"`)
	time.Sleep(time.Second) // state files written since the reload (every 200 ms)
	partials, _ := filepath.Glob(filepath.Join(a.SpoolDir, "*.partial"))
	if len(partials) != 1 {
		t.Fatalf("segment in progress left in the spool: %v, want one: the test shows nothing", partials)
	}
	leftover := filepath.Base(partials[0])
	if _, err := st.Stat(context.Background(), archive.Layout{}.WALKey(leftover)); err != nil {
		t.Fatalf("%s not stored by the stop: %v", leftover, err)
	}
	if s, _ := rd.status(); len(s.OrphanSpools) != 0 || rd.alertFile(AlertOrphanSpool) {
		t.Errorf("the spool of a site the reload removed with its wal stored reported: %+v", s.OrphanSpools)
	}
	rd.stop()
}

// TestFindOrphanSpools_SkipsStorageFolders: the local store that falls
// back to backup_location keeps each site's objects beside its spool
// (<root>/<site>/basebackup_delta/<hash>, one object for each large file
// of every delta backup, and the other folders of archive.SiteDirs).
// The look for orphaned spools walks none of them: before, it read every
// folder but xlog, timeline, basebackup and basebackup_chunk, at each
// start and reload, and took a folder called xlog_incoming inside one
// for a site's spool.
func TestFindOrphanSpools_SkipsStorageFolders(t *testing.T) {
	root := t.TempDir()
	own := Site{Name: "a", Dir: filepath.Join(root, "a"), SpoolDir: filepath.Join(root, "a", "xlog_incoming")}
	for _, dir := range archive.SiteDirs {
		spool := filepath.Join(root, "b", dir, "x", "xlog_incoming")
		if err := os.MkdirAll(spool, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(spool, "000000010000000000000001"), make([]byte, 1<<20), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if got := findOrphanSpools([]Site{own}, nil, nil); len(got) != 0 {
		t.Errorf("orphaned spools found inside a site's storage folders: %+v", got)
	}
}

// TestFindOrphanSpools_LockUnopenable: a spool whose lock file cannot be
// opened (here a symbolic link, which lockSpool never makes and its
// O_NOFOLLOW refuses, as a disk's EIO or a permission would fail it) is
// not known to be another daemon's: it is reported with its WAL and why,
// not passed over as locked, which hid it and its unstored WAL for good.
func TestFindOrphanSpools_LockUnopenable(t *testing.T) {
	root := t.TempDir()
	own := Site{Name: "a", Dir: filepath.Join(root, "a"), SpoolDir: filepath.Join(root, "a", "xlog_incoming")}
	spool := filepath.Join(root, "b", "xlog_incoming")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	const seg = "000000010000000000000001"
	if err := os.WriteFile(filepath.Join(spool, seg), make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(t.TempDir(), "elsewhere"), filepath.Join(spool, spoolLockName)); err != nil {
		t.Fatal(err)
	}
	got := findOrphanSpools([]Site{own}, nil, nil)
	if len(got) != 1 || got[0].Site != "b" || got[0].Spool != spool || !slices.Equal(got[0].Files, []string{seg}) ||
		!strings.Contains(got[0].LockError, spoolLockName) {
		t.Fatalf("findOrphanSpools = %+v, want b's spool with %s and the lock file's error", got, seg)
	}
}

// TestRun_OrphanSpoolLockUnopenable: the daemon reports a spool whose
// lock file cannot be opened with the error, in /status (lock_error), in
// the error-level log line and with the alert file, instead of passing
// it over as another daemon's.
func TestRun_OrphanSpoolLockUnopenable(t *testing.T) {
	root := t.TempDir()
	b := pushSite(filepath.Join(root, "b"), filepath.Join(t.TempDir(), "store-b"), unreachableConn(t))
	b.Name = "b"
	spool := filepath.Join(root, "c", "xlog_incoming")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	const seg = "000000010000000000000001"
	if err := os.WriteFile(filepath.Join(spool, seg), []byte("wal"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(t.TempDir(), "elsewhere"), filepath.Join(spool, spoolLockName)); err != nil {
		t.Fatal(err)
	}
	rd := runDaemon(t, Options{Sites: []Site{b}})
	st := rd.waitFor("c's spool in orphan_spools", func(s Status) bool { return len(s.OrphanSpools) > 0 })
	if o := st.OrphanSpools; len(o) != 1 || o[0].Spool != spool || !slices.Equal(o[0].Files, []string{seg}) || !strings.Contains(o[0].LockError, spoolLockName) {
		t.Errorf("orphan_spools %+v, want c's spool with %s and its lock file's error", o, seg)
	}
	if !logLine(rd.logs.String(), `"level":"error"`, spool, seg, `"lock_error":"open `, "not known") {
		t.Errorf("no error-level log naming the spool %s, %s and the lock file's error:\n%s", spool, seg, rd.logs.String())
	}
	if !rd.alertFile(AlertOrphanSpool) {
		t.Errorf("no %s alert file", AlertOrphanSpool)
	}
	rd.stop()
}
