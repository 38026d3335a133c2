package archive

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

func TestNames_Kinds(t *testing.T) {
	tests := []struct {
		name                            string
		segment, history, partial, back bool
	}{
		{"000000010000000000000003", true, false, false, false},
		{"00000002.history", false, true, false, false},
		{"000000010000000000000003.partial", false, false, true, false},
		{"000000010000000000000003.00000028.backup", false, false, false, true},
		{"00000002.History", false, false, false, false},
		{"RECOVERYXLOG", false, false, false, false},
	}
	for _, tt := range tests {
		if got := IsSegmentName(tt.name); got != tt.segment {
			t.Errorf("IsSegmentName(%q) = %v", tt.name, got)
		}
		if got := IsHistoryFile(tt.name); got != tt.history {
			t.Errorf("IsHistoryFile(%q) = %v", tt.name, got)
		}
		if got := IsPartialName(tt.name); got != tt.partial {
			t.Errorf("IsPartialName(%q) = %v", tt.name, got)
		}
		if got := IsBackupHistoryName(tt.name); got != tt.back {
			t.Errorf("IsBackupHistoryName(%q) = %v", tt.name, got)
		}
	}
}

func TestLayout_Keys(t *testing.T) {
	l := Layout{Prefix: "site1"}
	tests := []struct{ got, want string }{
		{l.WALKey("000000010000000000000003"), "site1/xlog/000000010000000000000003"},
		{l.WALKey("00000002.history"), "site1/timeline/00000002.history"},
		{l.WALKey("000000010000000000000003.partial"), "site1/xlog/000000010000000000000003.partial"},
		{l.BackupKey("2024-01-01_10-00_0"), "site1/basebackup/2024-01-01_10-00_0.00000000.pghoard"},
		{l.BackupKey("2024-01-01_10-00_0.00000000.pghoard"), "site1/basebackup/2024-01-01_10-00_0.00000000.pghoard"},
		{ChunkFilename("2024-01-01_10-00_0", 3), "2024-01-01_10-00_0/2024-01-01_10-00_0.00000003.pghoard"},
		{l.ChunkKey(ChunkFilename("2024-01-01_10-00_0", 1)), "site1/basebackup_chunk/2024-01-01_10-00_0/2024-01-01_10-00_0.00000001.pghoard"},
		{l.Dir(BasebackupDir), "site1/basebackup/"},
		{Layout{}.WALKey("00000002.history"), "timeline/00000002.history"},
		{BackupName("site1/basebackup/2024-01-01_10-00_0.00000000.pghoard"), "2024-01-01_10-00_0"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
