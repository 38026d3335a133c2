package archive

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/wal"
)

// dataDirOf returns a data directory whose global/pg_control names
// system, with an empty pg_wal: where archive_command's %p and
// archive-sync's files are.
func dataDirOf(t *testing.T, system uint64) string {
	t.Helper()
	pgdata := t.TempDir()
	for _, d := range []string{"pg_wal", "global"} {
		if err := os.Mkdir(filepath.Join(pgdata, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	control := make([]byte, 8192)
	binary.LittleEndian.PutUint64(control, system)
	if err := os.WriteFile(filepath.Join(pgdata, "global", "pg_control"), control, 0o600); err != nil {
		t.Fatal(err)
	}
	return pgdata
}

func TestWALSystemID(t *testing.T) {
	pgdata := dataDirOf(t, 7400000000000000042)
	seg := "000000010000000000000003"
	writeWALFile(t, filepath.Join(pgdata, "pg_wal"), seg, waltest.Segment(t, seg, 1<<20, 1))
	writeWALFile(t, filepath.Join(pgdata, "pg_wal"), "00000002.history", []byte("1\t0/3000000\tno recovery target specified\n"))

	cases := []struct {
		path string
		want uint64
	}{
		{filepath.Join(pgdata, "pg_wal", seg), 7123456789012345678}, // waltest's header
		{filepath.Join(pgdata, "pg_wal", "00000002.history"), 7400000000000000042},
	}
	for _, tc := range cases {
		got, err := WALSystemID(tc.path)
		if err != nil || got != tc.want {
			t.Errorf("WALSystemID(%s) = %d, %v; want %d", filepath.Base(tc.path), got, err, tc.want)
		}
	}
	// %p is relative to the data directory archive_command runs in.
	t.Chdir(pgdata)
	if got, err := WALSystemID("pg_wal/00000002.history"); err != nil || got != 7400000000000000042 {
		t.Errorf("WALSystemID(relative) = %d, %v", got, err)
	}

	// A history file outside a data directory: no pg_control to read.
	other := writeWALFile(t, t.TempDir(), "00000003.history", []byte("x"))
	if _, err := WALSystemID(other); err == nil {
		t.Errorf("WALSystemID of a file outside a data directory succeeded")
	}
}

func TestArchive_FetchWAL_ErrOtherSystem(t *testing.T) {
	ctx := context.Background()
	a := walTestArchive(t, true)
	segs := pushSegments(t, a, 3, 3)
	name := segName(3)
	h, err := wal.DecodePageHeader(segs[name][:wal.PageHeaderSize])
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		test string
		id   uint64
		want error
	}{
		{"OK", h.SystemID, nil},
		{"Unknown", 0, nil},
		{"ErrOtherSystem", h.SystemID + 1, ErrOtherSystem},
	} {
		t.Run(tc.test, func(t *testing.T) {
			dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
			err := a.FetchWAL(ctx, name, dest, FetchOptions{SystemID: tc.id})
			if !errors.Is(err, tc.want) || (tc.want != nil) == (err == nil) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if _, serr := os.Stat(dest); (serr == nil) != (tc.want == nil) {
				t.Errorf("%s exists: %v, want %v", dest, serr == nil, tc.want == nil)
			}
		})
	}
}
