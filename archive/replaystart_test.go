package archive

import (
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
