package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/jackc/pglogrepl"
)

// TestScanBackups_PGHoardSegmentSize: PGHoard records no WAL segment size,
// so ScanBackups learns it from the first page of the backup's start
// segment in the archive, instead of reading the backup as 16 MiB.
func TestScanBackups_PGHoardSegmentSize(t *testing.T) {
	for _, tc := range []struct {
		name     string
		segSize  uint64
		start    string
		startLSN pglogrepl.LSN
	}{
		// Segment 0x123 of log 0 exists only below 16 MiB: read as
		// 16 MiB the backup was damaged, never restored or kept.
		{"OK1MiB", 1 << 20, "000000010000000000000123", 0x12300000},
		// At 16 MiB this name starts at 1/3000000, not 1/C000000.
		{"OK64MiB", 64 << 20, "000000010000000100000003", 0x10C000000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			a := &Archive{Store: storage.NewMem(), Codec: &Codec{}, Layout: Layout{Prefix: "site"}, Site: "site"}
			putBackup(t, a, "2024-03-04_10-00_0", tc.start, 1, 0)
			putWALData(t, a, tc.start, waltest.Segment(t, tc.start, tc.segSize, 1))
			bs, err := a.ScanBackups(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(bs.Damaged) != 0 {
				t.Fatalf("damaged: %v", bs.Damaged[0].Err)
			}
			if len(bs.Sound) != 1 {
				t.Fatalf("%d sound backups, want 1", len(bs.Sound))
			}
			b := bs.Sound[0]
			if got, want := b.SegmentSize(), tc.segSize; got != want {
				t.Errorf("SegmentSize() = %d, want %d", got, want)
			}
			if got, want := b.StartLSN, tc.startLSN; got != want {
				t.Errorf("StartLSN = %s, want %s", got, want)
			}
			if got, want := startSegment(b), tc.start; got != want {
				t.Errorf("start segment = %s, want %s", got, want)
			}
		})
	}
}

// TestScanBackups_PGHoardSegmentSizeOnce: a store with a StoreID (every
// configured site's) reads the segment the size is learned from once per
// process, not at every listing (the daemon lists again and again).
func TestScanBackups_PGHoardSegmentSizeOnce(t *testing.T) {
	ctx := context.Background()
	const start = "000000010000000000000003"
	counter := &openCounter{Store: storage.NewMem()}
	// The cache is the process's: a StoreID of this run's own (not the
	// test's name) keeps -count=N from finding what an earlier run learned.
	a := &Archive{Store: counter, Codec: &Codec{}, Layout: Layout{Prefix: "site"}, Site: "site", StoreID: "local:" + t.TempDir()}
	putBackup(t, a, "2024-03-04_10-00_0", start, 1, 0)
	putWALData(t, a, start, waltest.Segment(t, start, 4<<20, 1))
	for i := range 3 {
		bs, err := a.ScanBackups(ctx)
		if err != nil || len(bs.Sound) != 1 || bs.Sound[0].SegmentSize() != 4<<20 {
			t.Fatalf("listing %d: %+v, %v; want one backup read at 4 MiB", i, bs, err)
		}
	}
	if counter.opens != 1 {
		t.Errorf("three listings opened %d objects, want 1", counter.opens)
	}
}

// TestScanBackups_ErrPGHoardSegmentSizeStorage: a storage that fails while
// the segment the size is learned from is read (a connection reset
// halfway) fails the listing: the size is not known, and a guess of 16 MiB
// would read the backups at the wrong size.
func TestScanBackups_ErrPGHoardSegmentSizeStorage(t *testing.T) {
	ctx := context.Background()
	const start = "000000010000000000000123"
	mem := storage.NewMem()
	a := &Archive{Store: mem, Codec: &Codec{}, Layout: Layout{Prefix: "site"}, Site: "site"}
	putBackup(t, a, "2024-03-04_10-00_0", start, 1, 0)
	putWALData(t, a, start, waltest.Segment(t, start, 1<<20, 1))
	// Before the first page's header is read: a site without keys reads
	// no more of the segment.
	a.Store = &readFailStore{Store: mem, after: 16}
	bs, err := a.ScanBackups(ctx)
	if !errors.Is(err, errReadReset) {
		t.Fatalf("ScanBackups = %d sound, %d damaged, %v; want the storage's read error", len(bs.Sound), len(bs.Damaged), err)
	}
}

// TestScanBackups_PGHoardSegmentSizeNone: with no segment stored, the
// backups that record no size are read at DefaultSegmentSize, and
// ScanBackups says so.
func TestScanBackups_PGHoardSegmentSizeNone(t *testing.T) {
	ctx := context.Background()
	var log bytes.Buffer
	a := &Archive{Store: storage.NewMem(), Codec: &Codec{}, Layout: Layout{Prefix: "site"}, Site: "site", Log: zerolog.New(&log)}
	putBackup(t, a, "2024-03-04_10-00_0", "000000010000000000000003", 1, 0)
	bs, err := a.ScanBackups(ctx)
	if err != nil || len(bs.Sound) != 1 || bs.Sound[0].SegmentSize() != DefaultSegmentSize {
		t.Fatalf("ScanBackups = %+v, %v; want one backup read at 16 MiB", bs, err)
	}
	if !bs.SegmentSizeAssumed {
		t.Error("SegmentSizeAssumed = false, want the default size reported as assumed")
	}
	if !strings.Contains(log.String(), `"segment_size":16777216`) || !strings.Contains(log.String(), "read at the default size") {
		t.Errorf("log %q does not say the default size is assumed", log.String())
	}
}

var errReadReset = errors.New("connection reset by peer")

// readFailStore is a store whose objects' reads fail after the first
// after bytes.
type readFailStore struct {
	storage.Store
	after int64
}

func (s *readFailStore) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	rc, o, err := s.Store.Open(ctx, key)
	if err != nil {
		return nil, o, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(io.LimitReader(rc, s.after), iotest.ErrReader(errReadReset)), rc}, o, nil
}

// TestScanBackups_PGHoardSegmentSizeFirstPage: in a site without keys,
// where nothing authenticates a segment (its hash metadata is anyone's
// to write), the size is learned from the segment's first page alone,
// not from a download of the whole segment (up to 1 GiB). In a site with
// keys the whole object is read, so that its HMAC, checked at the end,
// authenticates the size against whoever holds no key: AES-CTR lets them
// change bytes of the first page unnoticed until then.
func TestScanBackups_PGHoardSegmentSizeFirstPage(t *testing.T) {
	const start = "000000010000000100000003"
	const segSize = 64 << 20
	data := waltest.Segment(t, start, segSize, 1)
	for _, tc := range []struct {
		name  string
		codec *Codec
		whole bool // the whole object read
	}{
		{"OKKeyless", &Codec{}, false},
		{"OKKeylessSnappy", &Codec{Compression: compress.Snappy}, false},
		{"OKKeys", retentionCodec(t), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			counter := &readCount{Store: storage.NewMem()}
			a := &Archive{Store: counter, Codec: tc.codec, Layout: Layout{Prefix: "site"}, Site: "site"}
			putBackup(t, a, "2024-03-04_10-00_0", start, 1, 0)
			putWALData(t, a, start, data)
			o, err := counter.Stat(ctx, a.Layout.WALKey(start))
			if err != nil {
				t.Fatal(err)
			}
			bs, err := a.ScanBackups(ctx)
			if err != nil || len(bs.Sound) != 1 || bs.Sound[0].SegmentSize() != segSize {
				t.Fatalf("ScanBackups = %+v, %v; want one backup read at 64 MiB", bs, err)
			}
			got := counter.n.Load()
			if tc.whole && got != o.Size {
				t.Errorf("read %d bytes of the %d-byte stored segment, want all of them (its HMAC)", got, o.Size)
			}
			if !tc.whole && got > 1<<20 {
				t.Errorf("read %d bytes of the %d-byte stored segment, want at most 1 MiB: its first page says the size", got, o.Size)
			}
		})
	}
}

// TestScanBackups_PGHoardSegmentSizeReplaced: the size a process learned
// from a segment is learned again once the object under its name is
// another (the store wrote it since: the segment was deleted and a new
// cluster of another segment size, archived into the same site, stored
// one under that name). The daemon would otherwise read the site's
// PGHoard backups at the old size for as long as it runs.
func TestScanBackups_PGHoardSegmentSizeReplaced(t *testing.T) {
	ctx := context.Background()
	const start = "000000010000000000000003"
	a := &Archive{Store: storage.NewMem(), Codec: &Codec{}, Layout: Layout{Prefix: "site"}, Site: "site", StoreID: "local:" + t.TempDir()}
	putBackup(t, a, "2024-03-04_10-00_0", start, 1, 0)
	for _, size := range []uint64{4 << 20, 16 << 20} {
		if err := a.Store.Delete(ctx, a.Layout.WALKey(start)); err != nil {
			t.Fatal(err)
		}
		putWALData(t, a, start, waltest.Segment(t, start, size, 1))
		bs, err := a.ScanBackups(ctx)
		if err != nil || len(bs.Sound) != 1 {
			t.Fatalf("ScanBackups = %+v, %v; want one backup", bs, err)
		}
		if got := bs.Sound[0].SegmentSize(); got != size {
			t.Errorf("with a %d-byte segment stored: backup read at %d bytes", size, got)
		}
	}
}

// TestPlanRetention_PGHoardSegmentSizeForged: in a PGHoard site without
// keys, whoever writes the bucket can replace the start segment of the
// newest backup with one whose first page declares another segment size
// (checked against its name at that size, as firstPageSize does). The
// site's PGHoard backups are then read at that size, but retention keeps
// the WAL from the oldest kept backup's start segment by name, which is
// the same name at any size: it deletes the same WAL as with the real
// segment, never WAL a kept backup needs.
func TestPlanRetention_PGHoardSegmentSizeForged(t *testing.T) {
	const realSize = 16 << 20
	older, newer := "000000010000000000000010", "000000010000000000000020"
	names := []string{"00000001000000000000000F", older, "000000010000000000000018", newer, "000000010000000000000021"}
	plan := func(t *testing.T, startSize uint64) ([]string, uint64) {
		t.Helper()
		ctx := context.Background()
		a := &Archive{Store: storage.NewMem(), Codec: &Codec{}, Layout: Layout{Prefix: "site"}, Site: "site"}
		putBackup(t, a, "2024-03-04_10-00_0", older, 1, 0)
		putBackup(t, a, "2024-03-05_10-00_0", newer, 1, 0)
		for _, n := range names {
			size := uint64(realSize)
			if n == newer {
				size = startSize
			}
			putWALData(t, a, n, waltest.Segment(t, n, size, 1))
		}
		p, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 1}, time.Date(2024, 3, 6, 0, 0, 0, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		bs, err := a.ScanBackups(ctx)
		if err != nil || len(bs.Sound) == 0 {
			t.Fatalf("ScanBackups = %+v, %v", bs, err)
		}
		var deleted []string
		for _, w := range p.WAL {
			deleted = append(deleted, w.Name)
		}
		return deleted, bs.Sound[0].SegmentSize()
	}
	want, size := plan(t, realSize)
	if size != realSize || !slices.Equal(want, names[:3]) {
		t.Fatalf("with the real start segment: read at %d, WAL deleted %v; want %d and %v", size, want, realSize, names[:3])
	}
	for _, forged := range []uint64{1 << 20, 64 << 20} {
		t.Run(fmt.Sprintf("%dMiB", forged>>20), func(t *testing.T) {
			got, size := plan(t, forged)
			if size != forged {
				t.Errorf("backups read at %d, want %d: the forged first page was not believed, nothing tested", size, forged)
			}
			if !slices.Equal(got, want) {
				t.Errorf("WAL deleted with the start segment's first page forged to %d bytes: %v, want %v", forged, got, want)
			}
		})
	}
}
