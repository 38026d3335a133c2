package restore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// TestFindPartialTail_Planted is a bucket writer without keys against
// the end of the archive: a .partial whose partial-data-size metadata
// claims more WAL than it holds must not make a restore promise a
// recovery target past its content, and one that does not decode must
// make a restore that would replay it fail, naming it.
func TestFindPartialTail_Planted(t *testing.T) {
	ctx := context.Background()
	const segSize = 1 << 20
	name := "000000010000000000000005"
	seg := waltest.Segment(t, name, segSize, 5)
	a := archivetest.New(t, storage.NewLocal(t.TempDir()), &archive.Codec{Compression: compress.Snappy})
	p := filepath.Join(t.TempDir(), name+wal.PartialSuffix)
	if err := os.WriteFile(p, seg[:300000], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := a.PutPartialWAL(ctx, p, archive.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	key := a.Layout.WALKey(name + wal.PartialSuffix)
	honest, err := FindPartialTail(ctx, a, segSize)
	if err != nil || honest == nil {
		t.Fatalf("FindPartialTail = %v, %v", honest, err)
	}
	storetest.Rewrite(t, a.Store, key, func(data []byte, md storage.Metadata) []byte {
		md[archive.MetaPartialDataSize] = strconv.Itoa(segSize)
		return data
	})
	tail, err := FindPartialTail(ctx, a, segSize)
	if err != nil || tail == nil {
		t.Fatalf("FindPartialTail = %v, %v", tail, err)
	}
	if tail.End != honest.End || tail.End >= 5*segSize+300000 {
		t.Errorf("tail ends at %s with the metadata rewritten, %s before; want its content's end, before %d", tail.End, honest.End, 5*segSize+300000)
	}
	b := hoardBackup("b", 1, 0x4000100, 0)
	b.StartLSN, b.StartWALSegment = 0x2000028, "000000010000000000000002"
	run := walIdx("000000010000000000000002", "000000010000000000000003", "000000010000000000000004")
	one := wal.History{{Timeline: 1}}
	if _, _, err := checkWALGap(run, tail, b, one, 5*segSize+400000); !errors.Is(err, ErrMissingWAL) {
		t.Errorf("target past the .partial's content: %v, want ErrMissingWAL", err)
	}

	storetest.Tamper(t, a.Store, key)
	tail, err = FindPartialTail(ctx, a, segSize)
	if err != nil || tail == nil || !archive.NotWAL(tail.Damaged) {
		t.Fatalf("tampered .partial: FindPartialTail = %+v, %v; want it Damaged", tail, err)
	}
	if _, _, err := checkWALGap(run, tail, b, one, 0); !errors.Is(err, ErrMissingWAL) {
		t.Errorf("restore to the end of an archive ending in a tampered .partial: %v, want ErrMissingWAL", err)
	}
}
