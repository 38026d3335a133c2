package archive

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/wal"
)

func TestArchive_PutPartialWAL(t *testing.T) {
	ctx := context.Background()
	for _, encrypted := range []bool{false, true} {
		a := walTestArchive(t, encrypted)
		dir := t.TempDir()
		name := "000000010000000000000005"
		full := waltest.Segment(t, name, 1<<20, 5)

		// The growing segment: a short copy, then a longer one padded with
		// zeros to the segment size, as walstream offers it.
		short := append(append([]byte(nil), full[:300000]...), make([]byte, len(full)-300000)...)
		longer := append(append([]byte(nil), full[:700000]...), make([]byte, len(full)-700000)...)
		for i, data := range [][]byte{short, longer} {
			res, err := a.PutPartialWAL(ctx, writeWALFile(t, dir, name+".partial", data), PushOptions{})
			if err != nil {
				t.Fatalf("copy %d: %v", i, err)
			}
			if !res.Uploaded || res.Key != "site/xlog/"+name+".partial" || res.SegmentSize != 1<<20 {
				t.Fatalf("copy %d: result %+v", i, res)
			}
			got, md := storedPlain(t, a, res.Key)
			if !bytes.Equal(got, data) {
				t.Fatalf("encrypted=%v copy %d: stored .partial is not the latest copy", encrypted, i)
			}
			if md[MetaHash] != sha1Hex(data) || md[MetaHashAlgorithm] != "sha1" {
				t.Errorf("copy %d: metadata %v", i, md)
			}
		}

		// The same bytes again: nothing is written.
		res, err := a.PutPartialWAL(ctx, writeWALFile(t, dir, name+".partial", longer), PushOptions{})
		if err != nil || res.Uploaded {
			t.Fatalf("unchanged partial: uploaded=%v err=%v", res.Uploaded, err)
		}
	}
}

func TestArchive_PutPartialWAL_ErrRefused(t *testing.T) {
	ctx := context.Background()
	a := walTestArchive(t, false)
	dir := t.TempDir()
	name := "000000010000000000000005"
	seg := waltest.Segment(t, name, 1<<20, 5)

	// A complete segment name is refused: complete segments are never
	// replaced.
	if _, err := a.PutPartialWAL(ctx, writeWALFile(t, dir, name, seg), PushOptions{}); err == nil {
		t.Error("a complete segment was accepted")
	}
	// A .partial whose header belongs to another segment.
	other := "000000010000000000000006.partial"
	if _, err := a.PutPartialWAL(ctx, writeWALFile(t, dir, other, seg), PushOptions{}); !errors.Is(err, wal.ErrBadPageHeader) {
		t.Errorf("misnamed partial: err %v, want wal.ErrBadPageHeader", err)
	}
	if _, err := a.Store.Stat(ctx, "site/xlog/"+other); err == nil {
		t.Error("a refused partial was stored")
	}
}
