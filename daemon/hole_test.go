package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// downStore is a real store that fails every call while down is set: the
// storage is unreachable.
type downStore struct {
	storage.Store
	down    atomic.Bool
	refused atomic.Int64 // calls failed while down
}

var errDown = errors.New("storage unreachable")

// isDown reports whether s is down, counting the call it refuses.
func (s *downStore) isDown() bool {
	if !s.down.Load() {
		return false
	}
	s.refused.Add(1)
	return true
}

func (s *downStore) Put(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	if s.isDown() {
		return errDown
	}
	return s.Store.Put(ctx, key, r, md)
}

func (s *downStore) Create(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	if s.isDown() {
		return errDown
	}
	return s.Store.Create(ctx, key, r, md)
}

func (s *downStore) Stat(ctx context.Context, key string) (storage.Object, error) {
	if s.isDown() {
		return storage.Object{}, errDown
	}
	return s.Store.Stat(ctx, key)
}

func (s *downStore) List(ctx context.Context, prefix string, fn func(storage.Object) error) error {
	if s.isDown() {
		return errDown
	}
	return s.Store.List(ctx, prefix, fn)
}

// metric returns the line of the Prometheus text at port that starts
// with prefix.
func metric(t *testing.T, port int, prefix string) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// TestRun_WALHole loses the spool while segments wait in it for the
// storage, and restarts the daemon: the receiver's hole check finds the
// lost segments, and the daemon shows them in /status (wal.holes), in
// hoard_wal_hole_segments and as the wal_hole_error alert file. A
// basebackup taken after the hole clears all three.
func TestRun_WALHole(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	st := &downStore{Store: storage.NewLocal(t.TempDir())}
	c, site := backedUpCluster(t, st)
	port := testio.FreePort(t)
	opts := Options{Sites: []Site{site}, HTTP: &HTTPConfig{Address: "127.0.0.1", Port: port}, DrainTimeout: time.Second, AlertDir: filepath.Join(t.TempDir(), "alerts")}
	rd := runDaemon(t, opts)
	rd.waitFor("the first basebackup", func(st Status) bool { return st.Sites["test"].Backups == 1 })

	// The storage goes away; three segments wait in the spool.
	st.down.Store(true)
	var lost []string
	for range 3 {
		c.Exec(t, "select pg_logical_emit_message(false, 'hoard-test', 'x')")
		lost = append(lost, c.QueryString(t, "select pg_walfile_name(pg_switch_wal())"))
	}
	rd.waitFor("three segments waiting", func(st Status) bool {
		return st.Sites["test"].WAL != nil && st.Sites["test"].WAL.QueueDepth >= 3
	})
	// The hole exists only once the server has taken the flush position
	// past the lost segments into the slot, where the restarted receiver
	// resumes: the final flush position sent at the stop may never be
	// read (walstream's TestReceiver_Run_Hole resumed at the first lost
	// segment so, and found no hole).
	flushed, err := pglogrepl.ParseLSN(c.QueryString(t, "select pg_current_wal_flush_lsn()::text"))
	if err != nil {
		t.Fatal(err)
	}
	boundary := (flushed - flushed%(1<<20)).String() // 1 MiB segments
	rd.waitFor("the slot past "+lost[2], func(Status) bool {
		return c.QueryString(t, "select (restart_lsn >= $1::pg_lsn)::text from pg_replication_slots where slot_name = 'hoard_test'", boundary) == "true"
	})
	rd.stop()

	// The spool is lost; the storage is back; the daemon starts again.
	if err := os.RemoveAll(site.SpoolDir); err != nil {
		t.Fatal(err)
	}
	st.down.Store(false)
	rd = runDaemon(t, opts)
	got := rd.waitFor("the hole in the status", func(st Status) bool {
		return st.Sites["test"].WAL != nil && len(st.Sites["test"].WAL.Holes) > 0
	}).Sites["test"].WAL.Holes
	if len(got) != 1 || got[0].First != lost[0] || got[0].Last != lost[2] || got[0].Count != 3 {
		t.Errorf("holes %+v, want %s..%s (3 segments)", got, lost[0], lost[2])
	}
	rd.waitFor("the alert", func(Status) bool { return rd.alertFile(AlertWALHole) })
	if m := metric(t, port, MetricWALHoleSegments); m != MetricWALHoleSegments+`{site="test"} 3` {
		t.Errorf("metric %q, want 3 segments", m)
	}

	// A basebackup after the hole: restores of it are not affected.
	if code, body := postBackup(t, port, "test"); code != http.StatusCreated {
		t.Fatalf("basebackup request: %d %s", code, body)
	}
	rd.waitFor("the hole resolved by the second basebackup", func(st Status) bool {
		s := st.Sites["test"]
		return s.Backups == 2 && s.WAL != nil && len(s.WAL.Holes) == 0 && !rd.alertFile(AlertWALHole)
	})
	if m := metric(t, port, MetricWALHoleSegments); m != MetricWALHoleSegments+`{site="test"} 0` {
		t.Errorf("metric %q after the basebackup, want 0", m)
	}
}

// walReadDenyStore is a real store that, while deny is set, refuses to
// read complete WAL segments (Open, OpenRange), as a storage whose
// permissions went wrong does; listings and writes go through.
type walReadDenyStore struct {
	storage.Store
	deny atomic.Bool
}

var errWALDenied = fmt.Errorf("access denied: %w", storage.ErrPermanent)

// denied reports whether key is a complete segment's and reads of them
// are refused.
func (s *walReadDenyStore) denied(key string) bool {
	return s.deny.Load() && strings.Contains(key, "xlog/") && len(path.Base(key)) == 24
}

func (s *walReadDenyStore) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	if s.denied(key) {
		return nil, storage.Object{}, errWALDenied
	}
	return s.Store.Open(ctx, key)
}

func (s *walReadDenyStore) OpenRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if s.denied(key) {
		return nil, errWALDenied
	}
	return s.Store.OpenRange(ctx, key, offset, length)
}

// TestRun_WALHoleUndecided restarts the daemon while the storage
// refuses to read the stored segments: the receiver's hole check at
// resume cannot read the newest one's first page and cannot decide
// whether WAL is missing. The daemon shows it in /status
// (wal.hole_check_undecided, naming the segment and the storage's error)
// and in hoard_wal_hole_check_undecided, not in the error log alone, and
// records no hole; a basebackup that starts after the resume point
// clears both, as it clears a hole.
func TestRun_WALHoleUndecided(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	st := &walReadDenyStore{Store: storage.NewLocal(t.TempDir())}
	c, site := backedUpCluster(t, st)
	port := testio.FreePort(t)
	opts := Options{Sites: []Site{site}, HTTP: &HTTPConfig{Address: "127.0.0.1", Port: port}, DrainTimeout: time.Second, AlertDir: filepath.Join(t.TempDir(), "alerts")}
	rd := runDaemon(t, opts)
	rd.waitFor("the first basebackup", func(st Status) bool { return st.Sites["test"].Backups == 1 })
	c.Exec(t, "select pg_logical_emit_message(false, 'hoard-test', 'x')")
	c.QueryString(t, "select pg_walfile_name(pg_switch_wal())")
	rd.waitFor("the segments stored", func(st Status) bool {
		w := st.Sites["test"].WAL
		return w != nil && w.QueueDepth == 0 && w.Uploaded != "0/0"
	})
	if m := metric(t, port, MetricWALHoleCheckUndecided); m != MetricWALHoleCheckUndecided+`{site="test"} 0` {
		t.Errorf("metric %q before, want 0", m)
	}
	rd.stop()

	st.deny.Store(true)
	rd = runDaemon(t, opts)
	w := rd.waitFor("the undecided check in the status", func(st Status) bool {
		return st.Sites["test"].WAL != nil && st.Sites["test"].WAL.HoleCheckUndecided != nil
	}).Sites["test"].WAL
	u := w.HoleCheckUndecided
	if len(u.Segment) != 24 || len(u.Unread) != 24 || u.Unread >= u.Segment || !strings.Contains(u.Error, "access denied") ||
		!strings.Contains(u.Error, "xlog/"+u.Unread) || u.CheckedAt == nil {
		t.Errorf("hole_check_undecided %+v: want the resume point, the segment below it, the storage's error naming its key, when", u)
	}
	if len(w.Holes) != 0 {
		t.Errorf("holes %+v, want none (undecided)", w.Holes)
	}
	if m := metric(t, port, MetricWALHoleCheckUndecided); m != MetricWALHoleCheckUndecided+`{site="test"} 1` {
		t.Errorf("metric %q, want 1", m)
	}

	// A basebackup after the resume point: restores of it need none of
	// the WAL the check could not decide about.
	if code, body := postBackup(t, port, "test"); code != http.StatusCreated {
		t.Fatalf("basebackup request: %d %s", code, body)
	}
	rd.waitFor("the undecided check resolved by the second basebackup", func(st Status) bool {
		s := st.Sites["test"]
		return s.Backups == 2 && s.WAL != nil && s.WAL.HoleCheckUndecided == nil
	})
	if m := metric(t, port, MetricWALHoleCheckUndecided); m != MetricWALHoleCheckUndecided+`{site="test"} 0` {
		t.Errorf("metric %q after the basebackup, want 0", m)
	}
}
