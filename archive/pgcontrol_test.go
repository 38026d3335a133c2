package archive

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/wal"
)

// controlBytes returns a pg_control of pg_control_version version (1300:
// PostgreSQL 13 to 16, whose CRC lies at 288) recording WAL segments of
// segSize bytes, with its CRC.
func controlBytes(version, segSize uint32) []byte {
	b := make([]byte, 8192)
	binary.LittleEndian.PutUint64(b[wal.ControlSystemIDOffset:], 7000000000000000001)
	binary.LittleEndian.PutUint32(b[wal.ControlVersionOffset:], version)
	binary.LittleEndian.PutUint32(b[wal.ControlSegSizeOffset:], segSize)
	if at, err := wal.ControlCRCOffset(b); err == nil {
		binary.LittleEndian.PutUint32(b[at:], wal.ControlCRC(b[:at]))
	}
	return b
}

// dataDirWithControl returns a data directory whose global/pg_control
// holds b.
func dataDirWithControl(t testing.TB, b []byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "global"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "global", "pg_control"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestReadClusterControl: every answer from one pg_control whose CRC
// matches; for a layout hoard does not know, its system identifier and
// the timeline at the offset of every layout since PostgreSQL 11, no REDO
// location and no segment size; an error for none, for one whose CRC
// fails (damaged, or still being rewritten), for one cut short of its CRC
// and for one of another layout cut short of its timeline.
func TestReadClusterControl(t *testing.T) {
	control := func(version, tli uint32, redo uint64, segSize uint32) []byte {
		b := controlBytes(version, segSize)
		binary.LittleEndian.PutUint32(b[controlTimelineOffset:], tli)
		binary.LittleEndian.PutUint64(b[wal.ControlRedoOffset:], redo)
		if at, err := wal.ControlCRCOffset(b); err == nil {
			binary.LittleEndian.PutUint32(b[at:], wal.ControlCRC(b[:at]))
		}
		return b
	}
	torn := control(1300, 3, 0x5000028, 1<<20)
	binary.LittleEndian.PutUint32(torn[wal.ControlSegSizeOffset:], 16<<20) // after the CRC was taken
	const system = 7000000000000000001                                     // controlBytes'
	for _, tc := range []struct {
		name    string
		data    string
		want    ClusterControl
		wantErr error
	}{
		{name: "OK", data: dataDirWithControl(t, control(1300, 3, 0x5000028, 1<<20)),
			want: ClusterControl{SystemID: system, Timeline: 3, Redo: 0x5000028, SegmentSize: 1 << 20}},
		{name: "OK1800", data: dataDirWithControl(t, control(1800, 5, 0x9000028, 64<<20)),
			want: ClusterControl{SystemID: system, Timeline: 5, Redo: 0x9000028, SegmentSize: 64 << 20}},
		{name: "OKLayoutNotKnown", data: dataDirWithControl(t, control(1100, 4, 0x5000028, 1<<20)),
			want: ClusterControl{SystemID: system, Timeline: 4}},
		{name: "ErrNotExist", data: t.TempDir(), wantErr: fs.ErrNotExist},
		{name: "ErrCRC", data: dataDirWithControl(t, torn), wantErr: wal.ErrControlCRC},
		{name: "ErrShort", data: dataDirWithControl(t, control(1300, 3, 0x5000028, 1<<20)[:250]), wantErr: io.ErrUnexpectedEOF},
		{name: "ErrShortLayoutNotKnown", data: dataDirWithControl(t, control(1100, 4, 0x5000028, 1<<20)[:50]), wantErr: io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadClusterControl(tc.data)
			switch {
			case strings.HasPrefix(tc.name, "OK") && (err != nil || got != tc.want):
				t.Errorf("ReadClusterControl = %+v, %v; want %+v", got, err, tc.want)
			case strings.HasPrefix(tc.name, "Err") && (err == nil || !strings.Contains(err.Error(), filepath.Join(tc.data, "global", "pg_control"))):
				t.Errorf("ReadClusterControl = %+v, %v; want an error naming pg_control", got, err)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("ReadClusterControl = %+v, %v; want an error wrapping %v", got, err, tc.wantErr)
			}
		})
	}
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

// TestReadClusterControl_Server: the pg_control of a real cluster of each
// major passes the CRC check and gives its segment size, read after read
// while the server rewrites it (a CHECKPOINT at a time) for a second.
func TestReadClusterControl_Server(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, major int) {
		c := pgtest.Start(t, pgtest.Options{Major: major, WALSegmentSizeMB: 2})
		conn := c.Connect(t, "postgres")
		ctx, cancel := context.WithCancel(context.Background())
		var (
			wg          sync.WaitGroup
			checkpoints int
			cpErr       error
		)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
					if ctx.Err() == nil {
						cpErr = err
					}
					return
				}
				checkpoints++
			}
		}()
		stop := func() {
			cancel()
			wg.Wait()
		}
		defer stop()
		reads := 0
		for end := time.Now().Add(time.Second); time.Now().Before(end); reads++ {
			if got, err := ReadClusterControl(c.DataDir); err != nil || got.SegmentSize != 2<<20 {
				t.Fatalf("read %d: ReadClusterControl = %+v, %v; want segment size %d", reads, got, err, 2<<20)
			}
		}
		stop()
		if cpErr != nil || checkpoints == 0 {
			t.Fatalf("%d checkpoints during the reads: %v", checkpoints, cpErr)
		}
		t.Logf("%d reads, %d checkpoints", reads, checkpoints)
	})
}

// BenchmarkReadClusterControl: the pg_control work of one wal-fetch call,
// one read of a PostgreSQL 17 pg_control (8 KiB) and the replay start it
// gives (a stat of the absent backup_label).
func BenchmarkReadClusterControl(b *testing.B) {
	dir := dataDirWithControl(b, controlBytes(1700, 16<<20))
	for b.Loop() {
		c, err := ReadClusterControl(dir)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.ReplayStart(dir); err != nil {
			b.Fatal(err)
		}
	}
}
