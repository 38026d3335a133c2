// Package waltest builds WAL files for tests that need segments without a
// server: the bytes PostgreSQL would archive, with a long page header that
// fits the file's name, so that hoard's header checks accept them.
package waltest

import (
	"hash/fnv"
	"math/rand"
	"testing"

	"github.com/hoardbackup/hoard/wal"
)

// Segment returns a complete segment called name of segSize bytes, as
// PostgreSQL 15 writes it: a long page header with the segment's timeline
// and start LSN, then pseudo-random bytes in the first half of every
// 8 KiB page and zeros in the second (compressible like real WAL). The
// bytes depend on name and seed: distinct names or seeds give distinct
// segments, the same ones the same segment.
func Segment(tb testing.TB, name string, segSize uint64, seed int64) []byte {
	tb.Helper()
	return SegmentOf(tb, name, segSize, seed, 7123456789012345678)
}

// SegmentOf is Segment whose first page names database system system.
func SegmentOf(tb testing.TB, name string, segSize uint64, seed int64, system uint64) []byte {
	tb.Helper()
	seg, err := wal.ParseSegmentName(name, segSize)
	if err != nil {
		tb.Fatal(err)
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	rng := rand.New(rand.NewSource(seed ^ int64(h.Sum64())))
	b := make([]byte, segSize)
	for p := 0; p < len(b); p += 8192 {
		rng.Read(b[p : p+4096])
	}
	hdr := wal.PageHeader{
		Magic:       0xD110, // XLOG_PAGE_MAGIC of PostgreSQL 15
		Info:        wal.LongHeader | 0x0004,
		Timeline:    seg.Timeline,
		PageAddr:    seg.StartLSN(segSize),
		SystemID:    system,
		SegmentSize: uint32(segSize),
		BlockSize:   8192,
	}
	copy(b, hdr.Encode(nil))
	return b
}

// Names returns the names of the segments from first to last on first's
// timeline, both included.
func Names(tb testing.TB, first, last string, segSize uint64) []string {
	tb.Helper()
	a, err := wal.ParseSegmentName(first, segSize)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := wal.ParseSegmentName(last, segSize)
	if err != nil {
		tb.Fatal(err)
	}
	var names []string
	for s := a; s.No <= b.No; s = s.Next() {
		names = append(names, s.Name(segSize))
	}
	return names
}
