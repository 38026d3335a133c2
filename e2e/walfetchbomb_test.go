package e2e

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
)

// TestWALFetch_Bomb plants, in a site without keys on MinIO, objects
// under WAL names that decode to 2 GiB (a few hundred KiB of zstd each,
// without original-file-size): a segment whose first page is sound, and
// a history file. hoard wal-fetch refuses each with exit 255 (PostgreSQL
// stops recovery), naming the object and the size it passed, and leaves
// nothing in pg_wal. Before, it decoded all 2 GiB into a temporary file
// in pg_wal first, and delivered the history file.
func TestWALFetch_Bomb(t *testing.T) {
	minio := storetest.MinIO(t)
	s := newSite(t, siteOptions{Compression: "zstd", ObjectStorage: s3Storage(minio)})
	st, err := storage.Open(context.Background(), minio)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	const segSize = 16 << 20
	seg := "000000010000000000000003"
	tests := []struct {
		name string
		head []byte
		want string
	}{
		{seg, waltest.Segment(t, seg, segSize, 3), "more than 16777216 bytes"},
		{"00000002.history", []byte("1\t0/3000000\tno recovery target specified\n"), "more than 16777216 bytes"},
	}
	codec := &archive.Codec{Compression: compress.Zstd}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := s.name + "/xlog/" + tt.name
			if strings.HasSuffix(tt.name, ".history") {
				key = s.name + "/timeline/" + tt.name
			}
			body := io.MultiReader(bytes.NewReader(tt.head), io.LimitReader(zeroReader{}, 2<<30-int64(len(tt.head))))
			stored, err := codec.Put(context.Background(), st, key, body, -1, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: 2 GiB decoded stored in %d bytes", key, stored.StoredSize)
			pgwal := pgtest.TempDir(t)
			cmd := s.command("wal-fetch", tt.name, filepath.Join(pgwal, "RECOVERYXLOG"))
			var stderr testio.SyncBuffer
			cmd.Stderr = &stderr
			err = cmd.Run()
			if code := exitCode(err); code != 255 {
				t.Fatalf("exit %d, want 255\n%s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), key) || !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("stderr does not name %s and %q:\n%s", key, tt.want, stderr.String())
			}
			if got := testio.DirNames(t, pgwal); len(got) != 0 {
				t.Fatalf("pg_wal holds %v", got)
			}
			if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
				t.Logf("wal-fetch: max RSS %d MiB, %.1f s user", ru.Maxrss>>10, float64(ru.Utime.Nano())/1e9)
			}
		})
	}
}

// zeroReader reads zero bytes without end.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
