package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
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

// TestRun_FormerSlotKept: the daemon's receiver finds its slot gone (here
// dropped on the server it streams from, as after a failover that moved
// the address to a promoted standby) and creates it again: /status shows
// wal.former_slot and hoard_wal_former_slot is 1. Before, a restart of
// the receiver (a reload, a restart after an error) lost both, while the
// server streamed from before still kept the slot and its WAL; now they
// stay for the daemon's life.
func TestRun_FormerSlotKept(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1})
	a := streamingSite(t, c.ConnString("postgres"))
	port := testio.FreePort(t)
	reload := make(chan []Site)
	rd := runDaemon(t, Options{Sites: []Site{a}, Reload: reload, HTTP: &HTTPConfig{Address: "127.0.0.1", Port: port}})
	rd.waitFor("test streaming", func(s Status) bool { w := s.Sites["test"].WAL; return w != nil && w.Connected })
	c.Exec(t, "create table t as select generate_series(1, 1000) as i")
	c.Exec(t, "select pg_switch_wal()")
	if got := metric(t, port, `hoard_wal_former_slot{site="test"}`); got != `hoard_wal_former_slot{site="test"} 0` {
		t.Errorf("before any slot was created again: %q, want 0", got)
	}
	// Drop the slot under the walsender, which the receiver reconnects
	// at once.
	c.Exec(t, `DO $$
BEGIN
  LOOP
    PERFORM pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'hoard_test' AND active;
    BEGIN
      PERFORM pg_drop_replication_slot('hoard_test');
      EXIT;
    EXCEPTION WHEN OTHERS THEN
      PERFORM pg_sleep(0.05);
    END;
  END LOOP;
END $$`)
	formerSlot := func(s Status) bool {
		w := s.Sites["test"].WAL
		return w != nil && w.Connected && w.FormerSlot != nil && w.FormerSlot.Slot == "hoard_test"
	}
	st := rd.waitFor("wal.former_slot after the slot was created again", formerSlot)
	created := st.Sites["test"].WAL.FormerSlot.CreatedAt

	// A restart of the receiver: a reload that changes the site in place.
	next := a
	next.Fingerprint = "2"
	reload <- []Site{next}
	rd.waitLog(`"message":"configuration reloaded"`)
	// /status, not the state file: one written before the restart
	// would still show the stopped receiver's.
	deadline := time.Now().Add(runTimeout)
	for {
		code, body := httpGet(t, port, "/status")
		st = Status{}
		if err := json.Unmarshal([]byte(body), &st); code != http.StatusOK || err != nil {
			t.Fatalf("/status: %d %v %q", code, err, body)
		}
		if w := st.Sites["test"].WAL; w != nil && w.Connected {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restarted receiver not streaming within %s: %+v", runTimeout, st.Sites["test"].WAL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := logLines(rd.logs.String(), `"message":"streaming wal"`); n != 2 {
		t.Fatalf("the receiver started %d times, want twice", n)
	}
	if !formerSlot(st) {
		t.Fatalf("wal.former_slot lost when the receiver restarted: %+v", st.Sites["test"].WAL)
	}
	if got := st.Sites["test"].WAL.FormerSlot.CreatedAt; got == nil || created == nil || !got.Equal(*created) {
		t.Errorf("former_slot created_at %v after the restart, want %v", got, created)
	}
	if got := metric(t, port, `hoard_wal_former_slot{site="test"}`); got != `hoard_wal_former_slot{site="test"} 1` {
		t.Errorf("after the receiver restarted: %q, want 1", got)
	}
	rd.stop()
}
