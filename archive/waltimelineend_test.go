package archive

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// TestArchive_TimelineEnd_Real: a standby with archive_mode = always
// archives the last segment of a timeline that ended under its complete
// name, its WAL ending at the switch point and zeros after it (a new
// file). Where a later timeline's history file in the archive, read
// through its checks, records that the segment's timeline ends exactly
// where the segment's WAL does, FetchWAL delivers it, WALFile.CheckSystem
// (verify --full) and checkSegment (retention) pass it, without the
// operator's acceptance. The segment is made from a real PostgreSQL 15
// promotion: timeline 1's last segment (the .partial PostgreSQL archived)
// zeroed after the switch point 00000002.history records. Without that
// history file, or with its last non-zero byte before that point zeroed
// (a copy cut inside the timeline's last record), it is still refused.
func TestArchive_TimelineEnd_Real(t *testing.T) {
	ctx := context.Background()
	c, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: 15, WALSegmentSizeMB: 1})
	c.Exec(t, "create table r (id int, pad text)")
	c.Exec(t, "insert into r select g, repeat('x', 300) from generate_series(1, 1000) g")
	c.NewTimeline(t)
	c.Exec(t, "insert into r select g, repeat('v', 300) from generate_series(1, 100) g")
	c.SwitchArchived(t, walDir)

	hist, err := os.ReadFile(filepath.Join(walDir, "00000002.history"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := wal.ParseHistory(2, hist)
	if err != nil {
		t.Fatal(err)
	}
	switchAt, _, ok := h.Switch(1)
	if !ok {
		t.Fatalf("00000002.history records no end of timeline 1:\n%s", hist)
	}
	name := wal.Segment{Timeline: 1, No: uint64(switchAt) / (1 << 20)}.Name(1 << 20)
	partial, err := os.ReadFile(filepath.Join(walDir, name+".partial"))
	if err != nil {
		t.Fatal(err)
	}
	ph, err := wal.DecodePageHeader(partial)
	if err != nil {
		t.Fatal(err)
	}
	system := ph.SystemID
	if len(partial) != 1<<20 {
		t.Fatalf("%s.partial is %d bytes, want 1 MiB", name, len(partial))
	}

	for _, tc := range []struct {
		name    string
		cut     int64 // the segment offset zeros start at
		history bool
		ok      bool
	}{
		{"OK", int64(switchAt % (1 << 20)), true, true},
		{"ErrNoHistory", int64(switchAt % (1 << 20)), false, false},
		{"ErrCutBefore", int64(len(bytes.TrimRight(partial[:switchAt%(1<<20)], "\x00")) - 1), true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &Archive{Store: storage.NewLocal(t.TempDir()), Codec: encryptingCodec(t), Layout: Layout{Prefix: "site"}, Site: "site"}
			dir := t.TempDir()
			seg := append([]byte(nil), partial...)
			clear(seg[tc.cut:])
			files := map[string][]byte{name: seg}
			if tc.history {
				files["00000002.history"] = hist
			}
			for file, data := range files {
				path := filepath.Join(dir, file)
				if err := os.WriteFile(path, data, 0o600); err != nil {
					t.Fatal(err)
				}
				if _, err := a.PushWAL(ctx, path, PushOptions{SystemID: system}); err != nil {
					t.Fatal(err)
				}
			}
			f := WALFile{Name: name, Key: a.Layout.WALKey(name), Archive: a}
			dest := filepath.Join(dir, "RECOVERYXLOG")
			for what, err := range map[string]error{
				"FetchWAL":     a.FetchWAL(ctx, name, dest, FetchOptions{}),
				"CheckSystem":  f.CheckSystem(ctx, 0),
				"checkSegment": checkSegment(ctx, f),
			} {
				switch {
				case tc.ok && err != nil:
					t.Errorf("%s of timeline 1's last segment, its WAL ending at the switch point %s that 00000002.history records: %v, want it passed", what, switchAt, err)
				case !tc.ok && !errors.Is(err, ErrTruncatedSegment):
					t.Errorf("%s with zeros from offset %d (history stored: %v): %v, want %v", what, tc.cut, tc.history, err, ErrTruncatedSegment)
				}
			}
			if tc.ok && !t.Failed() {
				if got, err := os.ReadFile(dest); err != nil || !bytes.Equal(got, seg) {
					t.Errorf("FetchWAL delivered %d bytes (%v), want the segment's %d", len(got), err, len(seg))
				}
			}
		})
	}
}
