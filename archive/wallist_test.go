package archive

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// putWALData stores data as the WAL file name of a, with its sha1 hash.
func putWALData(t testing.TB, a *Archive, name string, data []byte) {
	t.Helper()
	sum := sha1.Sum(data)
	md := storage.Metadata{MetaHash: hex.EncodeToString(sum[:]), MetaHashAlgorithm: "sha1"}
	if _, err := a.Codec.Put(context.Background(), a.Store, a.Layout.WALKey(name), bytes.NewReader(data), int64(len(data)), md); err != nil {
		t.Fatal(err)
	}
}

func TestArchive_ListWAL(t *testing.T) {
	ctx := context.Background()
	shared := storage.NewMem()
	a := &Archive{Store: shared, Codec: &Codec{}, Layout: Layout{Prefix: "new"}, Site: "new"}
	old := &Archive{Store: storage.NewMem(), Codec: &Codec{}, Layout: Layout{Prefix: "old"}, Site: "old"}
	a.MovedFrom = []*Archive{old}
	for _, f := range []struct {
		a    *Archive
		name string
	}{
		{old, "000000010000000000000002"}, {old, "000000010000000000000003"}, {old, "00000002.history"},
		{a, "000000010000000000000003"}, {a, "000000020000000000000004.partial"}, {a, "00000002.history"},
		{a, "00000003.history"},
	} {
		putWALData(t, f.a, f.name, []byte(f.name))
	}
	// Not WAL files of the site: a folder below xlog/, another site,
	// names no WAL file has (one as long as S3 allows), which the
	// listing used to hold.
	for _, k := range []string{"new/xlog/sub/000000010000000000000009", "other/xlog/000000010000000000000009",
		"new/xlog/" + strings.Repeat("x", 1000), "new/xlog/000000010000000000000009.tmp", "new/timeline/notes"} {
		if err := shared.Put(ctx, k, strings.NewReader("x"), nil); err != nil {
			t.Fatal(err)
		}
	}

	files, err := a.ListWAL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, f.Archive.Site+":"+f.Name)
		if f.Key != f.Archive.Layout.WALKey(f.Name) || f.Size == 0 {
			t.Errorf("%s: key %s, size %d", f.Name, f.Key, f.Size)
		}
	}
	want := "new:000000010000000000000003 new:000000020000000000000004.partial old:000000010000000000000002 old:000000010000000000000003"
	if strings.Join(got, " ") != want {
		t.Errorf("ListWAL = %v, want %s", got, want)
	}

	// The first site holding a segment wins, as wal-fetch reads it.
	idx := SegmentIndex(files)
	if len(idx) != 2 || idx["000000010000000000000002"].Archive != old || idx["000000010000000000000003"].Archive != a {
		t.Errorf("SegmentIndex = %v", idx)
	}
	// The receiver's hole check: the complete segments of a alone.
	if segs, err := a.ListSegments(ctx); err != nil || strings.Join(segs, " ") != "000000010000000000000003" {
		t.Errorf("ListSegments = %v, %v; want 000000010000000000000003", segs, err)
	}

	h, err := a.ListHistories(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 2 || h[2].Archive != a || h[3].Archive != a || h[3].Name != "00000003.history" {
		t.Errorf("ListHistories = %v", h)
	}
}

func TestWALFile_Check(t *testing.T) {
	ctx := context.Background()
	a := walTestArchive(t, false)
	const name = "000000010000000000000003"
	seg := waltest.Segment(t, name, 1<<20, 1)
	putWALData(t, a, name, seg)
	f := WALFile{Name: name, Key: a.Layout.WALKey(name), Archive: a}
	if err := f.Check(ctx); err != nil {
		t.Fatalf("Check of a sound segment: %v", err)
	}
	t.Run("ErrHash", func(t *testing.T) {
		md := storage.Metadata{MetaHash: strings.Repeat("0", 40), MetaHashAlgorithm: "sha1"}
		if _, err := a.Codec.Put(ctx, a.Store, f.Key, bytes.NewReader(seg), int64(len(seg)), md); err != nil {
			t.Fatal(err)
		}
		if err := f.Check(ctx); err == nil || !strings.Contains(err.Error(), "damaged object") {
			t.Fatalf("Check = %v, want a hash mismatch", err)
		}
	})
	t.Run("ErrUnknownHash", func(t *testing.T) {
		md := storage.Metadata{MetaHash: "00", MetaHashAlgorithm: "crc"}
		if _, err := a.Codec.Put(ctx, a.Store, f.Key, bytes.NewReader(seg), int64(len(seg)), md); err != nil {
			t.Fatal(err)
		}
		if err := f.Check(ctx); err == nil || !strings.Contains(err.Error(), "crc") {
			t.Fatalf("Check = %v, want the unknown algorithm named", err)
		}
	})
	t.Run("ErrMisnamed", func(t *testing.T) {
		other := WALFile{Name: "000000010000000000000004", Key: a.Layout.WALKey("000000010000000000000004"), Archive: a}
		putWALData(t, a, other.Name, seg)
		if err := other.Check(ctx); !errors.Is(err, wal.ErrBadPageHeader) {
			t.Fatalf("Check = %v, want ErrBadPageHeader", err)
		}
	})
}

func TestWALFile_ReadHistory(t *testing.T) {
	ctx := context.Background()
	a := walTestArchive(t, true)
	putWALData(t, a, "00000002.history", []byte("1\t0/3000160\tno recovery target specified\n"))
	putWALData(t, a, "00000003.history", []byte("1\t0/3000160\tx\n4\t0/5000000\ty\n"))
	h, err := WALFile{Name: "00000002.history", Key: a.Layout.WALKey("00000002.history"), Archive: a}.ReadHistory(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 2 || h.Timeline() != 2 || h[1].Begin != 0x3000160 {
		t.Errorf("ReadHistory = %v", h)
	}
	if _, err := (WALFile{Name: "00000003.history", Key: a.Layout.WALKey("00000003.history"), Archive: a}).ReadHistory(ctx, 0); err == nil {
		t.Error("ReadHistory accepted an ancestor above the timeline")
	}
}
