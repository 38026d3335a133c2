package archive

import (
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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

// TestClusterTimeline: the timeline of pg_control's latest checkpoint,
// from a whole pg_control whose CRC matches; read as before (no CRC to
// check) for a layout hoard does not know; an error for none, for one
// whose CRC fails (damaged, or torn by the server's rewrite: a wrong
// timeline says wrongly which history files wal-fetch ignores), and for
// one cut short of its CRC.
func TestClusterTimeline(t *testing.T) {
	withTLI := func(version, tli uint32) []byte {
		b := controlBytes(version, 16<<20)
		binary.LittleEndian.PutUint32(b[controlTimelineOffset:], tli)
		if at, err := wal.ControlCRCOffset(b); err == nil {
			binary.LittleEndian.PutUint32(b[at:], wal.ControlCRC(b[:at]))
		}
		return b
	}
	torn := withTLI(1700, 3)
	binary.LittleEndian.PutUint32(torn[controlTimelineOffset:], 7) // after the CRC was taken
	for _, tc := range []struct {
		name    string
		data    string
		want    uint32
		wantErr error
	}{
		{name: "OK", data: dataDirWithControl(t, withTLI(1700, 3)), want: 3},
		{name: "OK1800", data: dataDirWithControl(t, withTLI(1800, 5)), want: 5},
		{name: "OKLayoutNotKnown", data: dataDirWithControl(t, withTLI(1100, 4)), want: 4},
		{name: "ErrNotExist", data: t.TempDir(), wantErr: fs.ErrNotExist},
		{name: "ErrCRC", data: dataDirWithControl(t, torn), wantErr: wal.ErrControlCRC},
		{name: "ErrShort", data: dataDirWithControl(t, withTLI(1300, 3)[:250])},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ClusterTimeline(tc.data)
			switch {
			case strings.HasPrefix(tc.name, "OK") && (err != nil || got != tc.want):
				t.Errorf("ClusterTimeline = %d, %v; want %d", got, err, tc.want)
			case strings.HasPrefix(tc.name, "Err") && (err == nil || !strings.Contains(err.Error(), filepath.Join(tc.data, "global", "pg_control"))):
				t.Errorf("ClusterTimeline = %d, %v; want an error naming pg_control", got, err)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("ClusterTimeline = %d, %v; want an error wrapping %v", got, err, tc.wantErr)
			}
		})
	}
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
