package archive

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/storage"
)

// CheckBackup (retention's check before it deletes, verify's) reads a
// control object within the limits restore reads it with, and a chunk no
// further than one byte past the size its manifest records. Before, it
// decoded both to their ends, whatever they decoded to (and held a
// manifest of up to 1 GiB).
func TestArchive_CheckBackupBombs(t *testing.T) {
	ctx := context.Background()
	newArchive := func(t *testing.T) (*Archive, *readCount) {
		rc := &readCount{Store: storage.NewMem()}
		a := &Archive{Store: rc, Codec: &Codec{Compression: compress.Zstd}, Layout: Layout{Prefix: "s"}, Site: "s"}
		t.Cleanup(func() { rc.Close() })
		return a, rc
	}
	b := &BackupInfo{Name: "b", Key: "s/basebackup/b", Format: FormatBBv2}
	chunk := "s/basebackup_chunk/b/b.00000001.pghoard"
	t.Run("ErrControl", func(t *testing.T) {
		a, _ := newArchive(t)
		putBomb(t, a, b.Key, 64<<20)
		putZeros(t, a, chunk, 10240)
		old := maxControlSize
		maxControlSize = 16 << 20
		t.Cleanup(func() { maxControlSize = old })
		if err := a.CheckBackup(ctx, b, false); !errors.Is(err, ErrControlLimit) || !strings.Contains(err.Error(), b.Key) {
			t.Fatalf("err = %v, want ErrControlLimit naming %s", err, b.Key)
		}
	})
	t.Run("ErrChunk", func(t *testing.T) {
		a, rc := newArchive(t)
		putBomb(t, a, b.Key, 1<<20)
		if err := a.CheckBackup(ctx, b, true); err == nil || !strings.Contains(err.Error(), chunk) {
			t.Fatalf("no chunk: err = %v, want one naming %s", err, chunk)
		}
		a.Codec.Compression = compress.None // stored bytes are decoded bytes
		putZeros(t, a, chunk, 64<<20)
		rc.n.Store(0)
		err := a.CheckBackup(ctx, b, true)
		if err == nil || !strings.Contains(err.Error(), chunk) || !strings.Contains(err.Error(), "more than the 10240 bytes") {
			t.Fatalf("err = %v, want one naming %s, decoding to more than 10240 bytes", err, chunk)
		}
		if got := rc.n.Load(); got > 4<<20 {
			t.Fatalf("read %d stored bytes, want the control object and 10241 bytes of the chunk", got)
		}
	})
}

// putZeros stores size zero bytes under key with a's codec, without
// original-file-size.
func putZeros(t testing.TB, a *Archive, key string, size int64) {
	t.Helper()
	if _, err := a.Codec.Put(context.Background(), a.Store, key, &zeroTail{size: size}, -1, nil); err != nil {
		t.Fatal(err)
	}
}
