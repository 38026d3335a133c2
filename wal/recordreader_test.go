package wal_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/wal"
)

// readAll reads segs (from LSN 0) and returns the main data of each
// record by its start.
func readAll(t *testing.T, segSize int, segs [][]byte) map[uint64]string {
	t.Helper()
	got := map[uint64]string{}
	r := wal.NewRecordReader(uint64(segSize))
	for i, s := range segs {
		err := r.Segment(uint64(i*segSize), s, func(rec wal.Record) error {
			m, ok := rec.MainData()
			if !ok {
				t.Fatalf("record at %d: no main data", rec.LSN)
			}
			got[rec.LSN] = string(m)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return got
}

func TestRecordReader_Segment(t *testing.T) {
	const segSize, blockSize = 1 << 16, 1024
	t.Run("OKSplitAcrossPage", func(t *testing.T) {
		w := waltest.NewWriter(segSize, blockSize, 1, 0)
		w.PadTo(blockSize - 40) // 40 bytes on the first page, the rest on the next
		const main = "split across a page, 72 bytes of xl_restore_point and more......."
		at, end := w.Record(0, 0x70, 0, []byte(main))
		if at%blockSize != blockSize-40 || end != at+24+2+uint64(len(main))+24 {
			t.Fatalf("record from %d to %d, want it at page offset %d, across a page header", at, end, blockSize-40)
		}
		after, _ := w.Record(0, 0, 0, []byte("after"))
		got := readAll(t, segSize, w.Segments())
		if got[at] != main {
			t.Errorf("record at %d (page offset %d) read as %q", at, at%blockSize, got[at])
		}
		if got[after] != "after" {
			t.Errorf("record after it read as %q", got[after])
		}
	})
	t.Run("OKSplitHeader", func(t *testing.T) {
		w := waltest.NewWriter(segSize, blockSize, 1, 0)
		w.PadTo(blockSize - 8) // the header itself split
		at, _ := w.Record(0, 0x70, 7, []byte("header split"))
		if at%blockSize != blockSize-8 {
			t.Fatalf("record at page offset %d, want %d", at%blockSize, blockSize-8)
		}
		if got := readAll(t, segSize, w.Segments())[at]; got != "header split" {
			t.Errorf("record at page offset %d read as %q", at%blockSize, got)
		}
	})
	t.Run("OKSplitAcrossSegmentsAndPages", func(t *testing.T) {
		w := waltest.NewWriter(segSize, blockSize, 1, 0)
		w.Fill(segSize - 3000)
		long := bytes.Repeat([]byte("0123456789"), 600) // 6000 bytes: several pages, two segments
		at, end := w.Record(0, 0, 0, long)
		w.Record(0, 0, 0, []byte("after"))
		segs := w.Segments()
		if got := readAll(t, segSize, segs)[at]; got != string(long) {
			t.Errorf("record across segments read as %d bytes, want %d", len(got), len(long))
		}
		// Read from the second segment alone, the record continued into
		// it is skipped, and the one after it read.
		r := wal.NewRecordReader(segSize)
		var n int
		if err := r.Segment(segSize, segs[1], func(rec wal.Record) error {
			if rec.LSN < end {
				t.Errorf("record at %d, before the end of the one continued (%d)", rec.LSN, end)
			}
			n++
			return nil
		}); err != nil || n != 1 {
			t.Errorf("second segment alone: %d records, %v; want 1", n, err)
		}
	})
	t.Run("ErrCRC", func(t *testing.T) {
		w := waltest.NewWriter(segSize, blockSize, 1, 0)
		w.PadTo(blockSize - 40)
		at, _ := w.Record(0, 0x70, 0, bytes.Repeat([]byte("x"), 100))
		segs := w.Segments()
		segs[0][blockSize+24+10] ^= 1 // in the continuation
		if got, ok := readAll(t, segSize, segs)[at]; ok {
			t.Errorf("record with a damaged continuation read as %q", got)
		}
	})
	t.Run("ErrStalePage", func(t *testing.T) {
		w := waltest.NewWriter(segSize, blockSize, 1, 0)
		w.PadTo(blockSize - 40)
		at, _ := w.Record(0, 0x70, 0, bytes.Repeat([]byte("x"), 100))
		segs := w.Segments()
		binary.LittleEndian.PutUint64(segs[0][blockSize+8:], 1<<40) // another segment's page
		if got, ok := readAll(t, segSize, segs)[at]; ok {
			t.Errorf("record continued on a stale page read as %q", got)
		}
	})
	t.Run("ErrFn", func(t *testing.T) {
		w := waltest.NewWriter(segSize, blockSize, 1, 0)
		w.Record(0, 0, 0, nil)
		w.Record(0, 0, 0, nil)
		stop := errors.New("stop")
		var n int
		err := wal.NewRecordReader(segSize).Segment(0, w.Segments()[0], func(wal.Record) error { n++; return stop })
		if !errors.Is(err, stop) || n != 1 {
			t.Errorf("err = %v after %d records, want fn's after 1", err, n)
		}
	})
}

// FuzzRecordReader feeds arbitrary bytes, as someone who can write to the
// bucket may store them as segments, to RecordReader: it must never
// panic, and every record it delivers lies within the bytes given, with
// the length its header gives.
func FuzzRecordReader(f *testing.F) {
	const segSize, blockSize = 4096, 1024
	w := waltest.NewWriter(segSize, blockSize, 1, 0)
	for w.LSN() < segSize+2000 {
		w.Record(0, 0x70, 9, bytes.Repeat([]byte("r"), 150))
	}
	segs := w.Segments()
	f.Add(segs[0], segs[1])
	f.Add(segs[0][:1500], []byte{})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		r := wal.NewRecordReader(segSize)
		for i, s := range [][]byte{a, b} {
			if len(s) > segSize {
				s = s[:segSize]
			}
			start := uint64(i * segSize)
			_ = r.Segment(start, s, func(rec wal.Record) error {
				if len(rec.Raw) < 24 || binary.LittleEndian.Uint32(rec.Raw) != uint32(len(rec.Raw)) {
					t.Fatalf("record at %d: %d bytes, header says %d", rec.LSN, len(rec.Raw), binary.LittleEndian.Uint32(rec.Raw))
				}
				if rec.LSN+segSize < start || rec.End > start+uint64(len(s)) || rec.End <= rec.LSN {
					t.Fatalf("record from %d to %d, outside the segment read from %d (%d bytes)", rec.LSN, rec.End, start, len(s))
				}
				_, _ = rec.MainData()
				return nil
			})
		}
	})
}

// FuzzParseXactEnd feeds arbitrary main data, as a record in a planted
// segment may carry it, to ParseXactEnd as each kind of transaction
// record of each layout: it must never panic, and the subtransactions
// it returns lie within the data.
func FuzzParseXactEnd(f *testing.F) {
	f.Add(uint8(0x80), []byte{0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0})
	f.Add(uint8(0xB0), []byte{0, 0, 0, 0, 0, 0, 0, 0, 0x14, 1, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 7, 0, 0, 0})
	f.Fuzz(func(t *testing.T, info uint8, main []byte) {
		if len(main) > 4000 {
			return
		}
		w := waltest.NewWriter(1<<16, 8192, 1, 0)
		w.Record(1, info, 5, main)
		err := wal.NewRecordReader(1<<16).Segment(0, w.Segments()[0], func(rec wal.Record) error {
			for _, major := range []int{13, 15, 18} {
				x, ok, err := wal.ParseXactEnd(rec, major)
				if ok && err == nil && 4*len(x.Subxacts) > len(main) {
					t.Fatalf("%d subtransactions from %d bytes", len(x.Subxacts), len(main))
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
