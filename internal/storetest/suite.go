package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// Keys as PGHoard names them (archive/layout.go has the real rules).
const (
	walKey     = "site/xlog/000000010000000000000012"
	controlKey = "site/basebackup/2024-01-01_10-00_0.00000000.pghoard"
	chunkKey   = "site/basebackup_chunk/2024-01-01_10-00_0/2024-01-01_10-00_0.00000001.pghoard"
	historyKey = "site/timeline/00000002.history"
	preserve   = "site/preservation_request/2024-01-01_10-00_0.00000000.pghoard_2024-02-01 00:00:00+00:00"
)

// pghoardMD is metadata as PGHoard writes it, including a value with a space
// and a colon (end-time is str(datetime)).
func pghoardMD() storage.Metadata {
	return storage.Metadata{
		"compression-algorithm": "snappy",
		"encryption-key-id":     "5ba999de817c49a682ffed124abf9a2e",
		"format":                "pghoard-bb-v2",
		"original-file-size":    "16777216",
		"host":                  "db1.example.com",
		"end-time":              "2019-07-10 14:33:12.657815+02:00",
	}
}

// Option adjusts Run for a backend.
type Option func(*options)

type options struct {
	racyCreate string // why the backend's create-if-absent is not atomic
}

// RacyCreate declares a backend whose create-if-absent precondition is
// not atomic, for the reason given: ConcurrentCreate then checks only what
// such a backend still guarantees (at least one writer succeeds, and the
// object is whole and one successful writer's), and logs how many
// succeeded.
func RacyCreate(reason string) Option { return func(o *options) { o.racyCreate = reason } }

// Run is the Store conformance suite. newStore must return an empty store
// for each call; Run closes nothing (Open's stores close themselves).
func Run(t *testing.T, newStore func(t testing.TB) storage.Store, opts ...Option) {
	ctx := context.Background()
	var o options
	for _, f := range opts {
		f(&o)
	}

	t.Run("RoundTrip", func(t *testing.T) {
		st := newStore(t)
		data := randomBytes(1, 100_000)
		md := pghoardMD()
		mustPut(t, st, walKey, data, md)
		got, gotMD := mustRead(t, st, walKey)
		if !bytes.Equal(got, data) {
			t.Fatalf("read %d bytes, want the %d written", len(got), len(data))
		}
		if diff := cmp.Diff(md, gotMD); diff != "" {
			t.Errorf("Open metadata (-want +got):\n%s", diff)
		}
		o, err := st.Stat(ctx, walKey)
		if err != nil {
			t.Fatalf("Stat: %v", err)
		}
		if o.Key != walKey || o.Size != int64(len(data)) || o.Modified.IsZero() || o.Changed.After(time.Now().Add(time.Minute)) {
			t.Errorf("Stat = %q size %d modified %v changed %v, want %q size %d and times (changed may be unknown)", o.Key, o.Size, o.Modified, o.Changed, walKey, len(data))
		}
		if diff := cmp.Diff(md, o.Metadata); diff != "" {
			t.Errorf("Stat metadata (-want +got):\n%s", diff)
		}
	})

	t.Run("EmptyObject", func(t *testing.T) {
		st := newStore(t)
		mustPut(t, st, historyKey, nil, storage.Metadata{"compression-algorithm": "snappy", "original-file-size": "0"})
		got, md := mustRead(t, st, historyKey)
		if len(got) != 0 || md["original-file-size"] != "0" {
			t.Errorf("read %d bytes, metadata %v; want 0 bytes and original-file-size 0", len(got), md)
		}
		o, err := st.Stat(ctx, historyKey)
		if err != nil || o.Size != 0 {
			t.Errorf("Stat = size %d, %v; want 0, nil", o.Size, err)
		}
	})

	t.Run("EmptyMetadataValuesDropped", func(t *testing.T) {
		st := newStore(t)
		mustPut(t, st, walKey, []byte("x"), storage.Metadata{"host": "h", "encryption-key-id": ""})
		_, md := mustRead(t, st, walKey)
		if diff := cmp.Diff(storage.Metadata{"host": "h"}, md); diff != "" {
			t.Errorf("metadata (-want +got):\n%s", diff)
		}
	})

	t.Run("LargeMultipart", func(t *testing.T) {
		st := newStore(t)
		const size = 24 << 20
		want := sha256.New()
		src := io.TeeReader(io.LimitReader(newRandReader(2), size), want)
		// Through a pipe, so the store cannot see the length or seek.
		pr, pw := io.Pipe()
		go func() { _, err := io.Copy(pw, src); pw.CloseWithError(err) }()
		if err := st.Put(ctx, chunkKey, pr, storage.Metadata{"format": "pghoard-bb-v2"}); err != nil {
			t.Fatalf("Put: %v", err)
		}
		rc, _, err := st.Open(ctx, chunkKey)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer rc.Close()
		got := sha256.New()
		n, err := io.Copy(got, rc)
		if err != nil || n != size || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
			t.Errorf("read %d bytes (%v), want %d with the same SHA-256", n, err, size)
		}
		if o, err := st.Stat(ctx, chunkKey); err != nil || o.Size != size {
			t.Errorf("Stat = size %d, %v; want %d", o.Size, err, size)
		}
	})

	t.Run("OpenRange", func(t *testing.T) {
		st := newStore(t)
		data := randomBytes(3, 10_000)
		mustPut(t, st, walKey, data, nil)
		for _, tc := range []struct{ off, n int64 }{{0, 10}, {5, -1}, {9_997, 3}, {1234, 4000}, {0, -1}, {9_999, -1}} {
			rc, err := st.OpenRange(ctx, walKey, tc.off, tc.n)
			if err != nil {
				t.Fatalf("OpenRange(%d, %d): %v", tc.off, tc.n, err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			end := int64(len(data))
			if tc.n >= 0 {
				end = tc.off + tc.n
			}
			if err != nil || !bytes.Equal(got, data[tc.off:end]) {
				t.Errorf("OpenRange(%d, %d) = %d bytes (%v), want bytes %d..%d", tc.off, tc.n, len(got), err, tc.off, end)
			}
		}
	})

	t.Run("List", func(t *testing.T) {
		st := newStore(t)
		keys := []string{
			"site/basebackup/2024-01-01_10-00_0.00000000.pghoard",
			"site/basebackup/2024-01-02_10-00_0.00000000.pghoard",
			"site/basebackup_chunk/2024-01-01_10-00_0/2024-01-01_10-00_0.00000001.pghoard",
			"site/basebackup_chunk/2024-01-01_10-00_0/2024-01-01_10-00_0.00000002.pghoard",
			"site/xlog/000000010000000000000001",
			"site/xlog/000000010000000000000002",
			"site/xlog/000000020000000000000002",
			"site/timeline/00000002.history",
			"site-b/xlog/000000010000000000000001",
			"site/a-b",
			"site/a/x",
		}
		for i, k := range keys {
			mustPut(t, st, k, bytes.Repeat([]byte{'x'}, i), nil)
		}
		for _, tc := range []struct {
			prefix string
			want   []string
		}{
			{"", []string{keys[8], keys[9], keys[10], keys[0], keys[1], keys[2], keys[3], keys[7], keys[4], keys[5], keys[6]}},
			{"site/", []string{keys[9], keys[10], keys[0], keys[1], keys[2], keys[3], keys[7], keys[4], keys[5], keys[6]}},
			{"site/basebackup/", []string{keys[0], keys[1]}},
			{"site/basebackup", []string{keys[0], keys[1], keys[2], keys[3]}},
			{"site/xlog/00000001", []string{keys[4], keys[5]}},
			{"site/a", []string{keys[9], keys[10]}},
			{"site/a/", []string{keys[10]}},
			{"site/nothing/", nil},
			{"elsewhere", nil},
		} {
			var got []string
			err := st.List(ctx, tc.prefix, func(o storage.Object) error {
				got = append(got, o.Key)
				if want := int64(indexOf(keys, o.Key)); o.Size != want {
					t.Errorf("List(%q): %s has size %d, want %d", tc.prefix, o.Key, o.Size, want)
				}
				if o.Metadata != nil {
					t.Errorf("List(%q): %s has metadata %v, want nil", tc.prefix, o.Key, o.Metadata)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("List(%q): %v", tc.prefix, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("List(%q) (-want +got):\n%s", tc.prefix, diff)
			}
		}
		stop := errors.New("stop")
		calls := 0
		err := st.List(ctx, "site/xlog/", func(storage.Object) error { calls++; return stop })
		if !errors.Is(err, stop) || calls != 1 {
			t.Errorf("List with a failing fn: %d calls, %v; want 1 call and its error", calls, err)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		st := newStore(t)
		mustPut(t, st, walKey, []byte("wal"), nil)
		mustPut(t, st, historyKey, []byte("history"), nil)
		for i := 0; i < 2; i++ {
			if err := st.Delete(ctx, walKey); err != nil {
				t.Fatalf("Delete #%d: %v", i+1, err)
			}
		}
		if err := st.Delete(ctx, "site/xlog/never"); err != nil {
			t.Errorf("Delete of a missing key: %v", err)
		}
		if _, err := st.Stat(ctx, walKey); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Stat after Delete: %v, want ErrNotFound", err)
		}
		if got := listKeys(t, st, "site/"); !cmp.Equal(got, []string{historyKey}) {
			t.Errorf("List after Delete = %v, want only %s", got, historyKey)
		}
	})

	t.Run("ErrNotFound", func(t *testing.T) {
		st := newStore(t)
		mustPut(t, st, "site/xlog/other", []byte("x"), nil)
		const missing = "site/xlog/000000010000000000000099"
		if _, _, err := st.Open(ctx, missing); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Open: %v, want ErrNotFound", err)
		}
		if _, err := st.OpenRange(ctx, missing, 0, 10); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("OpenRange: %v, want ErrNotFound", err)
		}
		if _, err := st.Stat(ctx, missing); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Stat: %v, want ErrNotFound", err)
		}
		if _, err := st.Stat(ctx, missing); errors.Is(err, storage.ErrPermanent) || storage.IsTransient(err) {
			t.Errorf("Stat: %v is permanent or transient; want only ErrNotFound", err)
		}
	})

	t.Run("Overwrite", func(t *testing.T) {
		st := newStore(t)
		mustPut(t, st, walKey, []byte("first version, longer"), storage.Metadata{"host": "a", "format": "x"})
		mustPut(t, st, walKey, []byte("second"), storage.Metadata{"host": "b"})
		got, md := mustRead(t, st, walKey)
		if string(got) != "second" || !cmp.Equal(md, storage.Metadata{"host": "b"}) {
			t.Errorf("after overwrite: %q %v, want %q map[host:b]", got, md, "second")
		}
	})

	t.Run("AbortedPut", func(t *testing.T) {
		boom := errors.New("boom")
		for _, size := range []int64{0, 100_000, 20 << 20} {
			t.Run(fmt.Sprint(size), func(t *testing.T) {
				st := newStore(t)
				mustPut(t, st, walKey, []byte("old"), storage.Metadata{"host": "old"})
				r := io.MultiReader(io.LimitReader(newRandReader(4), size), errReader{boom})
				err := st.Put(ctx, chunkKey, r, storage.Metadata{"host": "h"})
				if !errors.Is(err, boom) {
					t.Fatalf("Put = %v, want the reader's error", err)
				}
				if err := st.Put(ctx, walKey, io.MultiReader(io.LimitReader(newRandReader(5), size), errReader{boom}), nil); !errors.Is(err, boom) {
					t.Fatalf("overwriting Put = %v, want the reader's error", err)
				}
				checkOnly(t, st, walKey, "old")
			})
		}
	})

	t.Run("CancelledContext", func(t *testing.T) {
		st := newStore(t)
		mustPut(t, st, walKey, []byte("old"), nil)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := st.Put(cctx, chunkKey, bytes.NewReader([]byte("data")), nil); !errors.Is(err, context.Canceled) {
			t.Errorf("Put with a cancelled ctx = %v, want context.Canceled", err)
		}
		// Cancelled in the middle of a multi-part stream.
		cctx, cancel = context.WithCancel(ctx)
		defer cancel()
		r := &cancelReader{r: io.LimitReader(newRandReader(6), 24<<20), after: 18 << 20, cancel: cancel}
		if err := st.Put(cctx, chunkKey, r, nil); !errors.Is(err, context.Canceled) {
			t.Errorf("Put cancelled midway = %v, want context.Canceled", err)
		}
		checkOnly(t, st, walKey, "old")
	})

	t.Run("ConcurrentPuts", func(t *testing.T) {
		st := newStore(t)
		const n = 8
		errs := make([]error, n)
		testio.Race(n, func(i int) {
			key := fmt.Sprintf("site/xlog/0000000100000000000000%02X", i)
			errs[i] = st.Put(ctx, key, bytes.NewReader(randomBytes(uint64(10+i), 300_000+i)), storage.Metadata{"host": key})
		})
		for i, err := range errs {
			if err != nil {
				t.Fatalf("Put #%d: %v", i, err)
			}
		}
		keys := listKeys(t, st, "site/xlog/")
		if len(keys) != n {
			t.Fatalf("listed %d keys, want %d: %v", len(keys), n, keys)
		}
		for i, key := range keys {
			got, md := mustRead(t, st, key)
			if !bytes.Equal(got, randomBytes(uint64(10+i), 300_000+i)) || md["host"] != key {
				t.Errorf("%s: wrong bytes or metadata %v", key, md)
			}
		}
	})

	t.Run("Create", func(t *testing.T) {
		st := newStore(t)
		if err := st.Create(ctx, walKey, bytes.NewReader([]byte("first")), storage.Metadata{"host": "a"}); err != nil {
			t.Fatalf("Create of a new key: %v", err)
		}
		err := st.Create(ctx, walKey, bytes.NewReader([]byte("second")), storage.Metadata{"host": "b"})
		if !errors.Is(err, storage.ErrExist) || storage.IsTransient(err) {
			t.Fatalf("Create of an existing key = %v, want ErrExist (not transient)", err)
		}
		mustPut(t, st, historyKey, []byte("put"), nil)
		if err := st.Create(ctx, historyKey, bytes.NewReader([]byte("created")), nil); !errors.Is(err, storage.ErrExist) {
			t.Fatalf("Create over a Put object = %v, want ErrExist", err)
		}
		if got, md := mustRead(t, st, walKey); string(got) != "first" || md["host"] != "a" {
			t.Errorf("%s = %q %v after a refused Create, want the first object", walKey, got, md)
		}
		if got, _ := mustRead(t, st, historyKey); string(got) != "put" {
			t.Errorf("%s = %q after a refused Create, want %q", historyKey, got, "put")
		}
		// A failed Create leaves nothing, and the key stays free.
		boom := errors.New("boom")
		if err := st.Create(ctx, chunkKey, io.MultiReader(bytes.NewReader([]byte("part")), errReader{boom}), nil); !errors.Is(err, boom) {
			t.Fatalf("Create with a failing reader = %v, want its error", err)
		}
		if _, err := st.Stat(ctx, chunkKey); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Stat after a failed Create: %v, want ErrNotFound", err)
		}
		if err := st.Create(ctx, chunkKey, bytes.NewReader([]byte("whole")), nil); err != nil {
			t.Fatalf("Create after a failed Create: %v", err)
		}
		// A deleted key can be created again.
		if err := st.Delete(ctx, walKey); err != nil {
			t.Fatal(err)
		}
		if err := st.Create(ctx, walKey, bytes.NewReader([]byte("again")), nil); err != nil {
			t.Fatalf("Create after Delete: %v", err)
		}
	})

	// Ten writers create one key at once, with different bytes: the
	// backend's precondition must let exactly one win, and the object must
	// be the winner's, whole. Large objects go through multipart (S3),
	// resumable (GCS) or block (Azure) uploads, where the precondition is
	// checked when the upload completes.
	for _, size := range []int{1000, 6 << 20} {
		t.Run(fmt.Sprintf("ConcurrentCreate/%d", size), func(t *testing.T) {
			st := newStore(t)
			const writers = 10
			errs := make([]error, writers)
			testio.Race(writers, func(i int) {
				errs[i] = st.Create(ctx, walKey, bytes.NewReader(randomBytes(uint64(100+i), size)), storage.Metadata{"host": fmt.Sprint(i)})
			})
			var winners []int
			for i, err := range errs {
				switch {
				case err == nil && len(winners) > 0 && o.racyCreate == "":
					t.Errorf("writers %d and %d both created %s: the backend does not honour the create-if-absent precondition", winners[0], i, walKey)
				case err != nil && !errors.Is(err, storage.ErrExist):
					t.Errorf("writer %d: %v, want success or ErrExist", i, err)
				}
				if err == nil {
					winners = append(winners, i)
				}
			}
			if len(winners) == 0 {
				t.Fatalf("no writer created %s: %v", walKey, errs)
			}
			if len(winners) > 1 {
				t.Logf("%d of %d writers created %s (%s)", len(winners), writers, walKey, o.racyCreate)
			}
			got, md := mustRead(t, st, walKey)
			stored := -1
			for _, w := range winners {
				if bytes.Equal(got, randomBytes(uint64(100+w), size)) && md["host"] == fmt.Sprint(w) {
					stored = w
				}
			}
			if stored < 0 {
				t.Errorf("%s holds %d bytes with host %q, not the object of a writer that succeeded (%v)", walKey, len(got), md["host"], winners)
			}
			if keys := listKeys(t, st, ""); !cmp.Equal(keys, []string{walKey}) {
				t.Errorf("List = %v, want only %s", keys, walKey)
			}
		})
	}

	t.Run("PGHoardKeys", func(t *testing.T) {
		st := newStore(t)
		keys := []string{controlKey, chunkKey, historyKey, preserve, "2024-01-01_10-00_0.00000000.pghoard",
			"basebackup_chunk/a/a.00000001.pghoard"}
		for _, k := range keys {
			mustPut(t, st, k, []byte(k), storage.Metadata{"preserve-backup": "2024-01-01_10-00_0", "preserve-until": "2024-02-01 00:00:00+00:00"})
		}
		for _, k := range keys {
			got, md := mustRead(t, st, k)
			if string(got) != k || md["preserve-until"] != "2024-02-01 00:00:00+00:00" {
				t.Errorf("%s: read %q, metadata %v", k, got, md)
			}
		}
		if got := listKeys(t, st, "site/preservation_request/"); !cmp.Equal(got, []string{preserve}) {
			t.Errorf("List = %q, want %q", got, preserve)
		}
	})
}

// checkOnly fails unless key is the only object and holds want.
func checkOnly(t *testing.T, st storage.Store, key, want string) {
	t.Helper()
	if got := listKeys(t, st, ""); !cmp.Equal(got, []string{key}) {
		t.Errorf("List = %v, want only %s: a failed Put left an object", got, key)
	}
	if _, err := st.Stat(context.Background(), chunkKey); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat of the aborted key: %v, want ErrNotFound", err)
	}
	if got, _ := mustRead(t, st, key); string(got) != want {
		t.Errorf("%s = %q, want %q: a failed overwrite changed it", key, got, want)
	}
}

func mustPut(t *testing.T, st storage.Store, key string, data []byte, md storage.Metadata) {
	t.Helper()
	if err := st.Put(context.Background(), key, bytes.NewReader(data), md); err != nil {
		t.Fatalf("Put %s: %v", key, err)
	}
}

func mustRead(t *testing.T, st storage.Store, key string) ([]byte, storage.Metadata) {
	t.Helper()
	data, o := Read(t, st, key)
	if o.Key != key || o.Size != int64(len(data)) || o.Modified.IsZero() || o.Changed.After(time.Now().Add(time.Minute)) {
		t.Errorf("Open %s = key %q size %d modified %v changed %v; want the key, the %d bytes read and times (changed may be unknown)", key, o.Key, o.Size, o.Modified, o.Changed, len(data))
	}
	return data, o.Metadata
}

func listKeys(t *testing.T, st storage.Store, prefix string) []string {
	t.Helper()
	var keys []string
	if err := st.List(context.Background(), prefix, func(o storage.Object) error {
		keys = append(keys, o.Key)
		return nil
	}); err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return keys
}

func indexOf(keys []string, k string) int {
	for i, key := range keys {
		if key == k {
			return i
		}
	}
	return -1
}

// randReader is a deterministic, incompressible byte stream.
type randReader struct{ r *rand.ChaCha8 }

func newRandReader(seed uint64) io.Reader {
	var s [32]byte
	s[0] = byte(seed)
	return &randReader{rand.NewChaCha8(s)}
}

func (r *randReader) Read(p []byte) (int, error) { return r.r.Read(p) }

func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	_, _ = io.ReadFull(newRandReader(seed), b)
	return b
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// cancelReader cancels a context once after bytes have been read, and goes
// on returning data, as a daemon's shutdown would look to a Put.
type cancelReader struct {
	r      io.Reader
	after  int64
	n      int64
	cancel context.CancelFunc
}

func (c *cancelReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n >= c.after {
		c.cancel()
	}
	return n, err
}
