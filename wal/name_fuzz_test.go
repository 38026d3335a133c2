package wal

import "testing"

// FuzzParseSegmentName feeds arbitrary names to the WAL file name parsers:
// they must never panic, and a name they accept must come back unchanged
// from the parsed value.
func FuzzParseSegmentName(f *testing.F) {
	for _, s := range []string{
		"000000010000000000000001", "00000002000000010000000A", "FFFFFFFFFFFFFFFFFFFFFFFF",
		"000000010000000000000001.partial", "00000002.history", "000000010000000000000003.00000028.backup",
		"00000001000000000000000g", "0000000100000000000000", "../00000001.history", "",
	} {
		f.Add(s, uint8(24))
	}
	f.Fuzz(func(t *testing.T, name string, sizeLog uint8) {
		segSize := uint64(1) << (20 + sizeLog%11) // 1 MiB .. 1 GiB
		if seg, err := ParseSegmentName(name, segSize); err == nil {
			if !IsSegmentName(name) {
				t.Fatalf("parsed %q, which IsSegmentName refuses", name)
			}
			if got := seg.Name(segSize); got != name {
				t.Fatalf("ParseSegmentName(%q, %d).Name = %q", name, segSize, got)
			}
			if SegmentOf(seg.Timeline, seg.StartLSN(segSize), segSize) != seg {
				t.Fatalf("%q: start LSN %s maps to another segment", name, seg.StartLSN(segSize))
			}
		}
		if tli, err := ParseHistoryFileName(name); err == nil && HistoryFileName(tli) != name {
			t.Fatalf("ParseHistoryFileName(%q) = %d, which names %q", name, tli, HistoryFileName(tli))
		}
		if tli := SegmentTimeline(name); tli != 0 && !IsSegmentName(name) && !IsPartialName(name) && !IsBackupHistoryName(name) {
			t.Fatalf("SegmentTimeline(%q) = %d for a name that is no WAL file", name, tli)
		}
	})
}
