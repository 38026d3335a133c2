package wal

import (
	"encoding/binary"
	"testing"
)

// FuzzRecordEnd feeds arbitrary bytes, as someone who can write to the
// bucket may store them in a .partial, to RecordEnd in two pieces: it
// must never panic, must not depend on how the bytes are cut, never
// reports an end more than the alignment past the bytes it was given, and
// stops (Stop) within them, not before its end.
func FuzzRecordEnd(f *testing.F) {
	// A long page header (8 KiB pages) followed by one empty record header.
	page := make([]byte, PageHeaderSize+recordHeaderSize)
	binary.LittleEndian.PutUint16(page[0:], 0xD110)
	binary.LittleEndian.PutUint16(page[2:], LongHeader)
	binary.LittleEndian.PutUint32(page[36:], 8192)
	binary.LittleEndian.PutUint32(page[PageHeaderSize:], recordHeaderSize)
	f.Add(page, uint16(7))
	f.Add([]byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		var whole, split RecordEnd
		_, _ = whole.Write(data)
		at := min(int(cut), len(data))
		_, _ = split.Write(data[:at])
		_, _ = split.Write(data[at:])
		if whole.End() != split.End() {
			t.Fatalf("End %d in one piece, %d cut at %d", whole.End(), split.End(), at)
		}
		if whole.Stop() != split.Stop() || whole.Stopped() != (whole.Stop() > 0) || whole.Stop() > int64(len(data)) || whole.Stopped() && whole.Stop() < whole.End() {
			t.Fatalf("Stop %d (stopped %v, End %d) in one piece, %d cut at %d, of %d bytes", whole.Stop(), whole.Stopped(), whole.End(), split.Stop(), at, len(data))
		}
		if whole.End() > int64(len(data))+maxAlign-1 {
			t.Fatalf("End %d past the %d bytes given", whole.End(), len(data))
		}
	})
}
