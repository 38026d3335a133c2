package restore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// restorePointRecord builds an XLOG_RESTORE_POINT record as PostgreSQL
// writes it: the 24-byte XLogRecord header, XLR_BLOCK_ID_DATA_SHORT with
// length 72, the timestamp, then the name copied with strlcpy into a
// 64-byte field whose tail holds leftover bytes.
func restorePointRecord(name string, junk byte) []byte {
	rec := make([]byte, 24+2+8+restorePointNameSize)
	rec[16] = 0x70 // XLOG_RESTORE_POINT
	rec[17] = 0    // RM_XLOG_ID
	rec[24], rec[25] = 0xFF, 72
	field := rec[34:]
	for i := range field {
		field[i] = junk
	}
	copy(field, name)
	field[len(name)] = 0
	return rec
}

func TestFindRestorePointRecord(t *testing.T) {
	rec := restorePointRecord("after_step1", 0xA5)
	t.Run("OK", func(t *testing.T) {
		data := append(bytes.Repeat([]byte{0x11}, 1000), rec...)
		data = append(data, bytes.Repeat([]byte{0x22}, 500)...)
		if got, want := findRestorePointRecord(data, append([]byte("after_step1"), 0)), 1000+34; got != want {
			t.Errorf("offset = %d, want %d", got, want)
		}
	})
	t.Run("OKLastOfTwo", func(t *testing.T) {
		data := append(append(append([]byte{}, rec...), make([]byte, 100)...), rec...)
		if got, want := findRestorePointRecord(data, append([]byte("after_step1"), 0)), len(rec)+100+34; got != want {
			t.Errorf("offset = %d, want %d", got, want)
		}
	})
	t.Run("ErrPrefixOfLongerName", func(t *testing.T) {
		data := restorePointRecord("after_step10", 0)
		if got := findRestorePointRecord(data, append([]byte("after_step1"), 0)); got != -1 {
			t.Errorf("found %q inside the record of a longer name at %d", "after_step1", got)
		}
	})
	t.Run("ErrNotARecord", func(t *testing.T) {
		data := append(make([]byte, 100), []byte("after_step1\x00")...)
		if got := findRestorePointRecord(data, append([]byte("after_step1"), 0)); got != -1 {
			t.Errorf("found the name outside a restore point record at %d", got)
		}
	})
}

// A segment that decodes to more than the segment size stops the scan
// for a restore point at that size, naming the object. Before, the scan
// read all of it into memory (64 MiB here, gigabytes for a compression
// bomb) and went on as if the name were not found.
func TestFindRestorePoint_ErrTooLarge(t *testing.T) {
	ctx := context.Background()
	const segSize = 1 << 20
	a := &archive.Archive{Store: storage.NewMem(), Codec: &archive.Codec{Compression: compress.Zstd}, Layout: archive.Layout{Prefix: "s"}, Site: "s"}
	name := wal.Segment{Timeline: 1, No: 3}.Name(segSize)
	key := a.Layout.WALKey(name)
	seg := append(waltest.Segment(t, name, segSize, 3)[:segSize/2], restorePointRecord("after_step1", 0)...)
	seg = append(seg, make([]byte, segSize-len(seg))...)
	if _, err := a.Codec.Put(ctx, a.Store, key, bytes.NewReader(seg), -1, nil); err != nil {
		t.Fatal(err)
	}
	t.Run("OK", func(t *testing.T) {
		lsn, err := findRestorePoint(ctx, listed(t, a), "after_step1", segSize, 0)
		if err != nil || lsn == 0 {
			t.Fatalf("lsn, err = %s, %v; want the restore point", lsn, err)
		}
	})
	t.Run("ErrTooLarge", func(t *testing.T) {
		bomb := io.MultiReader(bytes.NewReader(seg), io.LimitReader(zeros{}, 63<<20))
		if _, err := a.Codec.Put(ctx, a.Store, key, bomb, -1, nil); err != nil {
			t.Fatal(err)
		}
		_, err := findRestorePoint(ctx, listed(t, a), "after_step1", segSize, 0)
		if !errors.Is(err, archive.ErrWALTooLarge) || !strings.Contains(err.Error(), key) {
			t.Fatalf("err = %v, want ErrWALTooLarge naming %s", err, key)
		}
	})
}

// zeros reads zero bytes without end.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestEarlierRestorePoint: a point of the same name before the one found
// is reported when it lies in the found point's segment or an earlier
// one from the backup's start on; one before the backup's start segment,
// or after the found point, is not.
func TestEarlierRestorePoint(t *testing.T) {
	ctx := context.Background()
	const segSize = 1 << 20
	a := &archive.Archive{Store: storage.NewMem(), Codec: &archive.Codec{Compression: compress.Zstd}, Layout: archive.Layout{Prefix: "s"}, Site: "s"}
	// put stores segment no with a restore point record at each offset.
	put := func(no uint64, at ...int) {
		name := wal.Segment{Timeline: 1, No: no}.Name(segSize)
		seg := waltest.Segment(t, name, segSize, 3)
		for _, o := range at {
			copy(seg[o:], restorePointRecord("p", 0))
		}
		if _, err := a.Codec.Put(ctx, a.Store, a.Layout.WALKey(name), bytes.NewReader(seg), -1, nil); err != nil {
			t.Fatal(err)
		}
	}
	lsn := func(no uint64, at int) pglogrepl.LSN {
		return pglogrepl.LSN(no*segSize + uint64(at) + 34 + restorePointNameSize)
	}
	put(2, 4096)
	put(3)
	put(4, 8192, 16384)
	put(5, 8192)
	w := listed(t, a)
	found, err := findRestorePoint(ctx, w, "p", segSize, 0)
	if err != nil || found != lsn(5, 8192) {
		t.Fatalf("findRestorePoint = %s, %v; want %s", found, err, lsn(5, 8192))
	}
	for _, tt := range []struct {
		name         string
		from, before pglogrepl.LSN
		want         pglogrepl.LSN
	}{
		{"EarlierSegment", 3 * segSize, lsn(5, 8192), lsn(4, 8192)}, // the first after the start, where recovery stops
		{"SameSegment", 4*segSize + 100, lsn(4, 16384), lsn(4, 8192)},
		{"BeforeStartSegment", 3 * segSize, lsn(4, 8192), 0},
		{"FirstInArchive", 2 * segSize, lsn(2, 4096), 0},
		{"AfterStartInStartSegment", 4*segSize + 10000, lsn(5, 8192), lsn(4, 16384)},
		{"BeforeStartInStartSegment", 4*segSize + 20000, lsn(5, 8192), 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := earlierRestorePoint(ctx, w, "p", segSize, tt.from, tt.before)
			if err != nil || got != tt.want {
				t.Errorf("earlierRestorePoint(%s, %s) = %s, %v; want %s", tt.from, tt.before, got, err, tt.want)
			}
		})
	}
}

// listed is a's WAL listed as restore.Run lists it for the restore point
// scans.
func listed(t *testing.T, a *archive.Archive) walIndex {
	t.Helper()
	w, err := listWAL(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestEarlierRestorePoint_Far: a point made again more segments after the
// first than the newest-first scan read (64 by default) is still found,
// and the one found is the first after the backup's start, where
// PostgreSQL stops: the scan reads forward from the backup's start, the
// WAL recovery replays before it stops.
func TestEarlierRestorePoint_Far(t *testing.T) {
	ctx := context.Background()
	const segSize = 1 << 20
	a := &archive.Archive{Store: storage.NewMem(), Codec: &archive.Codec{Compression: compress.Zstd}, Layout: archive.Layout{Prefix: "s"}, Site: "s"}
	const firstNo, lastNo = 10, 10 + defaultScanSegments + 6
	for no := uint64(firstNo - 1); no <= lastNo; no++ {
		name := wal.Segment{Timeline: 1, No: no}.Name(segSize)
		seg := waltest.Segment(t, name, segSize, 3)
		switch no {
		case firstNo:
			copy(seg[4096:], restorePointRecord("p", 0))
			copy(seg[8192:], restorePointRecord("p", 0))
		case lastNo:
			copy(seg[8192:], restorePointRecord("p", 0))
		}
		if _, err := a.Codec.Put(ctx, a.Store, a.Layout.WALKey(name), bytes.NewReader(seg), -1, nil); err != nil {
			t.Fatal(err)
		}
	}
	lsn := func(no uint64, at int) pglogrepl.LSN {
		return pglogrepl.LSN(no*segSize + uint64(at) + 34 + restorePointNameSize)
	}
	w := listed(t, a)
	newest, err := findRestorePoint(ctx, w, "p", segSize, 0)
	if err != nil || newest != lsn(lastNo, 8192) {
		t.Fatalf("findRestorePoint = %s, %v; want %s", newest, err, lsn(lastNo, 8192))
	}
	got, err := earlierRestorePoint(ctx, w, "p", segSize, (firstNo-1)*segSize, newest)
	if err != nil || got != lsn(firstNo, 4096) {
		t.Errorf("earlierRestorePoint from the backup's start %d segments before the newest point = %s, %v; want %s, the first one",
			lastNo-firstNo+1, got, err, lsn(firstNo, 4096))
	}
}
