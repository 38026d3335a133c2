package basebackup

import (
	"archive/tar"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/benchdata"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// TestChunkCodec: a local-tar chunk of random bytes (a table of random or
// already compressed values) is compressed at zstd level 1 when the
// backup's level is 0 or 3; a chunk of text rows keeps the backup's
// level, as does one of text and random bytes (whose samples come from
// both files, or both halves of one), one too small to sample, one whose
// file is gone, one at zstd level 6 and one with lz4. Where level 1 is
// chosen, the chunk's files as a whole are stored in at most 1 % more
// bytes at level 1 than at level 3.
func TestChunkCodec(t *testing.T) {
	dir := t.TempDir()
	random := make([]byte, 8<<20)
	rand.New(rand.NewSource(1)).Read(random)
	files := map[string][]byte{
		"random": random, "text": benchdata.TextRows(8 << 20),
		"small": random[:1<<20], "textthenrandom": append(benchdata.TextRows(4<<20), random[:4<<20]...),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r := &root{dir: dir, prefix: "pgdata/", main: true}
	if err := r.open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeRoots([]*root{r}) })
	entries := []entry{{root: r, rel: "base", typ: tar.TypeDir}}
	index := map[string]int{}
	for _, name := range []string{"random", "text", "small", "textthenrandom", "gone"} {
		index[name] = len(entries)
		size := int64(8 << 20)
		if b, ok := files[name]; ok {
			size = int64(len(b))
		}
		entries = append(entries, entry{root: r, rel: name, typ: tar.TypeReg, size: size})
	}
	plan := func(names ...string) chunkPlan {
		p := chunkPlan{n: 1, entries: []int{0}}
		for _, n := range names {
			p.entries = append(p.entries, index[n])
		}
		return p
	}
	cases := []struct {
		name      string
		algorithm string
		level     int
		plan      chunkPlan
		want      int
	}{
		{"random, level 0", compress.Zstd, 0, plan("random"), 1},
		{"random, level 3", compress.Zstd, 3, plan("random"), 1},
		{"small and random", compress.Zstd, 0, plan("small", "random"), 1},
		{"text, level 0", compress.Zstd, 0, plan("text"), 0},
		{"text, level 3", compress.Zstd, 3, plan("text"), 3},
		// Level 1 stores these 1.3 % larger: the samples see the text.
		{"text then random bytes", compress.Zstd, 0, plan("textthenrandom"), 0},
		{"random then text", compress.Zstd, 0, plan("random", "text"), 0},
		{"too small to sample", compress.Zstd, 0, plan("small"), 0},
		{"gone", compress.Zstd, 0, plan("gone"), 0},
		{"random, level 6", compress.Zstd, 6, plan("random"), 6},
		{"random, lz4", compress.LZ4, 0, plan("random"), 0},
	}
	for _, c := range cases {
		codec := &archive.Codec{Compression: c.algorithm, Level: c.level}
		l := &localBackup{o: Options{Archive: &archive.Archive{Codec: codec}}, entries: entries}
		w := &worker{l: l, buf: make([]byte, readBufferSize)}
		got, err := w.chunkCodec(c.plan)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got.Level != c.want || got.Compression != c.algorithm {
			t.Errorf("%s: chunk compressed with %s level %d, want level %d", c.name, got.Compression, got.Level, c.want)
		}
		if codec.Level != c.level {
			t.Fatalf("%s: the backup's codec changed to level %d", c.name, codec.Level)
		}
		if got.Level == 1 {
			var all []byte
			for _, i := range c.plan.entries[1:] {
				all = append(all, files[entries[i].rel]...)
			}
			if fast, dflt := zstdStored(t, all, 1), zstdStored(t, all, 3); float64(fast) > 1.01*float64(dflt) {
				t.Errorf("%s: level 1 stores the chunk's files in %d bytes, level 3 in %d", c.name, fast, dflt)
			}
		}
	}
}

// zstdStored returns the bytes zstd at level stores p in.
func zstdStored(t *testing.T, p []byte, level int) int64 {
	t.Helper()
	var n storage.CountingWriter
	n.W = io.Discard
	w, err := compress.NewWriterOptions(&n, compress.Zstd, compress.Options{Level: level, NoChecksum: true})
	if err != nil {
		t.Fatal(err)
	}
	testio.WriteClose(t, w, p)
	return n.N
}
