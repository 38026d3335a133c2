package walstream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// denyStore refuses to read the objects in deny, as a storage whose
// permissions went wrong does.
type denyStore struct {
	storage.Store
	deny map[string]bool
}

var errDenied = fmt.Errorf("access denied: %w", storage.ErrPermanent)

func (s denyStore) Stat(ctx context.Context, key string) (storage.Object, error) {
	if s.deny[key] {
		return storage.Object{}, errDenied
	}
	return s.Store.Stat(ctx, key)
}

func (s denyStore) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	if s.deny[key] {
		return nil, storage.Object{}, errDenied
	}
	return s.Store.Open(ctx, key)
}

func (s denyStore) OpenRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if s.deny[key] {
		return nil, errDenied
	}
	return s.Store.OpenRange(ctx, key, offset, length)
}

// TestReceiver_holeLoop_Unreadable: a stored segment whose first page
// cannot be read (here the storage refuses it) is neither the streamed
// system's nor another's. Counted as the system's, as before, it raised
// a false "wal hole" (ErrFalseHole: after a pg_upgrade into the site the
// old cluster's last segment, unreadable, below the upgraded cluster's
// first) or hid one (ErrHiddenHole: the system's own WAL ends well below
// an unreadable segment of the old cluster's). Now the check says it
// could not decide, naming the segment and the error, and records no
// hole; a readable name of the same segment number that is the system's
// decides (OKOtherName), and a readable old segment is passed over
// (OKHole).
func TestReceiver_holeLoop_Unreadable(t *testing.T) {
	const segSize = 1 << 20
	const oldSys, newSys = 7001, 7002
	name := func(tli uint32, no uint64) string { return wal.Segment{Timeline: tli, No: no}.Name(segSize) }
	start := wal.Segment{Timeline: 2, No: 0xA}
	type seg struct {
		name   string
		system uint64
		denied bool
	}
	for _, tc := range []struct {
		name      string
		segs      []seg
		undecided string // the segment named, "" for a decided check
		want      []Hole
	}{
		{"ErrFalseHole", []seg{{name(1, 4), oldSys, false}, {name(1, 5), oldSys, true}}, name(1, 5), nil},
		{"ErrHiddenHole", []seg{{name(1, 3), newSys, false}, {name(1, 9), oldSys, true}}, name(1, 9), nil},
		{"OKOtherName", []seg{{name(1, 3), newSys, false}, {name(1, 9), newSys, false}, {name(2, 9), oldSys, true}}, "", nil},
		{"OKHole", []seg{{name(1, 3), newSys, false}, {name(1, 9), oldSys, false}}, "",
			[]Hole{{First: name(2, 4), Last: name(2, 9), Count: 6}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ds := denyStore{Store: storage.NewMem(), deny: map[string]bool{}}
			a := &archive.Archive{Store: ds, Codec: &archive.Codec{Compression: compress.Snappy, Host: "test"},
				Layout: archive.Layout{Prefix: "site"}, Site: "site"}
			t.Cleanup(func() { ds.Close() })
			for i, sg := range tc.segs {
				p := filepath.Join(t.TempDir(), sg.name)
				if err := os.WriteFile(p, waltest.SegmentOf(t, sg.name, segSize, int64(i), sg.system), 0o600); err != nil {
					t.Fatal(err)
				}
				if _, err := a.PushWAL(t.Context(), p, archive.PushOptions{SystemID: sg.system}); err != nil {
					t.Fatal(err)
				}
				ds.deny[a.Layout.WALKey(sg.name)] = sg.denied
			}
			var log testio.SyncBuffer
			r, err := New(Options{Slot: "s", SpoolDir: t.TempDir(), Uploader: newSink(t), Archived: lister{a}, Logger: zerolog.New(&log)})
			if err != nil {
				t.Fatal(err)
			}
			// check runs one hole check from start and returns what it
			// logged. Every outcome logs once: a hole or an undecided
			// check at Error, an archive continuous up to the resume
			// point at Debug.
			check := func() string {
				before := len(log.String())
				stop := make(chan struct{})
				done := make(chan struct{})
				go func() {
					defer close(done)
					r.holeLoop(t.Context(), stop)
				}()
				r.requestHoleCheck(holeCheck{start: start, segSize: segSize, system: newSys})
				deadline := time.Now().Add(10 * time.Second)
				for !strings.Contains(log.String()[before:], "hole") && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
				close(stop)
				<-done
				return log.String()[before:]
			}
			out := check()
			if got := r.Status().Holes; !slices.Equal(got, tc.want) {
				t.Errorf("Holes %+v, want %+v\nlog: %s", got, tc.want, out)
			}
			if tc.undecided == "" {
				if strings.Contains(out, "undecided") {
					t.Errorf("log says undecided:\n%s", out)
				}
				if u := r.Status().HoleCheckUndecided; u != nil {
					t.Errorf("Status.HoleCheckUndecided %+v after a decided check", u)
				}
				return
			}
			// The status says so too (the daemon's /status, metric and
			// alert rule read it), naming the resume point, the segment
			// and the error.
			u := r.Status().HoleCheckUndecided
			if u == nil {
				t.Fatalf("Status.HoleCheckUndecided nil after an undecided check\nlog: %s", out)
			}
			if u.Segment != start.Name(segSize) || u.Unread != tc.undecided || !strings.Contains(u.Error, "access denied") ||
				!strings.Contains(u.Error, "site/xlog/"+tc.undecided) || u.At.IsZero() {
				t.Errorf("Status.HoleCheckUndecided %+v, want segment %s, unread %s, the storage's error naming its key, a time",
					u, start.Name(segSize), tc.undecided)
			}
			for _, want := range []string{"hole check undecided", `"unread":"` + tc.undecided + `"`, "access denied",
				"site/xlog/" + tc.undecided, `"segment":"` + start.Name(segSize) + `"`} {
				if !strings.Contains(out, want) {
					t.Errorf("log lacks %s:\n%s", want, out)
				}
			}
			if strings.Contains(out, "wal hole") || strings.Contains(out, "continues up to") {
				t.Errorf("an undecided check reported a hole, or none:\n%s", out)
			}
			// The storage reads the segment again: the next check decides
			// and the undecided check leaves the status.
			clear(ds.deny)
			if out := check(); strings.Contains(out, "undecided") {
				t.Fatalf("check with the segment readable again still undecided:\n%s", out)
			}
			if u := r.Status().HoleCheckUndecided; u != nil {
				t.Errorf("Status.HoleCheckUndecided %+v after a decided check", u)
			}
		})
	}
}

// countStore counts the requests that read an object (Stat, Open,
// OpenRange).
type countStore struct {
	storage.Store
	reads atomic.Int64
}

func (s *countStore) Stat(ctx context.Context, key string) (storage.Object, error) {
	s.reads.Add(1)
	return s.Store.Stat(ctx, key)
}

func (s *countStore) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	s.reads.Add(1)
	return s.Store.Open(ctx, key)
}

func (s *countStore) OpenRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	s.reads.Add(1)
	return s.Store.OpenRange(ctx, key, offset, length)
}

// BenchmarkFindHole_UpgradedSite times the hole check at the first resume
// after a pg_upgrade into a site on MinIO that keeps 1000 segments of
// the old cluster below the upgraded cluster's first: each is read (its
// first page) before the check can say there is no hole. It runs in the
// hole check's goroutine; streaming does not wait for it.
func BenchmarkFindHole_UpgradedSite(b *testing.B) {
	const segSize = 1 << 20
	const oldSys, newSys = 7001, 7002
	const n = 1000
	cs := &countStore{Store: storetest.Open(b, storetest.MinIO(b))}
	a := &archive.Archive{Store: cs, Codec: &archive.Codec{Compression: compress.Snappy, Host: "test"},
		Layout: archive.Layout{Prefix: "site"}, Site: "site"}
	data := waltest.SegmentOf(b, wal.Segment{Timeline: 1, No: 1}.Name(segSize), segSize, 1, oldSys)
	for no := uint64(1); no <= n; no++ {
		// ForeignSegment reads the system from the first page, not the
		// address: one segment's bytes serve for all.
		name := wal.Segment{Timeline: 1, No: no}.Name(segSize)
		if _, err := a.Codec.Put(b.Context(), a.Store, a.Layout.WALKey(name), bytes.NewReader(data), int64(len(data)), nil); err != nil {
			b.Fatal(err)
		}
	}
	names, err := a.ListSegments(b.Context())
	if err != nil || len(names) != n {
		b.Fatalf("listed %d segments, %v", len(names), err)
	}
	c := holeCheck{start: wal.Segment{Timeline: 1, No: n + 0x10}, segSize: segSize, system: newSys}
	cs.reads.Store(0)
	for b.Loop() {
		if h, err := findHole(b.Context(), c, names, a.ForeignSegment); err != nil || h.Count != 0 {
			b.Fatalf("findHole = %+v, %v", h, err)
		}
	}
	b.ReportMetric(float64(cs.reads.Load())/float64(b.N), "reads/op")
}
