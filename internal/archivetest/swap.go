package archivetest

import (
	"bytes"
	"context"
	"maps"
	"path"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// SwapChunks plays someone who can write the bucket but holds no key: for
// each chunk object of backup to, it looks among the chunk objects of
// backup from for one of the same stored size and original-file-size
// metadata (what the manifest's result_size and input_size can be
// checked against), the one of the same number first, and copies it,
// bytes and metadata, over to's chunk. It returns the keys written over.
func SwapChunks(t testing.TB, a *archive.Archive, from, to string) []string {
	t.Helper()
	ctx := context.Background()
	list := func(backup string) []storage.Object {
		var out []storage.Object
		dir := a.Layout.ChunkKey(archive.BackupName(backup) + "/")
		if err := a.Store.List(ctx, dir, func(o storage.Object) error {
			st, err := a.Store.Stat(ctx, o.Key)
			out = append(out, st)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	olds := list(from)
	var swapped []string
	for _, n := range list(to) {
		var pick *storage.Object
		for i, o := range olds {
			if o.Size != n.Size || o.Metadata[archive.MetaOriginalFileSize] != n.Metadata[archive.MetaOriginalFileSize] {
				continue
			}
			if pick == nil || chunkNumber(o.Key) == chunkNumber(n.Key) {
				pick = &olds[i]
			}
		}
		if pick == nil {
			continue
		}
		CopyObject(t, a.Store, pick.Key, n.Key)
		swapped = append(swapped, n.Key)
	}
	return swapped
}

// chunkNumber is the number a chunk's name ends with: "00000002" of
// <bb>/<bb>.00000002.pghoard.
func chunkNumber(key string) string {
	return path.Ext(strings.TrimSuffix(key, ".pghoard"))
}

// CopyObject stores the object from, bytes and metadata, under key to.
func CopyObject(t testing.TB, st storage.Store, from, to string) {
	t.Helper()
	PlantCopy(t, st, from, to, func(storage.Metadata) {})
}

// PlantCopy stores a copy of the object from under key to (which may be
// from itself), its metadata changed by edit, as a writer of the bucket
// without keys can.
func PlantCopy(t testing.TB, st storage.Store, from, to string, edit func(storage.Metadata)) {
	t.Helper()
	plant(t, st, st, from, to, edit)
}

// CopyTo copies the objects keys of src, bytes and metadata, to the same
// keys in dst: what someone who can read one bucket and write another
// can do without keys.
func CopyTo(t testing.TB, src, dst storage.Store, keys ...string) {
	t.Helper()
	for _, k := range keys {
		plant(t, src, dst, k, k, func(storage.Metadata) {})
	}
}

// plant stores a copy of src's object from under key to in dst, its
// metadata changed by edit.
func plant(t testing.TB, src, dst storage.Store, from, to string, edit func(storage.Metadata)) {
	t.Helper()
	data, o := storetest.Read(t, src, from)
	md := maps.Clone(o.Metadata)
	edit(md)
	if err := dst.Put(context.Background(), to, bytes.NewReader(data), md); err != nil {
		t.Fatalf("copy %s over %s: %v", from, to, err)
	}
}

// PGHoardShape rewrites the metadata of the backup main object key as
// PGHoard writes it: no segment size, LSNs or timelines, what hoard knows
// of a PGHoard backup only from its segment names. Without keys, as a
// writer of the bucket can.
func PGHoardShape(t testing.TB, st storage.Store, key string) {
	t.Helper()
	PlantCopy(t, st, key, key, func(md storage.Metadata) {
		for _, k := range []string{archive.MetaWALSegmentSize, archive.MetaStartLSN, archive.MetaEndLSN,
			archive.MetaStartTimeline, archive.MetaEndTimeline} {
			delete(md, k)
		}
	})
}

// CopyAll copies every object of src, bytes and metadata, to the same
// keys in dst: another bucket holding what src holds, as archive-copy
// leaves it.
func CopyAll(t testing.TB, src, dst storage.Store) {
	t.Helper()
	var keys []string
	if err := src.List(context.Background(), "", func(o storage.Object) error {
		keys = append(keys, o.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	CopyTo(t, src, dst, keys...)
}
