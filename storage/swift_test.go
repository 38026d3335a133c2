package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/ncw/swift/v2"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// TestSwift runs the conformance suite and Swift's own cases against one
// real Swift all-in-one (it takes a while to start).
func TestSwift(t *testing.T) {
	c := storetest.Swift(t)
	t.Run("Conformance", func(t *testing.T) {
		storetest.Run(t, func(t testing.TB) storage.Store { return storetest.Open(t, c) },
			storetest.RacyCreate("Swift checks If-None-Match when a PUT starts, not atomically with the write"))
	})
	ctx := context.Background()
	// An independent client, to see what is on the server.
	conn := &swift.Connection{UserName: c.User, ApiKey: c.Key, AuthUrl: c.AuthURL, AuthVersion: 1}
	if err := conn.Authenticate(ctx); err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	names := func(t *testing.T, prefix string) []string {
		t.Helper()
		n, err := conn.ObjectNamesAll(ctx, c.ContainerName, &swift.ObjectsOpts{Prefix: prefix})
		if err != nil {
			t.Fatalf("list %s: %v", prefix, err)
		}
		return n
	}
	open := func(t *testing.T, prefix string) storage.Store {
		t.Helper()
		cc := c
		cc.Prefix = prefix
		st, err := storage.Open(ctx, cc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}

	// A large object is rohmu's Dynamic Large Object: segments under
	// <dir>_segments/<base>/, a manifest carrying the metadata as
	// X-Object-Meta-* headers. Listings show the object, not its segments.
	t.Run("LargeObjectLayout", func(t *testing.T) {
		st := open(t, "layout")
		data := bytes.Repeat([]byte("0123456789abcdef"), (12<<20)/16+1000)
		if err := st.Put(ctx, "site/basebackup_chunk/bb/bb.00000001.pghoard", io.MultiReader(bytes.NewReader(data)), storage.Metadata{"format": "pghoard-bb-v2"}); err != nil {
			t.Fatal(err)
		}
		segs := names(t, "layout/site/basebackup_chunk/bb_segments/bb.00000001.pghoard/")
		if len(segs) != 3 {
			t.Fatalf("segments = %q, want 3 (12 MiB and a bit in 5 MiB segments)", segs)
		}
		info, h, err := conn.Object(ctx, c.ContainerName, "layout/site/basebackup_chunk/bb/bb.00000001.pghoard")
		if err != nil {
			t.Fatal(err)
		}
		if info.Bytes != int64(len(data)) || !strings.HasPrefix(h["X-Object-Manifest"], c.ContainerName+"/layout/site/basebackup_chunk/bb_segments/bb.00000001.pghoard/") {
			t.Errorf("manifest: %d bytes, X-Object-Manifest %q", info.Bytes, h["X-Object-Manifest"])
		}
		if got := h["X-Object-Meta-Format"]; got != "pghoard-bb-v2" {
			t.Errorf("X-Object-Meta-Format = %q, want pghoard-bb-v2", got)
		}
		var listed []storage.Object
		if err := st.List(ctx, "", func(o storage.Object) error { listed = append(listed, o); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(listed) != 1 || listed[0].Key != "site/basebackup_chunk/bb/bb.00000001.pghoard" || listed[0].Size != int64(len(data)) {
			t.Errorf("List = %+v, want the object alone with its whole size", listed)
		}
		// Replaced by a small object: the old segments go.
		if err := st.Put(ctx, "site/basebackup_chunk/bb/bb.00000001.pghoard", strings.NewReader("small"), nil); err != nil {
			t.Fatal(err)
		}
		if segs := names(t, "layout/site/basebackup_chunk/bb_segments/"); len(segs) != 0 {
			t.Errorf("segments left after replacing the object: %q", segs)
		}
	})

	// An object rohmu wrote (segments right under <dir>_segments/<base>/,
	// manifest unescaped) reads, lists and deletes whole.
	t.Run("ReadsRohmuLargeObject", func(t *testing.T) {
		st := open(t, "rohmu")
		const name = "rohmu/site/basebackup/2024-01-01_10-00_0.00000000.pghoard"
		var want []byte
		for i := 1; i <= 3; i++ {
			part := bytes.Repeat([]byte{byte('a' + i)}, 1000*i)
			want = append(want, part...)
			if err := conn.ObjectPutBytes(ctx, c.ContainerName, fmt.Sprintf("rohmu/site/basebackup_segments/2024-01-01_10-00_0.00000000.pghoard/%08x", i), part, ""); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := conn.ObjectPut(ctx, c.ContainerName, name, bytes.NewReader(nil), false, "", "", swift.Headers{
			"X-Object-Manifest":                   c.ContainerName + "/rohmu/site/basebackup_segments/2024-01-01_10-00_0.00000000.pghoard/",
			"x-object-meta-start-time":            "2024-01-01T10:00:00+00:00",
			"x-object-meta-compression-algorithm": "snappy",
		}); err != nil {
			t.Fatal(err)
		}
		got, md := storetest.Read(t, st, "site/basebackup/2024-01-01_10-00_0.00000000.pghoard")
		if !bytes.Equal(got, want) {
			t.Errorf("read %d bytes, want the %d of the segments", len(got), len(want))
		}
		if diff := cmp.Diff(storage.Metadata{"start-time": "2024-01-01T10:00:00+00:00", "compression-algorithm": "snappy"}, md.Metadata); diff != "" {
			t.Errorf("metadata (-want +got):\n%s", diff)
		}
		var sizes []int64
		if err := st.List(ctx, "site/", func(o storage.Object) error { sizes = append(sizes, o.Size); return nil }); err != nil {
			t.Fatal(err)
		}
		if !cmp.Equal(sizes, []int64{int64(len(want))}) {
			t.Errorf("List sizes = %v, want [%d]", sizes, len(want))
		}
		if err := st.Delete(ctx, "site/basebackup/2024-01-01_10-00_0.00000000.pghoard"); err != nil {
			t.Fatal(err)
		}
		if left := names(t, "rohmu/"); len(left) != 0 {
			t.Errorf("left after Delete: %q", left)
		}
	})

	// plantRohmu stores a large object as rohmu does under name, its
	// segments right under segs, and returns its bytes.
	plantRohmu := func(t *testing.T, name, segs string) []byte {
		t.Helper()
		var old []byte
		for i := 1; i <= 2; i++ {
			part := bytes.Repeat([]byte{byte('a' + i)}, 1000)
			old = append(old, part...)
			if err := conn.ObjectPutBytes(ctx, c.ContainerName, fmt.Sprintf("%s%08x", segs, i), part, ""); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := conn.ObjectPut(ctx, c.ContainerName, name, bytes.NewReader(nil), false, "", "", swift.Headers{
			"X-Object-Manifest": c.ContainerName + "/" + segs,
		}); err != nil {
			t.Fatal(err)
		}
		return old
	}
	// readingOld returns data as a reader that, once it gave 11 MiB
	// (two 5 MiB segments went up), reads object name into during.
	readingOld := func(name string, data []byte, during *[]byte) io.Reader {
		return io.MultiReader(bytes.NewReader(data[:11<<20]), readFunc(func([]byte) (int, error) {
			b, err := conn.ObjectGetBytes(ctx, c.ContainerName, name)
			if err != nil {
				return 0, err
			}
			*during = b
			return 0, io.EOF
		}), bytes.NewReader(data[11<<20:]))
	}

	// A large object Put over a large object rohmu wrote: rohmu's
	// manifest names <dir>_segments/<name>/, and the object is whatever
	// Swift lists under it, so the new segments must go elsewhere.
	// There, they would be read as the old object's bytes until the new
	// manifest replaces it (for good if the Put fails or is killed
	// before), and deleting the old object's segments would delete them
	// too, leaving the new object empty after a Put that succeeded.
	t.Run("ReplaceRohmuLargeObject", func(t *testing.T) {
		st := open(t, "rohmureplace")
		const key = "site/basebackup_delta/0123456789abcdef"
		const name = "rohmureplace/" + key
		const segs = "rohmureplace/site/basebackup_delta_segments/0123456789abcdef/"
		old := plantRohmu(t, name, segs)
		data := randomBytes(12<<20, 11)
		var during []byte
		src := readingOld(name, data, &during)
		if err := st.Put(ctx, key, src, storage.Metadata{"host": "new"}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(during, old) {
			t.Errorf("while the Put uploaded its segments, the old object read as %d bytes, want its own %d", len(during), len(old))
		}
		if got := read(t, st, key); !bytes.Equal(got, data) {
			t.Errorf("after the Put: %d bytes, want the %d written", len(got), len(data))
		}
		if o, err := st.Stat(ctx, key); err != nil || o.Size != int64(len(data)) {
			t.Errorf("Stat = %d bytes (%v), want %d", o.Size, err, len(data))
		}
		if left := names(t, segs); len(left) != 0 {
			t.Errorf("rohmu's segments left after the replace: %q", left)
		}
		// Deleted, the object takes its segments in
		// <dir>_segments/<name>.<upload>/ with it.
		if err := st.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
		if left := names(t, strings.TrimSuffix(segs, "/")); len(left) != 0 {
			t.Errorf("segments left after the Delete: %q", left)
		}

		// A manifest naming the whole segments folder (no writer's
		// own) holds every folder the new segments could go to: the Put
		// fails, leaving the object and the folder as they were.
		const wide = "rohmureplace/site/basebackup_delta/wide"
		if _, err := conn.ObjectPut(ctx, c.ContainerName, wide, bytes.NewReader(nil), false, "", "", swift.Headers{
			"X-Object-Manifest": c.ContainerName + "/rohmureplace/site/basebackup_delta_segments/",
		}); err != nil {
			t.Fatal(err)
		}
		before := names(t, "rohmureplace/site/basebackup_delta_segments/")
		err := st.Put(ctx, "site/basebackup_delta/wide", bytes.NewReader(data), nil)
		if !errors.Is(err, storage.ErrPermanent) || !strings.Contains(err.Error(), "delete the object first") {
			t.Errorf("Put over a large object whose manifest names the whole segments folder = %v, want ErrPermanent saying to delete it", err)
		}
		if after := names(t, "rohmureplace/site/basebackup_delta_segments/"); !cmp.Equal(after, before) {
			t.Errorf("segments folder after the refused Put: %q, want %q", after, before)
		}
		if _, h, err := conn.Object(ctx, c.ContainerName, wide); err != nil || h["X-Object-Manifest"] != c.ContainerName+"/rohmureplace/site/basebackup_delta_segments/" {
			t.Errorf("the object after the refused Put: %v %q", err, h["X-Object-Manifest"])
		}
	})

	// A large Create of the name of a large object rohmu wrote is
	// refused as ErrExist, the object left as it was also while the
	// Create runs: its segments would otherwise go up under rohmu's
	// prefix, read as the stored object's own bytes until the manifest's
	// If-None-Match refused them, and for good if the Create were killed
	// before it deleted them.
	t.Run("CreateOverRohmuLargeObject", func(t *testing.T) {
		st := open(t, "rohmucreate")
		const key = "site/xlog/000000010000000000000001"
		const name = "rohmucreate/" + key
		const segs = "rohmucreate/site/xlog_segments/000000010000000000000001/"
		old := plantRohmu(t, name, segs)
		var during []byte
		err := st.Create(ctx, key, readingOld(name, randomBytes(12<<20, 12), &during), nil)
		if !errors.Is(err, storage.ErrExist) {
			t.Errorf("Create over rohmu's large object = %v, want ErrExist", err)
		}
		if during != nil && !bytes.Equal(during, old) {
			t.Errorf("while the Create uploaded its segments, the stored object read as %d bytes, want its own %d", len(during), len(old))
		}
		if got := read(t, st, key); !bytes.Equal(got, old) {
			t.Errorf("after the Create: %d bytes, want the %d stored", len(got), len(old))
		}
		if left := names(t, segs); len(left) != 2 {
			t.Errorf("segments after the refused Create: %q, want rohmu's two", left)
		}
	})

	// An upload that fails after some segments leaves nothing behind.
	t.Run("AbortedLargeObjectLeavesNoSegments", func(t *testing.T) {
		st := open(t, "abort")
		boom := errors.New("boom")
		r := io.MultiReader(bytes.NewReader(bytes.Repeat([]byte("x"), 12<<20)), errorReader{boom})
		if err := st.Put(ctx, "site/basebackup/big", r, nil); !errors.Is(err, boom) {
			t.Fatalf("Put = %v, want the reader's error", err)
		}
		if left := names(t, "abort/"); len(left) != 0 {
			t.Errorf("left after an aborted Put: %q", left)
		}
	})

	// An object whose stored bytes no longer match its ETag (the disk
	// under Swift rotted) fails at its end with ErrChecksum, naming the
	// object, and is not transient: wal-fetch and restore do not download
	// it again. ncw/swift reports the mismatch only from Close, and
	// before, the read ended cleanly with the damaged bytes.
	t.Run("ChecksumMismatch", func(t *testing.T) {
		st := open(t, "checksum")
		key := "site/xlog/000000010000000000000001"
		if err := st.Put(ctx, key, bytes.NewReader(bytes.Repeat([]byte("hoard "), 10000)), nil); err != nil {
			t.Fatal(err)
		}
		storetest.SwiftDamage(t, c, "checksum/"+key)
		rc, _, err := st.Open(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(rc)
		rc.Close()
		var re *storage.ReadError
		if !errors.Is(err, storage.ErrChecksum) || storage.IsTransient(err) || !errors.As(err, &re) || re.Key != key {
			t.Fatalf("read of a damaged object: %v; want a ReadError naming %s with ErrChecksum, not transient", err, key)
		}
	})

	t.Run("ReservedSegmentKeys", func(t *testing.T) {
		st := open(t, "reserved")
		if err := st.Put(ctx, "site/xlog_segments/x/00000001", strings.NewReader("x"), nil); err == nil {
			t.Error("Put of a key in a _segments folder succeeded")
		}
	})

	t.Run("ErrPermanent", func(t *testing.T) {
		bad := c
		bad.Key = "wrong-key"
		st, err := storage.Open(ctx, bad)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		_, err = st.Stat(ctx, "site/xlog/000000010000000000000001")
		if !errors.Is(err, storage.ErrPermanent) || strings.Contains(err.Error(), "wrong-key") {
			t.Errorf("Stat with a wrong key = %v, want ErrPermanent without the key", err)
		}
		missing := c
		missing.ContainerName = "no-such-container"
		st2, err := storage.Open(ctx, missing)
		if err != nil {
			t.Fatal(err)
		}
		defer st2.Close()
		if _, _, err := st2.Open(ctx, "site/xlog/000000010000000000000001"); !errors.Is(err, storage.ErrPermanent) || errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Open in a missing container = %v, want ErrPermanent, not ErrNotFound", err)
		}
	})

	// The manifest of a large object reaches Swift, which stores it, but
	// its answer is lost (a connection cut, a proxy's timeout): the
	// object exists, complete, and a retry of the Create, or a writer
	// that compares, finds it with its own hash (archive.PushWAL
	// reports such a segment archived). So it must stay complete: the
	// segments its manifest names may not be deleted as those of a
	// failed upload.
	t.Run("CreateManifestAnswerLost", func(t *testing.T) {
		st, cut := swiftManifestCut(t, c, "lostmanifest", func(rp *httputil.ReverseProxy, r *http.Request) {
			rp.ServeHTTP(httptest.NewRecorder(), r) // Swift stores the manifest, and its answer is lost
		})
		st = storage.WithRetry(st, storage.RetryOptions{Initial: 100 * time.Millisecond})
		const key = "site/xlog/000000010000000000000001"
		data := randomBytes(netFailSize, 7)
		err := st.Create(ctx, key, onlyReader{bytes.NewReader(data)}, storage.Metadata{"hash": "ours"})
		if !cut() {
			t.Fatal("no manifest PUT went through the proxy")
		}
		t.Logf("Create with the manifest's answer lost: %v", err)
		if _, serr := st.Stat(ctx, key); errors.Is(serr, storage.ErrNotFound) {
			t.Fatalf("Swift stored the manifest, but the key holds no object (Create: %v)", err)
		}
		if got := read(t, st, key); !bytes.Equal(got, data) {
			t.Errorf("Create = %v, and the key holds %d bytes, not the %d written: the segments its manifest names were deleted", err, len(got), len(data))
		}
	})

	// The connection of the manifest's PUT is cut before Swift has
	// stored it (a load balancer's timeout while the proxy still works on
	// it), and Swift stores it only after the writer gave up: the object
	// then exists, with this upload's metadata, as above. Whatever the
	// name holds when the writer looks (nothing, or the object a Put
	// replaces), the write may still land: the segments stay.
	for _, put := range []bool{false, true} {
		name := "CreateManifestCommittedLate"
		if put {
			name = "PutManifestCommittedLate"
		}
		t.Run(name, func(t *testing.T) {
			release, committed := make(chan struct{}), make(chan int, 1)
			st, cut := swiftManifestCut(t, c, strings.ToLower(name), func(rp *httputil.ReverseProxy, r *http.Request) {
				late := r.Clone(context.Background())
				late.Body = http.NoBody
				late.Header.Del("Expect") // the body is empty: no 100 Continue to record
				go func() {
					<-release // Swift stores the manifest after the writer gave up
					rec := httptest.NewRecorder()
					rp.ServeHTTP(rec, late)
					committed <- rec.Code
				}()
			})
			const key = "site/xlog/000000010000000000000001.partial"
			store := st.Create
			if put {
				store = st.Put
				// The older copy, stored around the proxy (which cuts
				// the first manifest PUT through it).
				old := c
				old.Prefix = strings.ToLower(name)
				ost, err := storage.Open(ctx, old)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ost.Close() })
				if err := ost.Put(ctx, key, onlyReader{bytes.NewReader(randomBytes(netFailSize, 9))}, nil); err != nil {
					t.Fatal(err)
				}
			}
			data := randomBytes(netFailSize, 8)
			err := store(ctx, key, onlyReader{bytes.NewReader(data)}, storage.Metadata{"hash": "ours"})
			if !cut() {
				t.Fatal("no manifest PUT went through the proxy")
			}
			t.Logf("%s with the manifest's connection cut: %v", name, err)
			close(release)
			if code := <-committed; code/100 != 2 {
				t.Fatalf("the late manifest PUT: status %d", code)
			}
			if got := read(t, st, key); !bytes.Equal(got, data) {
				t.Errorf("%s = %v, and the key holds %d bytes, not the %d written: the segments its manifest names were deleted", name, err, len(got), len(data))
			}
		})
	}

	// A Create that Swift refuses (412: the name holds an object) stored
	// nothing and never will: its segments go.
	t.Run("CreateRefusedSegments", func(t *testing.T) {
		st := open(t, "refused")
		const key = "site/xlog/000000010000000000000001"
		if err := st.Create(ctx, key, strings.NewReader("small"), nil); err != nil {
			t.Fatal(err)
		}
		err := st.Create(ctx, key, onlyReader{bytes.NewReader(randomBytes(netFailSize, 10))}, nil)
		if !errors.Is(err, storage.ErrExist) {
			t.Fatalf("Create of a stored key = %v, want ErrExist", err)
		}
		if segs := names(t, "refused/site/xlog_segments/"); len(segs) != 0 {
			t.Errorf("segments left by a refused Create: %q", segs)
		}
		// The name taken while the segments go up: the manifest's
		// If-None-Match refuses it.
		const late = "site/xlog/000000010000000000000002"
		data := randomBytes(netFailSize, 11)
		src := io.MultiReader(bytes.NewReader(data[:11<<20]), readFunc(func([]byte) (int, error) {
			if err := st.Create(ctx, late, strings.NewReader("small"), nil); err != nil {
				return 0, err
			}
			return 0, io.EOF
		}), bytes.NewReader(data[11<<20:]))
		if err := st.Create(ctx, late, onlyReader{src}, nil); !errors.Is(err, storage.ErrExist) {
			t.Fatalf("Create of a key taken during the upload = %v, want ErrExist", err)
		}
		if got := read(t, st, late); string(got) != "small" {
			t.Errorf("%s = %q, want the object that took the name", late, got)
		}
		if segs := names(t, "refused/site/xlog_segments/"); len(segs) != 0 {
			t.Errorf("segments left by a refused Create: %q", segs)
		}
	})

	t.Run("OwnSegments", func(t *testing.T) { testSwiftOwnSegments(t, c, conn) })

	// A container that does not exist yet: Stat finds nothing and List
	// lists nothing (a first wal-push checks its key is free), reads of
	// content refuse, and the first upload creates the container.
	t.Run("NewContainer", func(t *testing.T) {
		fresh := c
		fresh.ContainerName = "hoard-new"
		st, err := storage.Open(ctx, fresh)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		const key = "site/xlog/000000010000000000000001"
		if _, err := st.Stat(ctx, key); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Stat in a missing container = %v, want ErrNotFound", err)
		}
		if err := st.List(ctx, "", func(o storage.Object) error { t.Errorf("listed %s", o.Key); return nil }); err != nil {
			t.Errorf("List of a missing container = %v, want nothing listed", err)
		}
		if _, _, err := st.Open(ctx, key); !errors.Is(err, storage.ErrPermanent) {
			t.Errorf("Open in a missing container = %v, want ErrPermanent", err)
		}
		if err := st.Put(ctx, key, strings.NewReader("wal"), nil); err != nil {
			t.Fatalf("Put creating the container: %v", err)
		}
		if _, err := st.Stat(ctx, key); err != nil {
			t.Errorf("Stat after the first Put: %v", err)
		}
	})
}

type errorReader struct{ err error }

func (e errorReader) Read([]byte) (int, error) { return 0, e.err }

// readFunc is a Reader whose Read is the function.
type readFunc func(p []byte) (int, error)

func (f readFunc) Read(p []byte) (int, error) { return f(p) }

// swiftManifestCut opens a store of c under prefix through a reverse
// proxy in front of Swift that cuts the writer's connection of the first
// manifest PUT (a large object's last request) without an answer, after
// handing the request to manifest (which may pass it on to Swift through
// rp, at once or later). cut reports whether that happened.
func swiftManifestCut(t *testing.T, c storage.Config, prefix string, manifest func(rp *httputil.ReverseProxy, r *http.Request)) (st storage.Store, cut func() bool) {
	t.Helper()
	u, err := url.Parse(c.AuthURL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	var done atomic.Int32
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut || r.Header.Get("X-Object-Manifest") == "" || !done.CompareAndSwap(0, 1) {
			rp.ServeHTTP(w, r)
			return
		}
		manifest(rp, r)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		conn.Close()
	}))
	t.Cleanup(front.Close)
	cc := c
	cc.AuthURL = front.URL + u.Path
	cc.Prefix = prefix
	st, err = storage.Open(context.Background(), cc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, func() bool { return done.Load() != 0 }
}
