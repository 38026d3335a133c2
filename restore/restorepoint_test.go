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

// segmentsOf stores the segments w wrote, on timeline tli, in a, the
// first numbered first.
func segmentsOf(t *testing.T, a *archive.Archive, w *waltest.Writer, tli uint32, first, segSize uint64) {
	t.Helper()
	for i, seg := range w.Segments() {
		name := wal.Segment{Timeline: tli, No: first + uint64(i)}.Name(segSize)
		if _, err := a.Codec.Put(context.Background(), a.Store, a.Layout.WALKey(name), bytes.NewReader(seg), -1, nil); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRestorePointName(t *testing.T) {
	const segSize = 1 << 16
	read := func(w *waltest.Writer) []string {
		var names []string
		r := wal.NewRecordReader(segSize)
		if err := r.Segment(0, w.Segments()[0], func(rec wal.Record) error {
			if n, ok := restorePointName(rec); ok {
				names = append(names, n)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return names
	}
	t.Run("OK", func(t *testing.T) {
		w := waltest.NewWriter(segSize, 8192, 1, 0)
		w.RestorePoint("after_step1")
		w.RestorePoint(strings.Repeat("n", 63))
		if got := strings.Join(read(w), ","); got != "after_step1,"+strings.Repeat("n", 63) {
			t.Errorf("names %q", got)
		}
	})
	t.Run("ErrNotARecord", func(t *testing.T) {
		w := waltest.NewWriter(segSize, 8192, 1, 0)
		// A logical message holding a restore point's bytes, record
		// header and all.
		w.Record(21, 0, 0, restorePointBytes("after_step1"))
		w.Record(0, 0x60, 0, restorePointBytes("after_step1")[26:]) // another XLOG record
		if got := read(w); len(got) != 0 {
			t.Errorf("names %q in records that are no restore points", got)
		}
	})
}

// restorePointBytes is an XLOG_RESTORE_POINT record's bytes as the old
// byte scan looked for them: header, data header, timestamp, name.
func restorePointBytes(name string) []byte {
	rec := make([]byte, 24+2+8+restorePointNameSize)
	rec[16], rec[24], rec[25] = 0x70, 0xFF, 72
	copy(rec[34:], name)
	return rec
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
	w := waltest.NewWriter(segSize, 8192, 1, 3*segSize)
	w.Fill(3*segSize + segSize/2)
	w.RestorePoint("after_step1")
	seg := w.Segments()[0]
	if _, err := a.Codec.Put(ctx, a.Store, key, bytes.NewReader(seg), -1, nil); err != nil {
		t.Fatal(err)
	}
	t.Run("OK", func(t *testing.T) {
		lsn, err := findRestorePoint(ctx, listed(t, a), "after_step1", segSize, pointScope{})
		if err != nil || lsn == 0 {
			t.Fatalf("lsn, err = %s, %v; want the restore point", lsn, err)
		}
	})
	t.Run("ErrTooLarge", func(t *testing.T) {
		bomb := io.MultiReader(bytes.NewReader(seg), io.LimitReader(zeros{}, 63<<20))
		if _, err := a.Codec.Put(ctx, a.Store, key, bomb, -1, nil); err != nil {
			t.Fatal(err)
		}
		_, err := findRestorePoint(ctx, listed(t, a), "after_step1", segSize, pointScope{})
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
// one from the backup's start on; one before the backup's start, or
// after the found point, is not. Records split across a page or a
// segment count.
func TestEarlierRestorePoint(t *testing.T) {
	ctx := context.Background()
	const segSize = 1 << 20
	a := &archive.Archive{Store: storage.NewMem(), Codec: &archive.Codec{Compression: compress.Zstd}, Layout: archive.Layout{Prefix: "s"}, Site: "s"}
	wr := waltest.NewWriter(segSize, 8192, 1, 2*segSize)
	point := func(at uint64) pglogrepl.LSN {
		wr.Fill(at)
		_, end := wr.RestorePoint("p")
		return pglogrepl.LSN(end)
	}
	p2 := point(2*segSize + 4096)
	p4a := point(4*segSize + 8192)
	wr.PadTo(8192 - 48) // split across a page
	at4b, end := wr.RestorePoint("p")
	p4b := pglogrepl.LSN(end)
	wr.PadToSegmentEnd(48)
	at5a, end := wr.RestorePoint("p") // split across the segment boundary
	p5a := pglogrepl.LSN(end)
	p5b := point(5*segSize + 8192)
	wr.Fill(6*segSize - 100)
	segmentsOf(t, a, wr, 1, 2, segSize)
	if at4b/8192 == uint64(p4b)/8192 || at5a/segSize != 4 || uint64(p5a)/segSize != 5 {
		t.Fatalf("points end at %s and %s, want the first split across a page, the second across segments 4 and 5", p4b, p5a)
	}
	w := listed(t, a)
	found, err := findRestorePoint(ctx, w, "p", segSize, pointScope{})
	if err != nil || found != p5b {
		t.Fatalf("findRestorePoint = %s, %v; want %s", found, err, p5b)
	}
	if found, err := findRestorePoint(ctx, w, "p", segSize, pointScope{max: 2}); err != nil || found != p5b {
		t.Fatalf("findRestorePoint, 2 segments = %s, %v; want %s", found, err, p5b)
	}
	path := wal.History{{Timeline: 1}}
	for _, tt := range []struct {
		name         string
		from, before pglogrepl.LSN
		want         pglogrepl.LSN
	}{
		{"EarlierSegment", 3 * segSize, p5b, p4a}, // the first after the start, where recovery stops
		{"SameSegment", 4*segSize + 100, p4b, p4a},
		{"SplitAcrossPage", p4a, p5b, p4b},
		{"SplitAcrossSegments", p4b, p5b, p5a},
		{"BeforeStartSegment", 3 * segSize, p4a, 0},
		{"FirstInArchive", 2 * segSize, p2, 0},
		{"BeforeStartInStartSegment", p5a, p5b, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := earlierRestorePoint(ctx, w, path, "p", segSize, tt.from, tt.before)
			if err != nil || got != tt.want {
				t.Errorf("earlierRestorePoint(%s, %s) = %s, %v; want %s", tt.from, tt.before, got, err, tt.want)
			}
		})
	}
	// The newest point split across segments 4 and 5: found reading
	// segment 4, with the start of 5.
	a2 := &archive.Archive{Store: storage.NewMem(), Codec: &archive.Codec{Compression: compress.Zstd}, Layout: archive.Layout{Prefix: "s"}, Site: "s"}
	wr = waltest.NewWriter(segSize, 8192, 1, 4*segSize)
	wr.PadToSegmentEnd(48)
	_, end = wr.RestorePoint("q")
	wr.Fill(5*segSize + 1000)
	segmentsOf(t, a2, wr, 1, 4, segSize)
	if found, err := findRestorePoint(ctx, listed(t, a2), "q", segSize, pointScope{}); err != nil || found != pglogrepl.LSN(end) {
		t.Errorf("findRestorePoint, split across segments = %s, %v; want %s", found, err, pglogrepl.LSN(end))
	}
}

// TestEarlierRestorePoint_OtherTimeline: the forward scan reads only the
// copies of the segments that recovery along the target timeline's path
// reads. Timeline 2 branched off timeline 1 and was abandoned (a restore
// that was thrown away, its point "p" archived); timeline 3 branched off
// timeline 1 at the same place and holds the point meant. Before, the
// scan read timeline 2's copy too and refused the restore: "made more
// than once", naming a point recovery never replays.
func TestEarlierRestorePoint_OtherTimeline(t *testing.T) {
	ctx := context.Background()
	const segSize = 1 << 20
	a := &archive.Archive{Store: storage.NewMem(), Codec: &archive.Codec{Compression: compress.Zstd}, Layout: archive.Layout{Prefix: "s"}, Site: "s"}
	switchAt := uint64(4*segSize + 100000)
	one := waltest.NewWriter(segSize, 8192, 1, 2*segSize)
	one.Fill(switchAt)
	segmentsOf(t, a, one, 1, 2, segSize)
	branch := func(tli uint32, pointAt uint64) pglogrepl.LSN {
		w := waltest.NewWriter(segSize, 8192, tli, 4*segSize)
		w.Fill(pointAt)
		_, end := w.RestorePoint("p")
		w.Fill(6*segSize + 1000)
		segmentsOf(t, a, w, tli, 4, segSize)
		return pglogrepl.LSN(end)
	}
	branch(2, 5*segSize+8192)     // abandoned: before the point meant
	meant := branch(3, 6*segSize) // after the one on timeline 2
	path := wal.History{{Timeline: 1}, {Timeline: 3, Begin: pglogrepl.LSN(switchAt)}}
	got, err := earlierRestorePoint(ctx, listed(t, a), path, "p", segSize, 2*segSize, meant)
	if err != nil || got != 0 {
		t.Errorf("earlierRestorePoint along 1, 3 = %s, %v; want none (timeline 2's point is never replayed)", got, err)
	}
	// Timeline 2's path reads its own point.
	path2 := wal.History{{Timeline: 1}, {Timeline: 2, Begin: pglogrepl.LSN(switchAt)}}
	if got, err := earlierRestorePoint(ctx, listed(t, a), path2, "p", segSize, 2*segSize, 7*segSize); err != nil || got == 0 {
		t.Errorf("earlierRestorePoint along 1, 2 = %s, %v; want timeline 2's point", got, err)
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
	wr := waltest.NewWriter(segSize, 8192, 1, (firstNo-1)*segSize)
	wr.Fill(firstNo*segSize + 4096)
	_, first := wr.RestorePoint("p")
	wr.Fill(firstNo*segSize + 8192)
	wr.RestorePoint("p")
	wr.Fill(lastNo*segSize + 8192)
	_, last := wr.RestorePoint("p")
	wr.Fill((lastNo+1)*segSize - 100)
	segmentsOf(t, a, wr, 1, firstNo-1, segSize)
	w := listed(t, a)
	newest, err := findRestorePoint(ctx, w, "p", segSize, pointScope{})
	if err != nil || newest != pglogrepl.LSN(last) {
		t.Fatalf("findRestorePoint = %s, %v; want %s", newest, err, pglogrepl.LSN(last))
	}
	got, err := earlierRestorePoint(ctx, w, wal.History{{Timeline: 1}}, "p", segSize, (firstNo-1)*segSize, newest)
	if err != nil || got != pglogrepl.LSN(first) {
		t.Errorf("earlierRestorePoint from the backup's start %d segments before the newest point = %s, %v; want %s, the first one",
			lastNo-firstNo+1, got, err, pglogrepl.LSN(first))
	}
}
