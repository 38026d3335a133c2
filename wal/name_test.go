package wal

import "testing"

func TestName_Kinds(t *testing.T) {
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

func TestParseHistoryFileName(t *testing.T) {
	for _, tt := range []struct {
		name string
		tli  uint32
		ok   bool
	}{{"00000002.history", 2, true}, {"0000001A.history", 26, true}, {"0000001a.history", 0, false}, {"00000002", 0, false}} {
		tli, err := ParseHistoryFileName(tt.name)
		if (err == nil) != tt.ok || tli != tt.tli {
			t.Errorf("ParseHistoryFileName(%q) = %d, %v; want %d, ok %v", tt.name, tli, err, tt.tli, tt.ok)
		}
		if tt.ok && HistoryFileName(tli) != tt.name {
			t.Errorf("HistoryFileName(%d) = %q, want %q", tli, HistoryFileName(tli), tt.name)
		}
	}
}

func TestSegmentTimeline(t *testing.T) {
	for name, want := range map[string]uint32{
		"0000000A0000000000000003":                 10,
		"000000020000000000000003.partial":         2,
		"000000030000000000000003.00000028.backup": 3,
		"00000002.history":                         0,
		"RECOVERYXLOG":                             0,
	} {
		if got := SegmentTimeline(name); got != want {
			t.Errorf("SegmentTimeline(%q) = %d, want %d", name, got, want)
		}
	}
}
