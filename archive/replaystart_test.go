package archive

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
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
func dataDirWithControl(t *testing.T, b []byte) string {
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

// TestClusterSegmentSize: the segment size of a pg_control whose CRC
// matches; 0 for a layout hoard does not know; an error for none, for one
// whose CRC fails (damaged, or still being rewritten), and for one cut
// short of its CRC.
func TestClusterSegmentSize(t *testing.T) {
	torn := controlBytes(1300, 1<<20)
	binary.LittleEndian.PutUint32(torn[wal.ControlSegSizeOffset:], 16<<20)
	for _, tc := range []struct {
		name    string
		data    string
		want    uint64
		wantErr error
	}{
		{name: "OK", data: dataDirWithControl(t, controlBytes(1300, 1<<20)), want: 1 << 20},
		{name: "OK1800", data: dataDirWithControl(t, controlBytes(1800, 64<<20)), want: 64 << 20},
		{name: "OKLayoutNotKnown", data: dataDirWithControl(t, controlBytes(1100, 1<<20))},
		{name: "ErrNotExist", data: t.TempDir(), wantErr: fs.ErrNotExist},
		{name: "ErrCRC", data: dataDirWithControl(t, torn), wantErr: wal.ErrControlCRC},
		{name: "ErrShort", data: dataDirWithControl(t, controlBytes(1300, 1<<20)[:250])},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ClusterSegmentSize(tc.data)
			switch {
			case strings.HasPrefix(tc.name, "OK") && (err != nil || got != tc.want):
				t.Errorf("ClusterSegmentSize = %d, %v; want %d", got, err, tc.want)
			case strings.HasPrefix(tc.name, "Err") && (err == nil || !strings.Contains(err.Error(), filepath.Join(tc.data, "global", "pg_control"))):
				t.Errorf("ClusterSegmentSize = %d, %v; want an error naming pg_control", got, err)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("ClusterSegmentSize = %d, %v; want an error wrapping %v", got, err, tc.wantErr)
			}
		})
	}
}

// TestReadPGControl: pg_control is read again while its CRC fails, as
// PostgreSQL's tools do (get_controlfile_by_exact_path): a read during
// the server's rewrite is followed by one of the whole file; the same bad
// CRC twice in a row is damage, and a CRC that keeps failing is given up
// after 10 more reads.
func TestReadPGControl(t *testing.T) {
	good := controlBytes(1300, 1<<20)
	// A read that fails its CRC: each i a different one.
	tornAt := func(i int) []byte {
		b := bytes.Clone(good)
		binary.LittleEndian.PutUint32(b[wal.ControlSegSizeOffset:], uint32(i))
		return b
	}
	for _, tc := range []struct {
		name  string
		reads [][]byte
		want  int // reads made
	}{
		{name: "OK", reads: [][]byte{good}, want: 1},
		{name: "OKTornRead", reads: [][]byte{tornAt(1), tornAt(2), good}, want: 3},
		{name: "ErrDamaged", reads: [][]byte{tornAt(1), tornAt(1), good}, want: 2},
		{name: "ErrKeepsFailing", reads: [][]byte{tornAt(1), tornAt(2), tornAt(3), tornAt(4), tornAt(5), tornAt(6),
			tornAt(7), tornAt(8), tornAt(9), tornAt(10), tornAt(11), good}, want: 11},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			b, err := readPGControl("pg_control", func(string) ([]byte, error) {
				n++
				return tc.reads[n-1], nil
			})
			if n != tc.want {
				t.Errorf("%d reads, want %d", n, tc.want)
			}
			if tc.name[:2] == "OK" {
				if err != nil || !bytes.Equal(b, good) {
					t.Errorf("readPGControl = %v; want the whole pg_control", err)
				}
			} else if !errors.Is(err, wal.ErrControlCRC) {
				t.Errorf("readPGControl = %v; want an error wrapping wal.ErrControlCRC", err)
			}
		})
	}
}

// TestClusterSegmentSize_Server: the pg_control of a real cluster of each
// major passes the CRC check and gives its segment size, read after read
// while the server rewrites it (a CHECKPOINT at a time) for a second.
func TestClusterSegmentSize_Server(t *testing.T) {
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
			if got, err := ClusterSegmentSize(c.DataDir); err != nil || got != 2<<20 {
				t.Fatalf("read %d: ClusterSegmentSize = %d, %v; want %d", reads, got, err, 2<<20)
			}
		}
		stop()
		if cpErr != nil || checkpoints == 0 {
			t.Fatalf("%d checkpoints during the reads: %v", checkpoints, cpErr)
		}
		t.Logf("%d reads, %d checkpoints", reads, checkpoints)
	})
}
