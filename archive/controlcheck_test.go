package archive

import (
	"errors"
	"testing"

	"github.com/hoardbackup/hoard/storage"
)

// TestCheckControl compares a control object's backup_label and manifest
// with its backup's metadata: one that agrees (PostgreSQL 15's label, a
// PGHoard backup's metadata without hoard's keys, a label before
// PostgreSQL 11 without START TIMELINE) passes; another backup's control
// object under this one's name, whatever field tells it apart, is refused
// with ErrForeignControl.
func TestCheckControl(t *testing.T) {
	const label = "START WAL LOCATION: 0/4000028 (file 000000010000000000000004)\n" +
		"CHECKPOINT LOCATION: 0/4000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n" +
		"START TIME: 2026-12-04 21:49:39 UTC\nLABEL: hoard\nSTART TIMELINE: 1\n"
	own := func() *BackupInfo {
		return &BackupInfo{Name: "b", StartWALSegment: "000000010000000000000004", StartLSN: 0x4000028, StartTimeline: 1, SystemID: "7",
			Metadata: storage.Metadata{MetaStartLSN: "0/4000028"}}
	}
	ctrl := func(label string, system string) *Control {
		c := &Control{Manifest: &Manifest{Hoard: &HoardManifest{SystemID: system}}}
		if label != "" {
			c.Label = []byte(label)
		}
		return c
	}
	for _, tc := range []struct {
		name string
		b    func(*BackupInfo)
		c    *Control
		ok   bool
	}{
		{"OK", nil, ctrl(label, "7"), true},
		// As BackupInfo reads PGHoard's metadata: the start segment only.
		{"OKPGHoard", func(b *BackupInfo) { b.StartLSN, b.SystemID, b.Metadata = 0x4000000, "", nil }, &Control{Manifest: &Manifest{}, Label: []byte(label)}, true},
		{"ErrPGHoardOtherSegment", func(b *BackupInfo) { b.StartLSN, b.SystemID, b.Metadata = 0x4000000, "", nil },
			&Control{Manifest: &Manifest{}, Label: []byte("START WAL LOCATION: 0/6000028\n")}, false},
		// PGHoard records no segment size: a cluster made with initdb
		// --wal-segsize=64 starts segment 000000010000000000000003 at
		// 0/C000000, which BackupInfo reads as 0/3000000 (16 MiB).
		{"OKPGHoardSegSize", func(b *BackupInfo) {
			b.StartWALSegment, b.StartLSN, b.SystemID, b.Metadata = "000000010000000000000003", 0x3000000, "", nil
		}, &Control{Manifest: &Manifest{}, Label: []byte("START WAL LOCATION: 0/C000028 (file 000000010000000000000003)\nSTART TIMELINE: 1\n")}, true},
		{"ErrPGHoardSegSizeOtherSegment", func(b *BackupInfo) {
			b.StartWALSegment, b.StartLSN, b.SystemID, b.Metadata = "000000010000000000000003", 0x3000000, "", nil
		}, &Control{Manifest: &Manifest{}, Label: []byte("START WAL LOCATION: 0/10000028\nSTART TIMELINE: 1\n")}, false},
		// hoard records the segment size: the label's start must lie in the
		// start segment at that size.
		{"ErrSegSizeRecorded", func(b *BackupInfo) {
			b.StartWALSegment, b.StartLSN, b.WALSegmentSize, b.Metadata = "000000010000000000000003", 0xC000028, 16<<20, nil
		}, ctrl("START WAL LOCATION: 0/C000028 (file 000000010000000000000003)\nSTART TIMELINE: 1\n", "7"), false},
		{"OKNoTimelineLine", nil, ctrl("START WAL LOCATION: 0/4000028 (file 000000010000000000000004)\n", "7"), true},
		{"OKCRLF", nil, ctrl("START WAL LOCATION: 0/4000028 (file 000000010000000000000004)\r\nSTART TIMELINE: 1\r\n", "7"), true},
		{"ErrStartLSN", func(b *BackupInfo) { b.StartLSN = 0x6000028 }, ctrl(label, "7"), false},
		{"ErrSegment", func(b *BackupInfo) { b.StartLSN, b.StartWALSegment = 0, "000000010000000000000006" }, ctrl(label, "7"), false},
		{"ErrTimeline", func(b *BackupInfo) { b.StartTimeline = 2 }, ctrl(label, "7"), false},
		{"ErrSystem", nil, ctrl(label, "8"), false},
		{"ErrNoLabel", nil, ctrl("", "7"), false},
		{"ErrNoStart", nil, ctrl("LABEL: hoard\n", "7"), false},
		{"ErrBadLSN", nil, ctrl("START WAL LOCATION: zz (file 000000010000000000000004)\n", "7"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := own()
			if tc.b != nil {
				tc.b(b)
			}
			err := CheckControl(b, tc.c)
			if tc.ok && err != nil {
				t.Fatalf("CheckControl: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrForeignControl) {
				t.Fatalf("CheckControl: %v, want ErrForeignControl", err)
			}
		})
	}
}
