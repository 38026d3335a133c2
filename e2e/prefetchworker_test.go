package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestPrefetchWorker_ServerStops restores a backup and starts PostgreSQL
// on it while the storage holds every request for the WAL after the
// first segments: recovery waits in wal-fetch, and wal-fetch's detached
// prefetch worker waits for the segments ahead. Once the server is
// stopped, within 30 s no process may hold a file in the data directory,
// or have it as its working directory. The worker used to wait as long as
// the storage did, in the data directory, with pg_wal/hoard-prefetch
// open, after its server was gone. Then the directory is removed and the
// backup restored into the same path again: recovery there, with the
// storage answering, brings back every row.
func TestPrefetchWorker_ServerStops(t *testing.T) {
	s, src, proxy := newPrefetchSite(t)
	s.mustHoard("basebackup", "--fast")
	var segs []string
	for i := range 5 {
		src.Exec(t, fmt.Sprintf("insert into t select generate_series(%d, %d)", i*100+1, (i+1)*100))
		segs = append(segs, switchAndWaitArchived(t, src))
	}
	// The segments two after the one holding the backup's end are held:
	// the server reaches a consistent state (PostgreSQL 15 reads ahead of
	// replay) and accepts connections, then waits for the next one.
	held := segs[2]
	proxy.stallOn(func(r *http.Request) bool {
		i := strings.Index(r.URL.Path, "/xlog/")
		return r.Method == http.MethodGet && i >= 0 && r.URL.Path[i+len("/xlog/"):] > held
	})

	dir := filepath.Join(pgtest.TempDir(t), "data")
	s.mustHoard("restore", "--target-dir", dir)
	c := pgtest.StartDataDir(t, 15, dir, noArchiving)
	select {
	case req := <-proxy.hit:
		t.Logf("storage holds %s", req)
	case <-time.After(2 * time.Minute):
		t.Fatalf("no WAL request held within 2 minutes\n%s", tailLines(c.Log(), 20))
	}
	spool := filepath.Join(dir, "pg_wal", "hoard-prefetch")
	deadline := time.Now().Add(2 * time.Minute)
	for !spoolLocked(spool) {
		if time.Now().After(deadline) {
			t.Fatalf("no prefetch worker within 2 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.Stop(t)
	deadline = time.Now().Add(30 * time.Second)
	for {
		h := holders(t, dir)
		if len(h) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s after the server stopped, processes still hold its data directory:\n%s\nworker.log:\n%s",
				strings.Join(h, "\n"), tailLines(string(readFileOr(filepath.Join(spool, "worker.log"))), 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("worker.log (the last worker's):\n%s", tailLines(string(readFileOr(filepath.Join(spool, "worker.log"))), 10))

	proxy.stallOn(nil)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	s.mustHoard("restore", "--target-dir", dir)
	again := pgtest.StartDataDir(t, 15, dir, noArchiving)
	again.WaitRecoveryDone(t, 3*time.Minute)
	if got := again.QueryString(t, "select count(*) from t"); got != "500" {
		t.Errorf("restored again into the same path: %s rows, want 500", got)
	}
}

// spoolLocked reports whether a prefetch worker holds the spool's lock.
func spoolLocked(spool string) bool {
	f, err := os.Open(filepath.Join(spool, "lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	return flockBusy(f)
}

// holders lists the processes with a file open in dir, or dir (or a
// directory in it) as their working directory, as "pid command: path".
func holders(t *testing.T, dir string) []string {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range procs {
		links, _ := filepath.Glob(filepath.Join(p, "fd", "*"))
		links = append(links, filepath.Join(p, "cwd"))
		for _, l := range links {
			target, err := os.Readlink(l)
			if err != nil || (target != dir && !strings.HasPrefix(target, dir+"/")) {
				continue
			}
			cmdline, _ := os.ReadFile(filepath.Join(p, "cmdline"))
			out = append(out, fmt.Sprintf("%s %s: %s", filepath.Base(p), strings.ReplaceAll(string(cmdline), "\x00", " "), target))
		}
	}
	return out
}

// readFileOr returns the file's contents, or nil.
func readFileOr(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}
