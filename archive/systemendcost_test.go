package archive

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// costStore is a Store that counts what reads through it cost on a real
// storage: requests (Stat is a HEAD, Open a HEAD and a GET, as
// storage.Bucket does them, OpenRange a GET), the stored bytes each GET
// asks for (a whole object for Open, the range for OpenRange), and the
// bytes taken from them.
type costStore struct {
	storage.Store

	mu              sync.Mutex
	heads, gets     int64
	asked           map[string]int64 // by key
	askedAll, taken int64
}

func (s *costStore) get(key string, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.asked == nil {
		s.asked = map[string]int64{}
	}
	s.gets++
	s.asked[key] += n
	s.askedAll += n
}

func (s *costStore) Stat(ctx context.Context, key string) (storage.Object, error) {
	s.mu.Lock()
	s.heads++
	s.mu.Unlock()
	return s.Store.Stat(ctx, key)
}

func (s *costStore) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	s.mu.Lock()
	s.heads++
	s.mu.Unlock()
	rc, obj, err := s.Store.Open(ctx, key)
	if err != nil {
		return nil, obj, err
	}
	s.get(key, obj.Size)
	return &takenReader{ReadCloser: rc, s: s}, obj, nil
}

func (s *costStore) OpenRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	rc, err := s.Store.OpenRange(ctx, key, off, n)
	if err != nil {
		return nil, err
	}
	s.get(key, n)
	return &takenReader{ReadCloser: rc, s: s}, nil
}

// takenReader counts the bytes read through it in s.taken.
type takenReader struct {
	io.ReadCloser
	s *costStore
}

func (r *takenReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.s.mu.Lock()
	r.s.taken += int64(n)
	r.s.mu.Unlock()
	return n, err
}

// upgradedSiteN returns a site after a pg_upgrade in place into it (the
// old system's segments 2 to 4, its segment 5 as a .partial), then n
// segments of the upgraded system from 6 on, compressed with alg.
func upgradedSiteN(tb testing.TB, keys bool, alg string, n int, old, next uint64) *Archive {
	tb.Helper()
	a, _ := partialSite(tb, keys, old)
	a.Codec.Compression = alg
	for i := range n {
		pushSegmentOf(tb, a, segName(6+uint64(i)), next)
	}
	return a
}

// systemEndCost lists a, finds the end of system's WAL at segment 5
// (which must be there) through a costStore, and returns that store and
// the end.
func systemEndCost(tb testing.TB, a *Archive, system uint64) (*costStore, *SystemEnd, *WALListing) {
	tb.Helper()
	ctx := context.Background()
	l, err := a.ListStoredWAL(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	cs := &costStore{Store: a.Store}
	counted := *a
	counted.Store = cs
	for _, m := range []map[string]WALFile{l.Segments, l.Partials} {
		for k, f := range m {
			f.Archive = &counted
			m[k] = f
		}
	}
	e, err := l.SystemEndAt(ctx, "000000010000000000000005", system)
	if err != nil || e == nil {
		tb.Fatalf("SystemEndAt = %v, %v; want the end of the old system's WAL", e, err)
	}
	return cs, e, l
}

// TestWALListing_SystemEndAtCost: after a real pg_upgrade into the same
// site, the veto (OwnWALAfter) reads the first page of every WAL file
// stored after the .partial, as none is the old system's. Each of those
// reads asks the storage for no more than FirstBlockRange stored bytes,
// not for the whole object (a real storage sends a GET's object on
// after its reader is closed), whatever the compression, with keys or
// without; the .partial and the next segment are read whole.
func TestWALListing_SystemEndAtCost(t *testing.T) {
	const sysOld, sysNew = 7000000000000000001, 7000000000000000002
	const n = 8
	testio.WithAndWithoutKeys(t, func(t *testing.T, keys bool) {
		for _, alg := range []string{compress.Snappy, compress.Zstd, compress.LZ4, compress.LZMA, compress.None} {
			t.Run("alg="+alg, func(t *testing.T) {
				a := upgradedSiteN(t, keys, alg, n, sysOld, sysNew)
				cs, e, l := systemEndCost(t, a, sysOld)
				if got, want := cs.gets, int64(n+2); got != want {
					t.Errorf("SystemEndAt made %d GETs, want %d: the first page of each of the %d segments after the .partial, then the .partial and the next segment whole", got, want, n)
				}
				for name, f := range l.Segments {
					if name <= e.Next.Name {
						continue
					}
					if got := cs.asked[f.Key]; got > FirstBlockRange || got >= f.Size {
						t.Errorf("the first page of %s (%d stored bytes) asked the storage for %d bytes, want at most %d", name, f.Size, got, int64(FirstBlockRange))
					}
				}
				t.Logf("%d segments after the .partial: %d HEADs, %d GETs asking for %d stored bytes, %d taken", n, cs.heads, cs.gets, cs.askedAll, cs.taken)
			})
		}
	})
}

// BenchmarkWALListing_SystemEndAt measures SystemEndAt after a real
// pg_upgrade into the same site whose upgraded cluster stored 1000
// segments (1 MiB, snappy, with keys) after the old one's .partial:
// requests and stored bytes asked for and taken, per call.
func BenchmarkWALListing_SystemEndAt(b *testing.B) {
	const sysOld, sysNew = 7000000000000000001, 7000000000000000002
	a := upgradedSiteN(b, true, compress.Snappy, 1000, sysOld, sysNew)
	b.ResetTimer()
	var heads, gets, asked, taken int64
	for range b.N {
		cs, _, _ := systemEndCost(b, a, sysOld)
		heads, gets, asked, taken = heads+cs.heads, gets+cs.gets, asked+cs.askedAll, taken+cs.taken
	}
	b.ReportMetric(float64(heads)/float64(b.N), "HEADs/op")
	b.ReportMetric(float64(gets)/float64(b.N), "GETs/op")
	b.ReportMetric(float64(asked)/float64(b.N), "asked-B/op")
	b.ReportMetric(float64(taken)/float64(b.N), "taken-B/op")
}

// gateStore is a Store whose Stat calls of the keys gate selects wait
// until two are in flight at once (or, the reads being one at a time,
// until a deadline), and which records the most in flight at once.
type gateStore struct {
	storage.Store
	gate func(key string) bool
	both chan struct{} // closed once two Stat calls were in flight, or at the deadline

	mu             sync.Mutex
	inflight, most int
	closed         bool
}

func (s *gateStore) open() {
	if !s.closed {
		s.closed = true
		close(s.both)
	}
}

func (s *gateStore) Stat(ctx context.Context, key string) (storage.Object, error) {
	if !s.gate(key) {
		return s.Store.Stat(ctx, key)
	}
	s.mu.Lock()
	s.inflight++
	s.most = max(s.most, s.inflight)
	if s.inflight >= 2 {
		s.open()
	}
	s.mu.Unlock()
	select {
	case <-s.both:
	case <-time.After(10 * time.Second):
		s.mu.Lock()
		s.open()
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.inflight--
	s.mu.Unlock()
	return s.Store.Stat(ctx, key)
}

// TestWALListing_OwnWALAfterParallel: the veto reads first pages several
// at once, and answers the first file of the
// system's in name order, as reading one at a time does, where two of
// its files are read in the same window.
func TestWALListing_OwnWALAfterParallel(t *testing.T) {
	const sysOld, sysNew = 7000000000000000001, 7000000000000000002
	ctx := context.Background()
	a, _ := partialSite(t, false, sysOld)
	for i := range 40 {
		sys := uint64(sysNew)
		if i == 20 || i == 24 { // both in the window of files 16 to 31
			sys = sysOld
		}
		pushSegmentOf(t, a, segName(6+uint64(i)), sys)
	}
	// Files 8 to 15 are read in one window.
	gated := map[string]bool{}
	for i := 8; i <= 15; i++ {
		gated[a.Layout.WALKey(segName(6+uint64(i)))] = true
	}
	gs := &gateStore{Store: a.Store, gate: func(key string) bool { return gated[key] }, both: make(chan struct{})}
	a.Store = gs
	l, err := a.ListStoredWAL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := l.OwnWALAfter(ctx, "000000010000000000000005", sysOld)
	if want := a.Layout.WALKey(segName(26)); got != want || err != nil {
		t.Errorf("OwnWALAfter = %q, %v; want %q, the first of the old system's", got, err, want)
	}
	if gs.most < 2 {
		t.Errorf("OwnWALAfter read at most %d of files 8 to 15 at once, want several", gs.most)
	}
}
