package walstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/wal"
)

// testTimeout bounds each wait of a test.
const testTimeout = 2 * time.Minute

// upload is one call the sink received.
type upload struct {
	partial bool
	name    string
}

// sink is the test's Uploader: it copies files into a directory and
// records the calls in order. It stands in for archive.PushWAL, not for
// object storage.
type sink struct {
	dir string
	// failing makes every call fail while set.
	failing atomic.Bool
	// failures counts failed calls.
	failures atomic.Int64

	mu    sync.Mutex
	calls []upload
}

func newSink(t *testing.T) *sink { return &sink{dir: t.TempDir()} }

func (s *sink) Upload(ctx context.Context, path string) error { return s.put(ctx, path, false) }

func (s *sink) UploadPartial(ctx context.Context, path string, _ int64, _ bool) error {
	return s.put(ctx, path, true)
}

func (s *sink) put(ctx context.Context, path string, partial bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.failing.Load() {
		s.failures.Add(1)
		return errors.New("sink: injected failure")
	}
	name := filepath.Base(path)
	if partial != wal.IsPartialName(name) {
		return fmt.Errorf("sink: %s offered with partial=%v", name, partial)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	// Temporary name, then rename: has must not see a file half written.
	tmp := filepath.Join(s.dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, name)); err != nil {
		return err
	}
	s.mu.Lock()
	s.calls = append(s.calls, upload{partial: partial, name: name})
	s.mu.Unlock()
	return nil
}

// uploads returns the calls so far.
func (s *sink) uploads() []upload {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// has reports whether name was uploaded.
func (s *sink) has(name string) bool {
	_, err := os.Stat(filepath.Join(s.dir, name))
	return err == nil
}

// running is a Receiver running in the background.
type running struct {
	r      *Receiver
	cancel context.CancelFunc
	done   chan error
}

// start runs a Receiver for cluster c with the spool and sink given; opts
// fills in the rest.
func start(t *testing.T, c *pgtest.Cluster, spool string, up Uploader, opts Options) *running {
	t.Helper()
	return startLogged(t, c, spool, up, opts, nil)
}

// startLogged is start with the Receiver's log also written to w (JSON
// lines) when w is not nil.
func startLogged(t *testing.T, c *pgtest.Cluster, spool string, up Uploader, opts Options, w io.Writer) *running {
	t.Helper()
	return startReceiver(t, c, spool, up, opts, w, nil)
}

// startReceiver is startLogged with setup, when not nil, called on the
// Receiver before it runs.
func startReceiver(t *testing.T, c *pgtest.Cluster, spool string, up Uploader, opts Options, w io.Writer, setup func(*Receiver)) *running {
	t.Helper()
	rr := launch(t, c, spool, up, opts, w, setup)
	waitFor(t, "receiver streaming", func() bool { return rr.r.Status().Connected })
	return rr
}

// launch is startReceiver without the wait for a connection: the server
// may be gone.
func launch(t *testing.T, c *pgtest.Cluster, spool string, up Uploader, opts Options, w io.Writer, setup func(*Receiver)) *running {
	t.Helper()
	opts.ConnString = c.ConnString("postgres")
	if opts.Slot == "" {
		opts.Slot = "hoard"
	}
	opts.SpoolDir = spool
	opts.Uploader = up
	var out io.Writer = zerolog.NewTestWriter(t)
	if w != nil {
		out = io.MultiWriter(out, w)
	}
	opts.Logger = zerolog.New(out).Level(zerolog.DebugLevel)
	if opts.StatusInterval == 0 {
		opts.StatusInterval = 200 * time.Millisecond
	}
	r, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	r.retryMin, r.retryMax = 20*time.Millisecond, 200*time.Millisecond
	if setup != nil {
		setup(r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rr := &running{r: r, cancel: cancel, done: make(chan error, 1)}
	go func() { rr.done <- r.Run(ctx) }()
	t.Cleanup(func() { rr.stop(t) })
	return rr
}

// stop cancels the Receiver and waits for Run; it fails the test when Run
// returned an error. Calling it again does nothing.
func (rr *running) stop(t *testing.T) {
	t.Helper()
	if rr.done == nil {
		return
	}
	rr.cancel()
	select {
	case err := <-rr.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(testTimeout):
		t.Errorf("Run did not return after cancel")
	}
	rr.done = nil
}

// waitFor polls cond until it holds, failing the test after testTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lsn runs a query returning an LSN.
func lsn(t *testing.T, c *pgtest.Cluster, sql string) pglogrepl.LSN {
	t.Helper()
	l, err := pglogrepl.ParseLSN(c.QueryString(t, sql))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// switchWAL writes a little and switches to a new segment; it returns the
// name of the segment it completed.
func switchWAL(t *testing.T, c *pgtest.Cluster) string {
	t.Helper()
	c.Exec(t, "create table if not exists filler (i int)")
	c.Exec(t, "insert into filler select generate_series(1, 1000)")
	return c.QueryString(t, "select pg_walfile_name(pg_switch_wal())")
}

// segSizeOf returns the cluster's segment size.
func segSizeOf(t *testing.T, c *pgtest.Cluster) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(c.QueryString(t, "select setting from pg_settings where name = 'wal_segment_size'"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitUploaded waits until every named file is in the sink.
func waitUploaded(t *testing.T, s *sink, names ...string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("upload of %v", names), func() bool {
		for _, n := range names {
			if !s.has(n) {
				return false
			}
		}
		return true
	})
}

// compareWithServer checks that each uploaded segment equals the server's
// pg_wal copy, where the server still has it, and returns how many were
// compared.
func compareWithServer(t *testing.T, c *pgtest.Cluster, s *sink, names []string) int {
	t.Helper()
	compared := 0
	for _, name := range names {
		want, err := os.ReadFile(filepath.Join(c.DataDir, "pg_wal", name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(s.dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("uploaded %s differs from the server's (%d vs %d bytes, first difference at %d)", name, len(got), len(want), firstDiff(got, want))
		}
		compared++
	}
	return compared
}

// checkStreamed checks that complete segments were uploaded once each, in
// order, and that those of names the server still holds equal its copies,
// of which there must be at least one.
func checkStreamed(t *testing.T, c *pgtest.Cluster, s *sink, names []string) {
	t.Helper()
	checkOrder(t, s.uploads())
	if compareWithServer(t, c, s, names) == 0 {
		t.Error("nothing compared")
	}
}

// firstDiff returns the offset of the first differing byte.
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// checkOrder checks that complete segments were uploaded once each, in
// increasing order.
func checkOrder(t *testing.T, calls []upload) {
	t.Helper()
	var last string
	seen := map[string]bool{}
	for _, c := range calls {
		if c.partial || !wal.IsSegmentName(c.name) {
			continue
		}
		if seen[c.name] {
			t.Errorf("segment %s uploaded twice", c.name)
		}
		seen[c.name] = true
		if c.name < last {
			t.Errorf("segment %s uploaded after %s", c.name, last)
		}
		last = c.name
	}
}

// readPrefix reads the first n bytes of a file.
func readPrefix(t *testing.T, path string, n int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf, err := io.ReadAll(io.LimitReader(f, n))
	if err != nil {
		t.Fatal(err)
	}
	return buf
}
