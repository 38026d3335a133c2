package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// longrunUsage is what the daemon holds after a batch of cycles: what a
// daemon running for months must not accumulate.
type longrunUsage struct {
	goroutines int // after settling
	fds        int // open in this process
	statusLen  int // leaves and elements in /status's JSON
	series     int // samples in /metrics
	spool      int // entries in the spool directories
	files      int // entries in the alert and temporary directories
}

// String is u in one line, for the test log.
func (u longrunUsage) String() string {
	return fmt.Sprintf("goroutines %d, fds %d, /status leaves %d, /metrics series %d, spool entries %d, other files %d",
		u.goroutines, u.fds, u.statusLen, u.series, u.spool, u.files)
}

// TestRun_CyclesLeaveNothing runs the cycles a daemon repeats for months,
// accelerated against a real server: the walsender terminated
// (reconnect), a server restart, segments switched and archived, a
// requested basebackup taken, and /status, /metrics and /healthz read.
// After a warm-up batch it runs one batch, measures, runs another and
// measures again: goroutines, open fds, the number of leaves in /status,
// the number of /metrics series, the spool's entries and those of the
// alert and temporary directories must not grow with the number of
// cycles.
func TestRun_CyclesLeaveNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	c, site := backedUpCluster(t, storage.NewLocal(t.TempDir()))
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where the daemon's temporary files go
	arch, _, _ := site.OpenArchive(context.Background())
	port := testio.FreePort(t)
	rd := runDaemon(t, Options{Sites: []Site{site}, HTTP: &HTTPConfig{Address: "127.0.0.1", Port: port}})
	rd.waitFor("the first basebackup", func(st Status) bool { return st.Sites["test"].Backups == 1 })

	pr := &longrunProbe{t: t, port: port, spool: []string{site.SpoolDir}, dirs: []string{rd.opts.AlertDir, tmp}}
	get := pr.get
	backups := 1
	cycle := func(restart bool) {
		t.Helper()
		old := c.QueryString(t, "select coalesce(max(pid), 0)::text from pg_stat_replication")
		if restart {
			c.Restart(t)
		} else {
			c.Exec(t, "select pg_terminate_backend(pid) from pg_stat_replication")
		}
		c.WaitTrue(t, runTimeout, "select count(*) > 0 from pg_stat_replication where pid <> $1::int and state = 'streaming'", old)
		for range 2 {
			seg := c.SwitchWAL(t)
			rd.waitFor("segment "+seg+" archived", func(Status) bool {
				_, err := arch.Store.Stat(context.Background(), arch.Layout.WALKey(seg))
				return err == nil
			})
		}
		code, body := postBackup(t, port, "test")
		if code != http.StatusCreated {
			t.Fatalf("basebackup request: %d %q", code, body)
		}
		id := strings.TrimSpace(body[strings.LastIndex(body, " ")+1:])
		deadline := time.Now().Add(runTimeout)
		for {
			var rs RequestStatus
			if err := json.Unmarshal([]byte(get("/test/basebackup/"+id)), &rs); err != nil {
				t.Fatal(err)
			}
			if rs.State == RequestStored {
				break
			}
			if rs.Done() || time.Now().After(deadline) {
				t.Fatalf("request %s: %+v", id, rs)
			}
			time.Sleep(100 * time.Millisecond)
		}
		backups++
		rd.waitFor("the requested backup counted", func(st Status) bool {
			return st.Sites["test"].Backups == backups && !st.Sites["test"].BackupRunning
		})
		for range 5 {
			get("/status")
			get("/metrics")
			get("/healthz")
		}
	}
	batch := func() {
		t.Helper()
		cycle(true)
		cycle(false)
		cycle(false)
	}

	batch() // warm-up: every kind of cycle has run once
	first := pr.measure(5*time.Second, longrunUsage{})
	batch()
	second := pr.measure(15*time.Second, first)
	pr.compare(first, second)
}

// leaves counts the scalars of a decoded JSON value.
func leaves(v any) int {
	switch v := v.(type) {
	case map[string]any:
		n := 0
		for _, e := range v {
			n += leaves(e)
		}
		return n
	case []any:
		n := 0
		for _, e := range v {
			n += leaves(e)
		}
		return n
	default:
		return 1
	}
}

// longrunProbe reads what a running daemon holds (longrunUsage).
type longrunProbe struct {
	t     *testing.T
	port  int      // the daemon's HTTP port
	spool []string // spool directories to count
	dirs  []string // other directories whose entries must not pile up
}

// get reads path from the daemon's HTTP server, on a new connection each
// time, and fails the test unless it answers 200.
func (p *longrunProbe) get(path string) string {
	p.t.Helper()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: runTimeout}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d%s", p.port, path))
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		p.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}

// entries counts the entries of dir and of the directories below it.
func (p *longrunProbe) entries(dir string) int {
	p.t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if path != dir {
			n++
		}
		return err
	})
	if err != nil {
		p.t.Fatal(err)
	}
	return n
}

// measure waits up to settle for the goroutines and fds to come down to
// those of to, and returns what the daemon holds then.
func (p *longrunProbe) measure(settle time.Duration, to longrunUsage) longrunUsage {
	p.t.Helper()
	// Goroutines and fds come and go with the state interval, the
	// listings and the test's own queries: take the lowest counts seen
	// while they settle.
	fds := func() int {
		es, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			p.t.Fatal(err)
		}
		return len(es)
	}
	u := longrunUsage{goroutines: runtime.NumGoroutine(), fds: fds()}
	for deadline := time.Now().Add(settle); time.Now().Before(deadline) && (u.goroutines > to.goroutines || u.fds > to.fds); {
		time.Sleep(100 * time.Millisecond)
		u.goroutines = min(u.goroutines, runtime.NumGoroutine())
		u.fds = min(u.fds, fds())
	}
	var st any
	if err := json.Unmarshal([]byte(p.get("/status")), &st); err != nil {
		p.t.Fatal(err)
	}
	u.statusLen = leaves(st)
	for _, line := range strings.Split(p.get("/metrics"), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			u.series++
		}
	}
	for _, d := range p.spool {
		u.spool += p.entries(d)
	}
	for _, d := range p.dirs {
		u.files += p.entries(d)
	}
	return u
}

// compare fails the test if anything grew from first to second.
func (p *longrunProbe) compare(first, second longrunUsage) {
	p.t.Helper()
	p.t.Logf("after 1 batch: %v", first)
	p.t.Logf("after 2 batches: %v", second)
	if second.goroutines > first.goroutines {
		buf := make([]byte, 1<<20)
		p.t.Errorf("goroutines grew from %d to %d over a batch of cycles:\n%s", first.goroutines, second.goroutines, buf[:runtime.Stack(buf, true)])
	}
	if second.fds > first.fds {
		p.t.Errorf("open fds grew from %d to %d over a batch of cycles", first.fds, second.fds)
	}
	if second.statusLen > first.statusLen {
		p.t.Errorf("/status grew from %d to %d leaves over a batch of cycles", first.statusLen, second.statusLen)
	}
	if second.series > first.series {
		p.t.Errorf("/metrics grew from %d to %d series over a batch of cycles", first.series, second.series)
	}
	if second.spool > first.spool {
		p.t.Errorf("the spool grew from %d to %d entries over a batch of cycles", first.spool, second.spool)
	}
	if second.files > first.files {
		p.t.Errorf("the alert and temporary directories grew from %d to %d entries over a batch of cycles", first.files, second.files)
	}
}

// TestRun_ReloadCyclesLeaveNothing runs the other cycles of a long-lived
// daemon: a reload (SIGHUP) that adds a site under a new name, and one
// that removes it again, then the storage failing and recovering while
// segments are switched. Nothing the added and removed sites or the
// failures left may grow with the number of cycles: goroutines, fds,
// /status, /metrics, spool, alert and temporary files.
func TestRun_ReloadCyclesLeaveNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1})
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where the daemon's temporary files go
	st := &downStore{Store: storage.NewLocal(t.TempDir())}
	site := streamingSiteTo(t, c.ConnString("postgres"), st)
	arch, _, _ := site.OpenArchive(context.Background())
	port := testio.FreePort(t)
	reload := make(chan []Site)
	// A removed site stores its spool within DrainTimeout or stays (the
	// reload is refused): on 2 busy cores that can take more than a few
	// seconds, and a drain returns once it is done.
	rd := runDaemon(t, Options{Sites: []Site{site}, HTTP: &HTTPConfig{Address: "127.0.0.1", Port: port},
		DrainTimeout: time.Minute, Reload: reload})
	streaming := func(name string) func(Status) bool {
		return func(s Status) bool { w := s.Sites[name].WAL; return w != nil && w.Connected }
	}
	rd.waitFor("the receiver streaming", streaming("test"))
	pr := &longrunProbe{t: t, port: port, spool: []string{site.SpoolDir}, dirs: []string{rd.opts.AlertDir, tmp}}

	n := 0
	cycle := func() {
		t.Helper()
		// A site added under a new name, streaming, then removed.
		n++
		name := fmt.Sprintf("other%d", n)
		other := streamingSite(t, c.ConnString("postgres"))
		other.Name, other.Slot = name, "hoard_"+name
		reload <- []Site{site, other}
		rd.waitFor(name+" streaming", streaming(name))
		pr.get("/status")
		pr.get("/metrics")
		reload <- []Site{site}
		rd.waitFor(name+" gone", func(s Status) bool { _, ok := s.Sites[name]; return !ok })
		// The removed site's slot is the operator's to drop.
		c.WaitTrue(t, runTimeout, "select not active from pg_replication_slots where slot_name = $1", other.Slot)
		c.Exec(t, "select pg_drop_replication_slot($1)", other.Slot)

		// The storage fails while a segment is switched, then recovers.
		st.down.Store(true)
		seg := c.SwitchWAL(t)
		rd.waitFor("an upload failure", func(s Status) bool { return s.Sites["test"].UploadFailures > 0 })
		pr.get("/status")
		pr.get("/metrics")
		st.down.Store(false)
		rd.waitFor("segment "+seg+" archived", func(s Status) bool {
			if s.Sites["test"].UploadFailures > 0 {
				return false
			}
			_, err := arch.Store.Stat(context.Background(), arch.Layout.WALKey(seg))
			return err == nil
		})
	}
	batch := func() {
		t.Helper()
		for range 3 {
			cycle()
		}
	}

	batch() // warm-up
	first := pr.measure(5*time.Second, longrunUsage{})
	batch()
	second := pr.measure(15*time.Second, first)
	pr.compare(first, second)
}
