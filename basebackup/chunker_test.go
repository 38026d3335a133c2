package basebackup

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

const testBackup = "2026-01-01_00-00_0"

// member is one entry of a synthetic server tar.
type tarEntry struct {
	name string
	typ  byte
	size int
	link string
}

// fileData returns a file's deterministic content: half zero pages, half
// pseudo-random bytes, like a table's pages.
func fileData(name string, size int) []byte {
	b := make([]byte, size)
	seed := int64(0)
	for _, c := range name {
		seed = seed*31 + int64(c)
	}
	rnd := rand.New(rand.NewSource(seed))
	for off := 0; off < size; off += 8192 {
		if (off/8192)%2 == 1 {
			rnd.Read(b[off:min(off+8192, size)])
		}
	}
	return b
}

// serverTar writes entries as the server would send a tablespace's tar.
func serverTar(tb testing.TB, entries []tarEntry) []byte {
	tb.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o600, ModTime: mtime, Linkname: e.link}
		switch e.typ {
		case tar.TypeDir:
			h.Mode = 0o700
			h.Name += "/"
		case tar.TypeReg:
			h.Size = int64(e.size)
		}
		if err := tw.WriteHeader(h); err != nil {
			tb.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write(fileData(e.name, e.size)); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// mainEntries is a small data directory as the server sends it:
// backup_label first, pg_control last.
func mainEntries(files, size int) []tarEntry {
	e := []tarEntry{
		{name: "backup_label", typ: tar.TypeReg, size: 200},
		{name: "tablespace_map", typ: tar.TypeReg, size: 0},
		{name: "PG_VERSION", typ: tar.TypeReg, size: 3},
		{name: "postmaster.opts", typ: tar.TypeReg, size: 10},
		{name: "pg_wal", typ: tar.TypeDir},
		{name: "pg_wal/000000010000000000000001", typ: tar.TypeReg, size: 1000},
		{name: "pg_tblspc", typ: tar.TypeDir},
		{name: "pg_tblspc/16384", typ: tar.TypeSymlink, link: "/somewhere"},
		{name: "conf_link", typ: tar.TypeSymlink, link: "/etc/postgresql.conf"},
		{name: "fifo", typ: tar.TypeFifo},
		{name: "base", typ: tar.TypeDir},
		{name: "base/1", typ: tar.TypeDir},
		{name: "base/1/empty", typ: tar.TypeDir},
	}
	for i := range files {
		e = append(e, tarEntry{name: fmt.Sprintf("base/1/%d", 16384+i), typ: tar.TypeReg, size: size + i*512})
	}
	e = append(e,
		tarEntry{name: "base/1/big", typ: tar.TypeReg, size: 3 * size * 4},
		tarEntry{name: "base/1/x.tmp", typ: tar.TypeReg, size: 5},
		tarEntry{name: "global", typ: tar.TypeDir},
		tarEntry{name: "global/1262", typ: tar.TypeReg, size: 8192},
		tarEntry{name: "global/pg_control", typ: tar.TypeReg, size: 8192},
	)
	return e
}

// finishRun closes the run's last chunk and waits for its uploads.
func finishRun(t testing.TB, r *run, g *errgroup.Group) {
	t.Helper()
	if err := r.ck.finish(); err != nil {
		t.Fatal(err)
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

// finishChunks finishes the run and returns its chunks as the manifest
// lists them.
func finishChunks(t testing.TB, r *run, g *errgroup.Group) []archive.ManifestChunk {
	t.Helper()
	finishRun(t, r, g)
	chunks, err := r.ck.manifestChunks()
	if err != nil {
		t.Fatal(err)
	}
	// The names, as writeManifest reads them from their spool.
	list := r.ck.fileLister()
	for i := range chunks {
		err := list(i, func(name string) error {
			chunks[i].Files = append(chunks[i].Files, name)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return chunks
}

// newTestRun returns a run whose chunker stores into st.
func newTestRun(ctx context.Context, st storage.Store, codec *archive.Codec, limit int64, parallel int) (*run, *errgroup.Group) {
	a := &archive.Archive{Store: st, Codec: codec, Layout: archive.Layout{Prefix: "site"}, Site: "site"}
	g, gctx := errgroup.WithContext(ctx)
	r := &run{o: Options{Archive: a}}
	r.ck = newChunker(gctx, g, a, testBackup, limit, parallel, 1, "")
	return r, g
}

// chunkMember is a member read back from a stored chunk.
type chunkMember struct {
	name string
	typ  byte
	sum  [32]byte
	mode int64
	link string
}

// readChunk decodes a stored chunk and checks that it extracts on its own:
// every member's parent directory precedes it in the same chunk.
func readChunk(t testing.TB, a *archive.Archive, key string) ([]chunkMember, int64) {
	t.Helper()
	data, _ := archivetest.Decode(t, a.Codec, a.Store, key)
	seen := map[string]bool{}
	var out []chunkMember
	testio.EachTarMember(t, "chunk "+key, bytes.NewReader(data), func(h *tar.Header, r io.Reader) {
		name := strings.TrimSuffix(h.Name, "/")
		if !strings.HasPrefix(name, "pgdata/") && !strings.HasPrefix(name, "tablespaces/") {
			t.Errorf("chunk %s: member %q outside pgdata/ and tablespaces/", key, h.Name)
		}
		if p := path.Dir(name); !isRoot(p) && !seen[p] {
			t.Errorf("chunk %s: %s comes without its directory %s", key, name, p)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeDir {
			seen[name] = true
		}
		out = append(out, chunkMember{name: name, typ: h.Typeflag, sum: sha256.Sum256(b), mode: h.Mode, link: h.Linkname})
	})
	return out, int64(len(data))
}

func TestChunker_OK(t *testing.T) {
	ctx := context.Background()
	st := storage.NewMem()
	codec := &archive.Codec{Compression: compress.Snappy}
	const limit = 64 << 10
	r, g := newTestRun(ctx, st, codec, limit, 2)
	entries := mainEntries(40, 9000)
	if err := r.archive(bytes.NewReader(serverTar(t, entries)), "base.tar", true, "pgdata/"); err != nil {
		t.Fatal(err)
	}
	spc := []tarEntry{
		{name: "PG_15_202209061", typ: tar.TypeDir},
		{name: "PG_15_202209061/5", typ: tar.TypeDir},
		{name: "PG_15_202209061/5/16390", typ: tar.TypeReg, size: 50000},
	}
	if err := r.archive(bytes.NewReader(serverTar(t, spc)), "16384.tar", false, "tablespaces/ts1/"); err != nil {
		t.Fatal(err)
	}
	chunks := finishChunks(t, r, g)
	if len(chunks) < 5 {
		t.Fatalf("%d chunks, want many", len(chunks))
	}
	if r.pgControl == nil || len(r.pgControl.data) != 8192 || r.backupLabel == nil || r.tablespaceMap == nil {
		t.Fatalf("control members not kept: %+v %+v %+v", r.pgControl, r.backupLabel, r.tablespaceMap)
	}

	files := map[string][32]byte{}
	for i, c := range chunks {
		if got, want := c.ChunkFilename, archive.ChunkFilename(testBackup, i+1); got != want {
			t.Errorf("chunk %d named %s, want %s", i, got, want)
		}
		members, size := readChunk(t, r.o.Archive, r.o.Archive.Layout.ChunkKey(c.ChunkFilename))
		if size != c.InputSize {
			t.Errorf("chunk %s decodes to %d bytes, manifest says %d", c.ChunkFilename, size, c.InputSize)
		}
		if i < len(chunks)-1 && c.InputSize < limit/minFillDivisor {
			t.Errorf("chunk %s of %d bytes cut below a fifth of %d", c.ChunkFilename, c.InputSize, limit)
		}
		var names []string
		regular := 0
		for _, m := range members {
			names = append(names, m.name)
			if m.typ == tar.TypeReg || m.typ == tar.TypeSymlink {
				regular++
				if _, dup := files[m.name]; dup {
					t.Errorf("%s stored twice", m.name)
				}
				files[m.name] = m.sum
			}
		}
		if c.InputSize > limit && regular != 1 {
			t.Errorf("chunk %s of %d bytes is over the limit with %d files", c.ChunkFilename, c.InputSize, regular)
		}
		if fmt.Sprint(names) != fmt.Sprint(c.Files) {
			t.Errorf("chunk %s files %v, manifest %v", c.ChunkFilename, names, c.Files)
		}
	}
	want := map[string][32]byte{}
	for _, e := range entries {
		if (e.typ == tar.TypeReg || e.typ == tar.TypeSymlink) && place(e.name, true) == placeChunk {
			want["pgdata/"+e.name] = sha256.Sum256(fileData(e.name, e.size))
		}
	}
	want["tablespaces/ts1/PG_15_202209061/5/16390"] = sha256.Sum256(fileData("PG_15_202209061/5/16390", 50000))
	for name, sum := range want {
		got, ok := files[name]
		switch {
		case !ok:
			t.Errorf("%s missing from the chunks", name)
		case got != sum:
			t.Errorf("%s: content differs", name)
		}
		delete(files, name)
	}
	for name := range files {
		t.Errorf("%s should not be in a chunk", name)
	}
}

// failingStore fails the Put of one key after reading some of it.
type failingStore struct {
	storage.Store
	fail string
}

var errInjected = errors.New("injected upload failure")

func (s *failingStore) Put(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	if key == s.fail {
		_, _ = io.CopyN(io.Discard, r, 1000)
		return errInjected
	}
	return s.Store.Put(ctx, key, r, md)
}

// TestChunker_ErrUpload: a chunk whose store fails ends the backup with
// the store's error and nothing stored, also with lz4 on two workers (the
// compress stage of BASE_BACKUP's chunks), which must not hang.
func TestChunker_ErrUpload(t *testing.T) {
	for _, tc := range []struct {
		name  string
		codec archive.Codec
		conc  int
	}{{"none", archive.Codec{}, 1}, {"lz4-2", archive.Codec{Compression: compress.LZ4}, 2}} {
		t.Run(tc.name, func(t *testing.T) { chunkerErrUpload(t, &tc.codec, tc.conc) })
	}
}

func chunkerErrUpload(t *testing.T, codec *archive.Codec, conc int) {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	st := &failingStore{Store: storage.NewMem()}
	r, g := newTestRun(ctx, st, codec, 64<<10, 2)
	r.ck.conc = conc
	st.fail = r.o.Archive.Layout.ChunkKey(archive.ChunkFilename(testBackup, 2))
	err := r.archive(bytes.NewReader(serverTar(t, mainEntries(40, 9000))), "base.tar", true, "pgdata/")
	if err == nil {
		err = r.ck.finish()
	}
	if err == nil {
		// The chunk's writes may all fit in its upload's buffers before
		// the store fails it: then only the background close of the
		// finished chunk reports the failure, in the uploads' group,
		// which the backup waits for before it stores its control object
		// (stream.go). Nothing is left uploading to wait for.
		err = g.Wait()
	}
	if err == nil {
		t.Fatal("archive succeeded with a failing upload")
	}
	r.ck.abort(err)
	cancel(err)
	// The store's failure is the story: the chunk's writes return it,
	// or the background close of a finished chunk does.
	if werr := g.Wait(); !errors.Is(err, errInjected) && !errors.Is(werr, errInjected) {
		t.Errorf("archive ended with %v and the uploads with %v, want the injected error", err, werr)
	}
	if err := deleteChunks(ctx, r.o, r.ck.keys()); err != nil {
		t.Fatal(err)
	}
	noObjectsLeft(t, st, "a chunker whose upload failed")
}

func TestChunker_ErrUnsafeName(t *testing.T) {
	r, g := newTestRun(context.Background(), storage.NewMem(), &archive.Codec{}, 1<<20, 2)
	err := r.archive(bytes.NewReader(serverTar(t, []tarEntry{{name: "../evil", typ: tar.TypeReg, size: 1}})), "base.tar", true, "pgdata/")
	if err == nil || !strings.Contains(err.Error(), "unsafe") {
		t.Errorf("archive = %v, want an unsafe name error", err)
	}
	r.ck.abort(err)
	_ = g.Wait()
}

// BenchmarkChunker measures re-chunking plus encoding (snappy) into an
// in-memory store, in MB/s of server tar.
func BenchmarkChunker(b *testing.B) {
	for _, alg := range []string{compress.Snappy, compress.Zstd} {
		b.Run(alg, func(b *testing.B) {
			stream := serverTar(b, mainEntries(256, 256<<10))
			b.SetBytes(int64(len(stream)))
			b.ResetTimer()
			for range b.N {
				r, g := newTestRun(context.Background(), storage.NewMem(), &archive.Codec{Compression: alg}, 8<<20, 2)
				if err := r.archive(bytes.NewReader(stream), "base.tar", true, "pgdata/"); err != nil {
					b.Fatal(err)
				}
				finishRun(b, r, g)
			}
		})
	}
}

// boundStore records, for each Put, the bound storage.WithMaxSize gave it
// and the bytes it read.
type boundStore struct {
	storage.Store
	mu     sync.Mutex
	bounds map[string][2]int64 // key: bound, bytes read
}

func (s *boundStore) Put(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	cr := &storage.CountingReader{R: r}
	err := s.Store.Put(ctx, key, cr, md)
	s.mu.Lock()
	s.bounds[key] = [2]int64{storage.MaxSize(ctx), cr.N}
	s.mu.Unlock()
	return err
}

// Every chunk's upload is told a bound on its size (so that S3 and Azure
// choose small parts) and stays within it, even when a member larger than
// the chunk size follows a chunk less than a fifth full: that chunk is
// closed, and the member gets a chunk, and a bound, of its own.
func TestChunker_MaxSize(t *testing.T) {
	ctx := context.Background()
	st := &boundStore{Store: storage.NewMem(), bounds: map[string][2]int64{}}
	codec := &archive.Codec{Compression: compress.None}
	const limit = 64 << 10
	r, g := newTestRun(ctx, st, codec, limit, 2)
	entries := []tarEntry{
		{name: "PG_VERSION", typ: tar.TypeReg, size: 3},
		{name: "base", typ: tar.TypeDir},
		{name: "base/1", typ: tar.TypeDir},
		{name: "base/1/small", typ: tar.TypeReg, size: 1000},
		{name: "base/1/huge", typ: tar.TypeReg, size: 5 * limit},
		{name: "base/1/after", typ: tar.TypeReg, size: 40000},
		{name: "base/1/after2", typ: tar.TypeReg, size: 40000},
		{name: "global", typ: tar.TypeDir},
		{name: "global/pg_control", typ: tar.TypeReg, size: 8192},
	}
	if err := r.archive(bytes.NewReader(serverTar(t, entries)), "base.tar", true, "pgdata/"); err != nil {
		t.Fatal(err)
	}
	chunks := finishChunks(t, r, g)
	if len(chunks) < 3 {
		t.Fatalf("%d chunks, want the huge file in one of its own", len(chunks))
	}
	for _, c := range chunks {
		key := r.o.Archive.Layout.ChunkKey(c.ChunkFilename)
		b, ok := st.bounds[key]
		switch {
		case !ok:
			t.Errorf("chunk %s: no Put", c.ChunkFilename)
		case b[0] < 0:
			t.Errorf("chunk %s: Put without a bound", c.ChunkFilename)
		case b[1] > b[0]:
			t.Errorf("chunk %s: Put read %d bytes, over its bound %d", c.ChunkFilename, b[1], b[0])
		}
		if c.InputSize > limit && len(c.Files) > 3 { // pgdata/base, pgdata/base/1, the file
			t.Errorf("chunk %s of %d bytes holds %v", c.ChunkFilename, c.InputSize, c.Files)
		}
	}
}

// TestChunker_NamesSpoolChanged checks that the chunks' lists of names,
// spooled on the local disk while the backup runs, fail the manifest, as
// a permanent error naming the directory, when the disk changed them
// (a byte of a name, a name's length, the end cut off) instead of
// putting other names into the control object.
func TestChunker_NamesSpoolChanged(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(t *testing.T, f *os.File, size int64)
	}{
		{"Byte", func(t *testing.T, f *os.File, size int64) {
			if _, err := f.WriteAt([]byte{'#'}, size/2); err != nil {
				t.Fatal(err)
			}
		}},
		{"Length", func(t *testing.T, f *os.File, size int64) {
			if _, err := f.WriteAt([]byte{0xff, 0xff, 0xff, 0x7f}, 0); err != nil {
				t.Fatal(err)
			}
		}},
		{"Truncated", func(t *testing.T, f *os.File, size int64) {
			if err := f.Truncate(size - 3); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			r, g := newTestRun(ctx, storage.NewMem(), &archive.Codec{Compression: compress.Snappy}, 64<<10, 2)
			r.ck.tempDir = t.TempDir()
			defer r.ck.close()
			if err := r.archive(bytes.NewReader(serverTar(t, mainEntries(40, 9000))), "base.tar", true, "pgdata/"); err != nil {
				t.Fatal(err)
			}
			finishRun(t, r, g)
			chunks, err := r.ck.manifestChunks()
			if err != nil {
				t.Fatal(err)
			}
			m := &archive.Manifest{Chunks: chunks}
			// Unchanged, the names read back.
			var js bytes.Buffer
			if err := writeManifest(&js, m, r.ck.fileLister()); err != nil {
				t.Fatal(err)
			}
			if n := bytes.Count(js.Bytes(), []byte(`"pgdata/base/`)); n < 40 {
				t.Fatalf("manifest names %d members of pgdata/base, want over 40:\n%s", n, js.Bytes())
			}
			c.change(t, r.ck.names.f, r.ck.names.size())
			err = writeManifest(io.Discard, m, r.ck.fileLister())
			if !errors.Is(err, storage.ErrPermanent) || !strings.Contains(err.Error(), r.ck.tempDir) {
				t.Fatalf("manifest of a changed spool of names: %v, want a permanent error naming %s", err, r.ck.tempDir)
			}
			t.Log(err)
		})
	}
}
