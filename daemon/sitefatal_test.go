package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
	"github.com/hoardbackup/hoard/walstream"
)

// slotGoneSite returns a cluster and a streaming site named name whose
// spool the server can no longer stream: the site streamed once (a
// daemon run, stopped), then, while no daemon ran, its slot was dropped
// and created again and checkpoints recycled the segment the spool
// resumes at. Its next run stops with walstream.ErrWALRemoved, as after
// a slot dropped or invalidated while the daemon was down (docs/daemon.md,
// the row "the server can no longer stream the spool's WAL").
func slotGoneSite(t *testing.T, name string) (*pgtest.Cluster, Site) {
	t.Helper()
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1})
	s := streamingSite(t, c.ConnString("postgres"))
	s.Name, s.Slot = name, "hoard_"+name
	rd := runDaemon(t, Options{Sites: []Site{s}})
	rd.waitFor(name+" streaming", func(st Status) bool { w := st.Sites[name].WAL; return w != nil && w.Connected })
	c.Exec(t, "create table filler (i int)")
	c.Exec(t, "insert into filler select generate_series(1, 1000)")
	rd.stop()

	var seg string
	entries, err := os.ReadDir(s.SpoolDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), wal.PartialSuffix); ok && len(n) == 24 {
			seg = n
		}
	}
	if seg == "" {
		t.Fatalf("no .partial segment in the spool %s after the stop: %v", s.SpoolDir, entries)
	}
	c.WaitTrue(t, runTimeout, "select not exists (select from pg_replication_slots where slot_name = $1 and active)", s.Slot)
	c.Exec(t, "select pg_drop_replication_slot($1)", s.Slot)
	c.Exec(t, "select pg_switch_wal()")
	c.Exec(t, "checkpoint")
	c.Exec(t, "select pg_create_physical_replication_slot($1, true)", s.Slot)
	deadline := time.Now().Add(runTimeout)
	for {
		if _, err := os.Stat(filepath.Join(c.DataDir, "pg_wal", seg)); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server did not recycle %s", seg)
		}
		c.Exec(t, "insert into filler select generate_series(1, 1000)")
		c.Exec(t, "select pg_switch_wal()")
		c.Exec(t, "checkpoint")
		time.Sleep(50 * time.Millisecond)
	}
	return c, s
}

// storeFiles returns the files of a local store under dir, each with its
// size and modification time: a second store of an object shows.
func storeFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		out[p] = fmt.Sprintf("%d %s", fi.Size(), fi.ModTime().Format(time.RFC3339Nano))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// httpGet returns the status code and body of GET path on the daemon's
// HTTP port.
func httpGet(t *testing.T, port int, path string) (int, string) {
	t.Helper()
	return httpDo(t, http.MethodGet, port, path)
}

// siteRecovered waits until site, stopped by an error, streams again
// and its failure is over, and checks that the alert file, /healthz and
// hoard_site_failed say so.
func (rd *runningDaemon) siteRecovered(t *testing.T, port int, site string) {
	t.Helper()
	rd.waitFor(site+" streaming again, its failure over", func(st Status) bool {
		s := st.Sites[site]
		return s.Running && s.Stopped == nil && s.WAL != nil && s.WAL.Connected
	})
	rd.waitFor("site_stopped_error cleared", func(Status) bool { return !rd.alertFile(AlertSiteStopped) })
	if code, body := httpGet(t, port, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz once %s streams again: %d %q, want 200", site, code, body)
	}
	want := fmt.Sprintf(`hoard_site_failed{site=%q} 0`, site)
	if _, metrics := httpGet(t, port, "/metrics"); !strings.Contains(metrics, want) {
		t.Errorf("/metrics lacks %s once %s streams again", want, site)
	}
}

// TestRun_SiteFatalOthersRun: a daemon of two sites, one of which (a)
// cannot resume streaming (its slot was dropped and its WAL recycled
// while the daemon was down: walstream.ErrWALRemoved). Before, its error
// ended Run (exit 1), stopping the other site (b) with it; under systemd
// or Kubernetes, a restart loop in which b lost its connection and any
// basebackup in progress every few seconds. Now site a stops alone,
// loudly, and b streams on and completes a requested basebackup:
//   - alone, site a still ends Run with its error (exit 1, as before);
//   - beside b, a's failure shows in /status (running false, stopped
//     with its error), /healthz (503 naming a), the site_stopped_error
//     alert file and hoard_site_failed, and the log; a backup request
//     for a is refused (503); a is retried on a backoff and a retry
//     stores nothing twice;
//   - b's receiver is never restarted and its requested basebackup is
//     stored;
//   - once the spool's files are moved away (the error's hint), a
//     reload (SIGHUP) starts a at once: it streams again and the alert,
//     healthz and the metric clear.
func TestRun_SiteFatalOthersRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	_, a := slotGoneSite(t, "a")
	storeA := filepath.Join(t.TempDir(), "store-a")
	archA := &archive.Archive{Store: storage.NewLocal(storeA), Codec: &archive.Codec{}, Site: "a"}
	a.OpenArchive = func(context.Context) (*archive.Archive, func(), error) { return archA, func() {}, nil }

	// Alone, the broken site still stops the daemon.
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	if err := Run(ctx, Options{Sites: []Site{a}, Logger: zerolog.New(zerolog.NewTestWriter(t))}); !errors.Is(err, walstream.ErrWALRemoved) {
		t.Fatalf("Run of the broken site alone: %v, want %v", err, walstream.ErrWALRemoved)
	}
	stored := storeFiles(t, storeA)
	if len(stored) == 0 {
		t.Fatal("the broken site's run stored nothing of its spool")
	}

	cb := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1})
	b := streamingSite(t, cb.ConnString("postgres"))
	b.Name, b.Slot = "b", "hoard_b"
	b.Backup = basebackup.Options{Fast: true, ChunkSize: 1 << 20}
	archB, _, _ := b.OpenArchive(context.Background())

	old := siteRetryMin
	siteRetryMin = 2 * time.Second
	t.Cleanup(func() { siteRetryMin = old })
	port := testio.FreePort(t)
	reload := make(chan []Site)
	rd := runDaemon(t, Options{Sites: []Site{a, b}, Reload: reload, HTTP: &HTTPConfig{Address: "127.0.0.1", Port: port}})
	rd.waitFor("b streaming", func(st Status) bool { w := st.Sites["b"].WAL; return w != nil && w.Connected })
	st := rd.waitFor("a stopped twice (retried once)", func(st Status) bool {
		s := st.Sites["a"]
		return s.Stopped != nil && s.Stopped.Failures >= 2 && !s.Running
	})
	if s := st.Sites["a"].Stopped; !strings.Contains(s.Error, walstream.ErrWALRemoved.Error()) || !strings.Contains(s.Error, "hint:") {
		t.Errorf("a's stopped error %q, want %q with its hint", s.Error, walstream.ErrWALRemoved)
	}
	if got := storeFiles(t, storeA); fmt.Sprint(got) != fmt.Sprint(stored) {
		t.Errorf("the retries stored again into a's archive:\nbefore %v\nafter  %v", stored, got)
	}
	if !rd.alertFile(AlertSiteStopped) {
		t.Errorf("no %s alert file while a is stopped", AlertSiteStopped)
	}
	if !logLine(rd.logs.String(), `"level":"error"`, `"site":"a"`, `"message":"site stopped with an error`) {
		t.Errorf("no error-level log of the daemon naming site a:\n%s", rd.logs.String())
	}
	if code, body := httpGet(t, port, "/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "site a") {
		t.Errorf("/healthz while a is stopped: %d %q, want 503 naming site a", code, body)
	}
	_, metrics := httpGet(t, port, "/metrics")
	for _, want := range []string{`hoard_site_failed{site="a"} 1`, `hoard_site_running{site="b"} 1`, `hoard_site_failed{site="b"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// b goes on: a requested basebackup is stored.
	if code, body := postBackup(t, port, "b"); code != http.StatusCreated {
		t.Fatalf("basebackup request for b: %d %q", code, body)
	}
	rd.waitFor("b's requested basebackup stored", func(st Status) bool { return st.Sites["b"].Backups == 1 })
	if bs, err := archB.ListBackups(context.Background()); err != nil || len(bs) != 1 {
		t.Fatalf("b's archive holds %d basebackups (%v), want 1", len(bs), err)
	}

	// The fix the hint names, then SIGHUP: a starts at once, between
	// two retries (the next is 8 s or more away).
	rd.waitFor("a waiting for its next retry", func(st Status) bool {
		s := st.Sites["a"]
		return s.Stopped != nil && !s.Running && s.Stopped.NextRestart != nil && time.Until(*s.Stopped.NextRestart) > 5*time.Second
	})
	if code, body := postBackup(t, port, "a"); code != http.StatusServiceUnavailable || !strings.Contains(body, "stopped by an error") {
		t.Errorf("basebackup request for the stopped a: %d %q, want 503 saying it is stopped by an error", code, body)
	}
	if err := os.Rename(a.SpoolDir, a.SpoolDir+".moved"); err != nil {
		t.Fatal(err)
	}
	reload <- []Site{a, b}
	rd.siteRecovered(t, port, "a")
	if n := logLines(rd.logs.String(), `"site":"b"`, `"message":"streaming wal"`); n != 1 {
		t.Errorf("b's receiver started %d times, want once: a's failures and the reload must leave it alone", n)
	}
	rd.stop()
}

// logLines counts the lines of logs that hold every one of parts.
func logLines(logs string, parts ...string) int {
	n := 0
	for _, line := range strings.Split(logs, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

// logLine reports whether a line of logs holds every one of parts.
func logLine(logs string, parts ...string) bool { return logLines(logs, parts...) > 0 }

// TestRun_SiteFatalRestarted: a site stopped by an error beside another
// that runs (an archive_command site) is started again on its backoff,
// with no reload: once the spool's files are moved away (the error's
// hint), the restarted run streams, and after siteProvenAfter the
// failure is over: the status, the alert file, hoard_site_failed and
// /healthz clear, and the log says so.
func TestRun_SiteFatalRestarted(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	_, a := slotGoneSite(t, "a")
	b := pushSite(filepath.Join(t.TempDir(), "b"), filepath.Join(t.TempDir(), "store-b"), unreachableConn(t))
	b.Name = "b"
	oldRetry, oldProven := siteRetryMin, siteProvenAfter
	siteRetryMin, siteProvenAfter = 4*time.Second, time.Second
	t.Cleanup(func() { siteRetryMin, siteProvenAfter = oldRetry, oldProven })
	port := testio.FreePort(t)
	rd := runDaemon(t, Options{Sites: []Site{a, b}, HTTP: &HTTPConfig{Address: "127.0.0.1", Port: port}})
	rd.waitFor("a stopped, its restart 2 s or more away", func(st Status) bool {
		s := st.Sites["a"]
		return s.Stopped != nil && !s.Running && s.Stopped.NextRestart != nil && time.Until(*s.Stopped.NextRestart) > 2*time.Second
	})
	if !rd.alertFile(AlertSiteStopped) {
		t.Errorf("no %s alert file while a is stopped", AlertSiteStopped)
	}
	if st, _ := rd.status(); !st.Sites["b"].Running {
		t.Errorf("b is not running beside the stopped a")
	}
	if err := os.Rename(a.SpoolDir, a.SpoolDir+".moved"); err != nil {
		t.Fatal(err)
	}
	rd.siteRecovered(t, port, "a")
	if !logLine(rd.logs.String(), `"site":"a"`, `"message":"site running again after it stopped with an error"`) {
		t.Errorf("no log that a runs again:\n%s", rd.logs.String())
	}
	rd.stop()
}
