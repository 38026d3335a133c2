package wal

import (
	"testing"

	"github.com/jackc/pglogrepl"
)

func TestSegment_Name(t *testing.T) {
	tests := []struct {
		tli     uint32
		lsn     pglogrepl.LSN
		segSize uint64
		want    string
	}{
		{1, 0x1000028, 16 << 20, "000000010000000000000001"},
		{1, 0x0, 16 << 20, "000000010000000000000000"},
		{2, 0x1FF000000, 16 << 20, "0000000200000001000000FF"},
		{1, 0x100000000, 16 << 20, "000000010000000100000000"},
		{3, 0x7654321, 1 << 20, "000000030000000000000076"},
		{1, 0x140000000, 1 << 30, "000000010000000100000001"},
	}
	for _, tt := range tests {
		seg := SegmentOf(tt.tli, tt.lsn, tt.segSize)
		if got := seg.Name(tt.segSize); got != tt.want {
			t.Errorf("SegmentOf(%d, %s, %d).Name() = %s, want %s", tt.tli, tt.lsn, tt.segSize, got, tt.want)
		}
		back, err := ParseSegmentName(tt.want, tt.segSize)
		if err != nil {
			t.Fatalf("ParseSegmentName(%s): %v", tt.want, err)
		}
		if back != seg {
			t.Errorf("ParseSegmentName(%s) = %+v, want %+v", tt.want, back, seg)
		}
		if got, want := back.StartLSN(tt.segSize), pglogrepl.LSN(uint64(tt.lsn)/tt.segSize*tt.segSize); got != want {
			t.Errorf("StartLSN = %s, want %s", got, want)
		}
	}
}

func TestParseSegmentName_ErrX(t *testing.T) {
	for _, name := range []string{"", "00000001000000000000001", "00000001000000000000000g", "0000000100000000000001000"} {
		if _, err := ParseSegmentName(name, 16<<20); err == nil {
			t.Errorf("ParseSegmentName(%q) succeeded, want error", name)
		}
	}
	// 0x100 segments of 16 MiB per xlogid: 000000FF is the last valid one.
	if _, err := ParseSegmentName("000000010000000000000100", 16<<20); err == nil {
		t.Error("segment number past the xlogid accepted")
	}
}
