package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// TestRun_ReloadRemovedStoppedSiteUnstoredWAL: a reload removes a
// streaming site while it is stopped by an error (its storage does not
// open) and its spool holds a complete segment that no run stored (the
// storage refused it, the server was told it is flushed). Before, the
// site was dropped without a word and the segment left in a spool nobody
// reads. The removal is refused as for a running site whose WAL is not
// stored: logged at error level with the spool, the files and what to
// do, the site kept with its previous settings (stopped, site_stopped_error
// raised, started again on its backoff); once its storage works, its
// restart stores the segment, and a reload after that removes it.
func TestRun_ReloadRemovedStoppedSiteUnstoredWAL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	st := &downStore{Store: storage.NewLocal(t.TempDir())}
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1})
	a := streamingSiteTo(t, c.ConnString("postgres"), st)
	a.Destination = "local a"
	var openFails atomic.Bool
	open := a.OpenArchive
	a.OpenArchive = func(ctx context.Context) (*archive.Archive, func(), error) {
		if openFails.Load() {
			return nil, nil, errors.New("storage does not open")
		}
		return open(ctx)
	}
	b := pushSite(filepath.Join(t.TempDir(), "b"), filepath.Join(t.TempDir(), "store-b"), unreachableConn(t))
	b.Name = "b"
	old := siteRetryMin
	siteRetryMin = 2 * time.Second
	t.Cleanup(func() { siteRetryMin = old })
	reload := make(chan []Site)
	rd := runDaemon(t, Options{Sites: []Site{a, b}, Reload: reload})
	t.Cleanup(func() { st.down.Store(false) })
	rd.waitFor("test streaming", func(s Status) bool { w := s.Sites["test"].WAL; return w != nil && w.Connected })

	// A complete segment the storage refuses.
	st.down.Store(true)
	c.Exec(t, "create table t as select generate_series(1, 1000) as i")
	seg := c.QueryString(t, "select pg_walfile_name(pg_switch_wal())")
	spooled := filepath.Join(a.SpoolDir, seg)
	rd.waitFor(seg+" complete in the spool", func(Status) bool { _, err := os.Stat(spooled); return err == nil })

	// The site stops by an error: an in-place restart (new credentials)
	// whose storage does not open.
	openFails.Store(true)
	a2 := a
	a2.Fingerprint = "2"
	reload <- []Site{a2, b}
	rd.waitFor("test stopped by an error", func(s Status) bool {
		x := s.Sites["test"]
		return x.Stopped != nil && !x.Running && x.Stopped.NextRestart != nil
	})

	// Removed while stopped: refused, loudly.
	reload <- []Site{b}
	rd.waitFor("the second reload applied", func(Status) bool {
		return logLines(rd.logs.String(), `"message":"configuration reloaded"`) == 2
	})
	time.Sleep(time.Second) // state files written since the reload (every 200 ms)
	if st, _ := rd.status(); st.Sites["test"].ActiveBackupMode == "" {
		t.Errorf("site test, stopped by an error with %s unstored in its spool, was removed from the status without a word: %+v", seg, st.Sites)
	}
	rd.waitLog("reload: site removed while it is stopped by an error, but its spool holds wal that no run stored")
	if !logLine(rd.logs.String(), `"level":"error"`, `"site":"test"`, seg, a.SpoolDir, "hoard wal-push") {
		t.Errorf("no error-level log naming %s, the spool %s and hoard wal-push:\n%s", seg, a.SpoolDir, rd.logs.String())
	}
	rd.waitFor("test kept, stopped again", func(s Status) bool {
		x, ok := s.Sites["test"]
		return ok && x.Stopped != nil && !x.Running
	})
	if !rd.alertFile(AlertSiteStopped) {
		t.Errorf("no %s alert file for the kept site", AlertSiteStopped)
	}
	if _, err := os.Stat(spooled); err != nil {
		t.Fatalf("the unstored segment left the spool: %v", err)
	}

	// Its storage works again: a restart on the backoff stores the
	// segment, and a reload then removes the site.
	openFails.Store(false)
	st.down.Store(false)
	key := archive.Layout{}.WALKey(seg)
	rd.waitFor(seg+" stored by the kept site", func(Status) bool {
		_, err := st.Stat(context.Background(), key)
		return err == nil
	})
	rd.waitFor(seg+" gone from the spool", func(Status) bool { _, err := os.Stat(spooled); return errors.Is(err, os.ErrNotExist) })
	reload <- []Site{b}
	rd.waitFor("test removed by the second reload", func(s Status) bool { _, ok := s.Sites["test"]; return !ok })
}

// TestRun_LastSiteStoppedAlert: a daemon whose only site stops with an
// error exits 1, as before, and now also raises site_stopped_error and
// logs the site's error at error level, as a site that stops while
// others run: an operator who watches alert files sees why the daemon
// died. The file stays through the next start (a restart loop does not
// clear it) until a run of the daemon has had no site stopped for
// siteProvenAfter.
func TestRun_LastSiteStoppedAlert(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1})
	a := streamingSite(t, c.ConnString("postgres"))
	open := a.OpenArchive
	var openFails atomic.Bool
	openFails.Store(true)
	a.OpenArchive = func(ctx context.Context) (*archive.Archive, func(), error) {
		if openFails.Load() {
			return nil, nil, errors.New("storage does not open")
		}
		return open(ctx)
	}
	alerts := filepath.Join(t.TempDir(), "alerts")
	logs := &testio.SyncBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	err := Run(ctx, Options{Sites: []Site{a}, AlertDir: alerts, Logger: zerolog.New(logs)})
	if err == nil || !strings.Contains(err.Error(), "storage does not open") {
		t.Fatalf("Run of the broken site alone: %v, want its error", err)
	}
	if _, err := os.Stat(filepath.Join(alerts, AlertSiteStopped)); err != nil {
		t.Errorf("no %s alert file after the daemon exited for site test: %v", AlertSiteStopped, err)
	}
	if !logLine(logs.String(), `"level":"error"`, `"site":"test"`, "storage does not open", "no active site is left running") {
		t.Errorf("no error-level log of the site's error and the exit:\n%s", logs.String())
	}

	// The next start, the storage fixed: the file stays while the run
	// has not proved itself, then goes.
	openFails.Store(false)
	oldProven := siteProvenAfter
	siteProvenAfter = 5 * time.Second
	t.Cleanup(func() { siteProvenAfter = oldProven })
	rd := runDaemon(t, Options{Sites: []Site{a}, AlertDir: alerts})
	rd.waitFor("test streaming", func(s Status) bool { w := s.Sites["test"].WAL; return w != nil && w.Connected })
	if !rd.alertFile(AlertSiteStopped) {
		t.Errorf("%s cleared at once by the next start: a restart loop would hide it", AlertSiteStopped)
	}
	rd.waitFor("site_stopped_error cleared after siteProvenAfter", func(Status) bool { return !rd.alertFile(AlertSiteStopped) })
	rd.stop()
}
