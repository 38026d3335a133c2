package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sync/errgroup"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// netFailSize is larger than one part, block or segment of every store as
// storetest configures it (5 MiB at most) and than S3's one-PUT threshold
// (16 MiB), so that a Put is a multipart, block, resumable or large-object
// upload.
const netFailSize = 18 << 20

// netFailStall is the stall timeout of the stores under test: short to
// keep the tests quick, long enough for a loaded machine.
const netFailStall = 2 * time.Second

// TestNetFail runs each network store through a proxy that cuts its
// connections in the middle of a large upload and of a large download,
// and freezes them past the stall timeout; between the faults, the same
// store sets up and checks the objects. What must hold, whatever the
// backend's SDK retries on its own: an upload either fails, leaving the
// object that was there as it was, or stores all of the new one, never a
// part; a download cut in the middle either goes on from where it was and
// returns every byte, or fails, never ending early as if the object were
// shorter; a stalled transfer fails within a bounded time, naming the key.
// The local store has no network and is tested for a disk that fails
// halfway in local_fail_test.go.
func TestNetFail(t *testing.T) {
	for _, srv := range storetest.Servers {
		if srv.Name == "Local" {
			continue
		}
		t.Run(srv.Name, func(t *testing.T) {
			c, p := storetest.Proxied(t, srv.Config(t))
			// As hoard's commands use them: with retries. Each store keeps
			// the timeouts it was opened with.
			opts := storage.RetryOptions{Initial: 100 * time.Millisecond}
			old := storage.StallTimeout
			storage.StallTimeout = netFailStall
			g := storage.WithRetry(open(t, c), opts)
			// Swift's transfers have a longer timeout of their own (5
			// minutes), which its downloads (g) must not wait for.
			restore := storage.SetSwiftDataTimeout(netFailStall)
			s := storage.WithRetry(open(t, c), opts)
			storage.StallTimeout = old
			restore()
			t.Run("PutCut", func(t *testing.T) { testPutCut(t, s, p) })
			t.Run("CreateCut", func(t *testing.T) { testCreateCut(t, s, p) })
			t.Run("GetCut", func(t *testing.T) { testGetCut(t, s, p) })
			t.Run("GetStall", func(t *testing.T) { testGetStall(t, g, p) })
			t.Run("PutStall", func(t *testing.T) { testPutStall(t, s, p) })
			t.Run("ListCut", func(t *testing.T) { testListCut(t, s, p) })
		})
	}
}

func open(t *testing.T, c storage.Config) storage.Store {
	t.Helper()
	st, err := storage.Open(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// randomBytes returns n bytes that no compression shrinks.
func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// onlyReader hides every method but Read (a Seek above all), as the pipe
// of a real upload does, so that nothing above the backend retries it.
type onlyReader struct{ io.Reader }

// testPutCut replaces an object with a larger one whose upload is cut
// half way: afterwards the key holds the old object or, if the Put
// succeeded, the new one, whole.
func testPutCut(t *testing.T, s storage.Store, p *storetest.Proxy) {
	ctx := context.Background()
	const key = "site/basebackup_chunk/b1/putcut"
	oldData, newData := randomBytes(3<<20, 1), randomBytes(netFailSize, 2)
	if err := s.Put(ctx, key, bytes.NewReader(oldData), storage.Metadata{"v": "old"}); err != nil {
		t.Fatal(err)
	}
	cuts := p.Cuts()
	p.CutAfter(7 << 20)
	err := s.Put(ctx, key, onlyReader{bytes.NewReader(newData)}, storage.Metadata{"v": "new"})
	p.CutAfter(0)
	if p.Cuts() == cuts {
		t.Fatal("the proxy never cut the upload")
	}
	t.Logf("Put cut after 7 MiB: %v", err)
	got := read(t, s, key)
	switch {
	case err == nil && !bytes.Equal(got, newData):
		t.Errorf("Put succeeded, the key holds %d bytes, not the %d written", len(got), len(newData))
	case err != nil && !bytes.Equal(got, oldData) && !bytes.Equal(got, newData):
		t.Errorf("Put failed (%v), and the key holds %d bytes, neither the old %d nor the new %d", err, len(got), len(oldData), len(newData))
	case err != nil && !strings.Contains(err.Error(), key):
		t.Errorf("Put's error does not name the key %s: %v", key, err)
	}
}

// testCreateCut creates an object (as wal-push does) whose upload is cut
// half way: afterwards the key holds nothing or, if Create succeeded or
// says the object exists (its own bytes landed before the cut), all of it.
func testCreateCut(t *testing.T, s storage.Store, p *storetest.Proxy) {
	ctx := context.Background()
	const key = "site/xlog/000000010000000000000007"
	data := randomBytes(netFailSize, 6)
	cuts := p.Cuts()
	p.CutAfter(7 << 20)
	err := s.Create(ctx, key, onlyReader{bytes.NewReader(data)}, nil)
	p.CutAfter(0)
	if p.Cuts() == cuts {
		t.Fatal("the proxy never cut the upload")
	}
	t.Logf("Create cut after 7 MiB: %v", err)
	if _, serr := s.Stat(ctx, key); errors.Is(serr, storage.ErrNotFound) {
		if err == nil || errors.Is(err, storage.ErrExist) {
			t.Errorf("Create = %v, and no object is stored", err)
		}
		return
	}
	if got := read(t, s, key); !bytes.Equal(got, data) {
		t.Errorf("Create = %v, and the key holds %d bytes, not the %d written", err, len(got), len(data))
	}
}

// read returns the whole object under key, failing the test on an error.
func read(t *testing.T, st storage.Store, key string) []byte {
	t.Helper()
	b, o := storetest.Read(t, st, key)
	if o.Size != int64(len(b)) {
		t.Errorf("Open says %d bytes, read %d", o.Size, len(b))
	}
	return b
}

// testGetCut reads a large object, and a range of it, through connections
// cut after 3 MiB: the read returns every byte or an error that names the
// key, never a clean end after a part.
func testGetCut(t *testing.T, s storage.Store, p *storetest.Proxy) {
	ctx := context.Background()
	const key = "site/basebackup_chunk/b1/getcut"
	data := randomBytes(netFailSize, 3)
	if err := s.Put(ctx, key, bytes.NewReader(data), nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		open func() (io.ReadCloser, error)
		want []byte
	}{
		{"Open", func() (io.ReadCloser, error) { rc, _, err := s.Open(ctx, key); return rc, err }, data},
		{"OpenRange", func() (io.ReadCloser, error) { return s.OpenRange(ctx, key, 1<<20, 16<<20) }, data[1<<20 : 17<<20]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cuts := p.Cuts()
			p.CutAfter(3 << 20)
			defer p.CutAfter(0)
			rc, err := tc.open()
			if err != nil {
				t.Fatalf("open before the cut: %v", err)
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if p.Cuts() == cuts {
				t.Fatal("the proxy never cut the download")
			}
			t.Logf("read %d of %d bytes: %v", len(got), len(tc.want), err)
			switch {
			case err == nil && !bytes.Equal(got, tc.want):
				t.Errorf("read %d bytes and a clean end, want %d: a cut download looks like a short object", len(got), len(tc.want))
			case err != nil && !strings.Contains(err.Error(), key):
				t.Errorf("the read's error does not name the key %s: %v", key, err)
			}
		})
	}
}

// within runs f and fails the test if it has not returned after limit.
func within(t *testing.T, limit time.Duration, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		t.Fatalf("%s still waiting %s after the server stopped answering", what, limit)
		return nil
	}
}

// testGetStall freezes the server in the middle of a download: the read
// fails, naming the key, long before a minute.
func testGetStall(t *testing.T, s storage.Store, p *storetest.Proxy) {
	ctx := context.Background()
	const key = "site/basebackup_chunk/b1/getstall"
	if err := s.Put(ctx, key, bytes.NewReader(randomBytes(netFailSize, 4)), nil); err != nil {
		t.Fatal(err)
	}
	rc, _, err := s.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	p.Freeze(true)
	defer p.Freeze(false)
	err = within(t, time.Minute, "Read", func() error { _, err := io.Copy(io.Discard, rc); return err })
	t.Logf("read from a frozen server: %v", err)
	if err == nil || !strings.Contains(err.Error(), key) {
		t.Errorf("read from a frozen server = %v, want an error naming %s", err, key)
	}
}

// testPutStall freezes the server before a large upload: the Put fails,
// naming the key, long before a minute, and leaves no object; once the
// server answers again, a Put succeeds.
func testPutStall(t *testing.T, s storage.Store, p *storetest.Proxy) {
	ctx := context.Background()
	const key = "site/basebackup_chunk/b1/putstall"
	data := randomBytes(netFailSize, 5)
	p.Freeze(true)
	defer p.Freeze(false)
	err := within(t, time.Minute, "Put", func() error { return s.Put(ctx, key, onlyReader{bytes.NewReader(data)}, nil) })
	t.Logf("Put to a frozen server: %v", err)
	if err == nil || !strings.Contains(err.Error(), key) {
		t.Errorf("Put to a frozen server = %v, want an error naming %s", err, key)
	}
	p.Freeze(false)
	if _, err := s.Stat(ctx, key); err == nil {
		t.Errorf("a Put that failed left an object")
	}
	if err := s.Put(ctx, key, bytes.NewReader(data), nil); err != nil {
		t.Fatalf("Put once the server answers again: %v", err)
	}
	if got := read(t, s, key); !bytes.Equal(got, data) {
		t.Errorf("the key holds %d bytes, want %d", len(got), len(data))
	}
}

// listCutObjects is more keys than one page of S3's and GCS's listings
// (1000), so that a listing fetches a page after a cut.
const listCutObjects = 1200

// testListCut lists a folder of many objects (as retention lists xlog/
// and basebackup/) through connections cut on the way:
// the listing either fails or reports every key once, in order. One that
// silently ends early or repeats keys would make retention count backups
// twice or miss the ones a kept backup needs.
func testListCut(t *testing.T, s storage.Store, p *storetest.Proxy) {
	ctx := context.Background()
	// A folder of its own: CreateCut may leave its segment in site/xlog/
	// (when its upload landed before the cut).
	const prefix = "listcut/xlog/"
	want := make([]string, listCutObjects)
	for i := range want {
		want[i] = fmt.Sprintf("%s%024X", prefix, i)
	}
	keys := make(chan string)
	var g errgroup.Group
	for range 8 {
		g.Go(func() error {
			for k := range keys {
				if err := s.Put(ctx, k, strings.NewReader(k), nil); err != nil {
					return err
				}
			}
			return nil
		})
	}
	for _, k := range want {
		keys <- k
	}
	close(keys)
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	// A cut 40 KiB into the first page makes the listing start again; a
	// cut 2 KiB into what follows the 600th key reported, the request
	// for the second page where the backend pages (S3, GCS), makes it go
	// on after the keys it reported.
	cuts := p.Cuts()
	p.CutAfter(40 << 10)
	var got []string
	err := s.List(ctx, prefix, func(o storage.Object) error {
		got = append(got, o.Key)
		if len(got) == 600 {
			p.CutAfter(2 << 10)
		}
		return nil
	})
	p.CutAfter(0)
	if p.Cuts() == cuts {
		t.Fatal("the proxy never cut the listing")
	}
	t.Logf("List cut %d times: %v, %d keys", p.Cuts()-cuts, err, len(got))
	if err == nil {
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("List succeeded with other keys than stored (-want +got):\n%s", diff)
		}
	}
}
