package restore

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/storage"
)

// tarEntry is one member of a test tar.
type tarEntry struct {
	name, body, link string
	typ              byte
	pax              map[string]string // PAX records
}

func makeTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o600, Size: int64(len(e.body)), Linkname: e.link, PAXRecords: e.pax}
		if e.typ == tar.TypeXGlobalHeader {
			h = &tar.Header{Typeflag: e.typ, PAXRecords: e.pax}
		}
		if e.typ == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if h.Typeflag == tar.TypeDir {
			h.Mode = 0o700
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// extractAll runs the extractor over data as one chunk with no size limit.
func extractAll(t *testing.T, ex *extractor, data []byte) error {
	t.Helper()
	return ex.extract(bytes.NewReader(data), func() int64 { return 1 << 40 }, make([]byte, 4096), nil)
}

func testExtractor(t *testing.T, root string) *extractor {
	t.Helper()
	pg, spc := filepath.Join(root, "pg"), filepath.Join(root, "spc")
	for _, d := range []string{pg, spc} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	ex, err := newExtractor(pg, map[string]string{"ts1": spc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ex.close)
	return ex
}

func TestExtractor_OK(t *testing.T) {
	root := t.TempDir()
	ex := testExtractor(t, root)
	data := makeTar(t,
		tarEntry{name: ".pghoard_tar_metadata.json", body: "{}"},
		tarEntry{name: "pgdata", typ: tar.TypeDir},
		tarEntry{name: "pgdata/base", typ: tar.TypeDir},
		tarEntry{name: "pgdata/base/1/1259", body: "heap"},
		tarEntry{name: "pgdata/global/pg_control", body: "not from a chunk"},
		tarEntry{name: "pgdata/backup_label", body: "not from a chunk"},
		tarEntry{name: "tablespaces/ts1", typ: tar.TypeDir},
		tarEntry{name: "tablespaces/ts1/PG_15_1/5/16384", body: "spc"},
		tarEntry{name: "pax-global", typ: tar.TypeXGlobalHeader, pax: map[string]string{"comment": "x"}},
	)
	if err := extractAll(t, ex, data); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		filepath.Join(root, "pg", "base/1/1259"):      "heap",
		filepath.Join(root, "spc", "PG_15_1/5/16384"): "spc",
	} {
		got, err := os.ReadFile(name)
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	for _, name := range []string{"global/pg_control", "backup_label", ".pghoard_tar_metadata.json"} {
		if _, err := os.Lstat(filepath.Join(root, "pg", name)); err == nil {
			t.Errorf("%s was extracted from a chunk", name)
		}
	}
}

// TestExtractor_ErrUnsafeMember: each member restore refuses is refused
// with an error naming it, and nothing is created outside the target.
func TestExtractor_ErrUnsafeMember(t *testing.T) {
	tests := []struct {
		name    string
		entries []tarEntry
		member  string // the member the error must name
	}{
		{"Absolute", []tarEntry{{name: "/etc/passwd", body: "x"}}, "/etc/passwd"},
		{"DotDot", []tarEntry{{name: "pgdata/../../escape", body: "x"}}, "pgdata/../../escape"},
		{"DotDotTablespace", []tarEntry{{name: "tablespaces/ts1/../../escape", body: "x"}}, "tablespaces/ts1/../../escape"},
		{"OutsidePGData", []tarEntry{{name: "etc/passwd", body: "x"}}, "etc/passwd"},
		{"UnknownTablespace", []tarEntry{{name: "tablespaces/other/x", body: "x"}}, "tablespaces/other/x"},
		{"Symlink", []tarEntry{{name: "pgdata/evil", typ: tar.TypeSymlink, link: "/tmp"}}, "pgdata/evil"},
		{"SymlinkInnerFirst", []tarEntry{
			{name: "pgdata/aa/bb", typ: tar.TypeSymlink, link: "../../escape"},
			{name: "pgdata/aa", typ: tar.TypeSymlink, link: "/tmp"},
		}, "pgdata/aa/bb"},
		{"SymlinkPGWal", []tarEntry{{name: "pgdata/pg_wal", typ: tar.TypeSymlink, link: "/elsewhere/wal"}}, "pgdata/pg_wal"},
		{"HardLink", []tarEntry{{name: "pgdata/x", typ: tar.TypeLink, link: "/etc/passwd"}}, "pgdata/x"},
		{"HardLinkInside", []tarEntry{{name: "pgdata/a", body: "a"}, {name: "pgdata/b", typ: tar.TypeLink, link: "pgdata/a"}}, "pgdata/b"},
		{"CharDevice", []tarEntry{{name: "pgdata/null", typ: tar.TypeChar}}, "pgdata/null"},
		{"BlockDevice", []tarEntry{{name: "pgdata/sda", typ: tar.TypeBlock}}, "pgdata/sda"},
		{"FIFO", []tarEntry{{name: "pgdata/fifo", typ: tar.TypeFifo}}, "pgdata/fifo"},
		{"Duplicate", []tarEntry{{name: "pgdata/PG_VERSION", body: "15\n"}, {name: "pgdata/PG_VERSION", body: "16\n"}}, "pgdata/PG_VERSION"},
		{"FileOverDirectory", []tarEntry{{name: "pgdata/base", typ: tar.TypeDir}, {name: "pgdata/base", body: "x"}}, "pgdata/base"},
		{"TablespaceLink", []tarEntry{{name: "pgdata/pg_tblspc/16384", typ: tar.TypeDir}}, "pgdata/pg_tblspc/16384"},
		{"RootNotDirectory", []tarEntry{{name: "pgdata", body: "x"}}, "pgdata"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			ex := testExtractor(t, root)
			err := extractAll(t, ex, makeTar(t, tt.entries...))
			if !errors.Is(err, ErrUnsafeMember) || !strings.Contains(err.Error(), "member \""+tt.member+"\"") {
				t.Fatalf("extract = %v, want ErrUnsafeMember naming member %q", err, tt.member)
			}
			ents, _ := os.ReadDir(root)
			if len(ents) != 2 {
				t.Errorf("entries outside the target: %v", ents)
			}
			if _, err := os.Lstat(filepath.Join(root, "pg", "evil")); err == nil {
				t.Error("a link was created")
			}
		})
	}
}

// TestExtractor_ErrSparse: GNU sparse members, in the old 'S' form and
// in the PAX form archive/tar expands into holes, are refused before a
// byte is written.
func TestExtractor_ErrSparse(t *testing.T) {
	for _, tt := range []struct {
		name string
		data []byte
	}{
		{"GNU", gnuSparseTar(t, "pgdata/base/1/big", 1<<30)},
		{"PAX", paxSparseTar(t, "pgdata/base/1/big", 1<<30)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			ex := testExtractor(t, root)
			err := extractAll(t, ex, tt.data)
			if !errors.Is(err, ErrUnsafeMember) || !strings.Contains(err.Error(), "sparse") {
				t.Fatalf("extract = %v, want ErrUnsafeMember for a sparse file", err)
			}
			if _, err := os.Lstat(filepath.Join(root, "pg", "base", "1", "big")); err == nil {
				t.Error("the sparse member was written")
			}
		})
	}
}

// TestExtractor_ErrDeclaredSize: a member that declares more bytes than
// the chunk has left of its input_size is refused at its header.
func TestExtractor_ErrDeclaredSize(t *testing.T) {
	root := t.TempDir()
	ex := testExtractor(t, root)
	data := makeTar(t, tarEntry{name: "pgdata/big", body: strings.Repeat("x", 4096)})
	err := ex.extract(bytes.NewReader(data), func() int64 { return 1000 }, make([]byte, 4096), nil)
	if !errors.Is(err, ErrUnsafeMember) || !strings.Contains(err.Error(), `"pgdata/big" declares 4096 bytes`) {
		t.Fatalf("extract = %v, want the member's declared size refused", err)
	}
	if _, err := os.Lstat(filepath.Join(root, "pg", "big")); err == nil {
		t.Error("the member was written")
	}
}

// TestExtractor_NoLinkFollowed: links placed in the target by someone
// else (restore makes none) are not followed out of it: a file member at a
// link's path is refused, and a member under a linked directory is not
// written through it.
func TestExtractor_NoLinkFollowed(t *testing.T) {
	root := t.TempDir()
	ex := testExtractor(t, root)
	outside := filepath.Join(root, "outside")
	if err := os.Mkdir(outside, 0o700); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"file": victim, "dir": outside} {
		if err := os.Symlink(target, filepath.Join(root, "pg", name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range []tarEntry{{name: "pgdata/file", body: "x"}, {name: "pgdata/dir/new", body: "x"}, {name: "pgdata/dir/victim", body: "x"}} {
		if err := extractAll(t, ex, makeTar(t, e)); err == nil {
			t.Errorf("%s: written through a link", e.name)
		}
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "keep" {
		t.Errorf("victim = %q, %v", b, err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 1 {
		t.Errorf("outside holds %v", ents)
	}
}

// rawHeader builds a 512-byte tar header by hand, for the members
// archive/tar refuses to write (sparse files). ustar selects the POSIX
// magic, else GNU's; patch may set more fields before the checksum.
func rawHeader(name string, typ byte, size int64, ustar bool, patch func(h []byte)) []byte {
	h := make([]byte, 512)
	copy(h[0:100], name)
	octal(h[100:108], 0o600)
	octal(h[108:116], 0)
	octal(h[116:124], 0)
	octal(h[124:136], size)
	octal(h[136:148], 0)
	h[156] = typ
	if ustar {
		copy(h[257:265], "ustar\x0000")
	} else {
		copy(h[257:265], "ustar  \x00")
	}
	if patch != nil {
		patch(h)
	}
	copy(h[148:156], "        ")
	var sum int64
	for _, c := range h {
		sum += int64(c)
	}
	octal(h[148:155], sum)
	h[155] = ' '
	return h
}

// octal writes v as a NUL-terminated octal field filling dst.
func octal(dst []byte, v int64) {
	s := []byte(strings.Repeat("0", len(dst)-1))
	for i := len(s) - 1; i >= 0 && v > 0; i-- {
		s[i] = byte('0' + v%8)
		v /= 8
	}
	copy(dst, append(s, 0))
}

// block pads data to whole 512-byte blocks.
func block(data []byte) []byte {
	return append(data, make([]byte, (512-len(data)%512)%512)...)
}

// gnuSparseTar builds a tar with one GNU sparse ('S') member of realsize
// bytes stored as a single byte at its end.
func gnuSparseTar(t testing.TB, name string, realsize int64) []byte {
	t.Helper()
	h := rawHeader(name, 'S', 1, false, func(h []byte) {
		// One sparse entry at 386: offset realsize-1, 1 byte; realsize at 483.
		octal(h[386:398], realsize-1)
		octal(h[398:410], 1)
		octal(h[483:495], realsize)
	})
	data := append(h, block([]byte("x"))...)
	return append(data, make([]byte, 1024)...)
}

// paxSparseTar builds a tar with one member in GNU's PAX sparse format
// 0.1 (GNU.sparse.* records), realsize bytes stored as one byte at its end.
func paxSparseTar(t testing.TB, name string, realsize int64) []byte {
	t.Helper()
	var recs strings.Builder
	for _, kv := range [][2]string{
		{"GNU.sparse.numblocks", "1"},
		{"GNU.sparse.map", fmt.Sprintf("%d,1", realsize-1)},
		{"GNU.sparse.name", name},
		{"GNU.sparse.size", fmt.Sprint(realsize)},
	} {
		rec := " " + kv[0] + "=" + kv[1] + "\n"
		n := len(rec) + 1
		for len(fmt.Sprint(n))+len(rec) != n {
			n++
		}
		recs.WriteString(fmt.Sprint(n) + rec)
	}
	data := rawHeader("PaxHeaders/x", 'x', int64(recs.Len()), true, nil)
	data = append(data, block([]byte(recs.String()))...)
	data = append(data, rawHeader("GNUSparseFile.0/x", '0', 1, true, nil)...)
	data = append(data, block([]byte("x"))...)
	return append(data, make([]byte, 1024)...)
}

// failingStore fails every read of an object at its end, as a dropped
// connection does: a transient error that restore retries.
type failingStore struct {
	storage.Store
	opens int
}

func (s *failingStore) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	rc, obj, err := s.Store.Open(ctx, key)
	if err != nil {
		return nil, storage.Object{}, err
	}
	s.opens++
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(rc, iotest.ErrReader(errors.New("connection reset"))), rc}, obj, nil
}

// TestChunk_MadeFilesBounded: the files an attempt at a chunk created are
// remembered for a retry up to maxMadeFiles; a chunk of more members is
// not retried, so a chunk of millions of tiny members costs no memory per
// member. A chunk under the limit is retried.
func TestChunk_MadeFilesBounded(t *testing.T) {
	old := maxMadeFiles
	maxMadeFiles = 3
	t.Cleanup(func() { maxMadeFiles = old })
	for _, tt := range []struct {
		name      string
		files     int
		wantOpens int
	}{
		{"UnderLimit", 3, 1 + DefaultRetries},
		{"OverLimit", 4, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var entries []tarEntry
			for i := range tt.files {
				entries = append(entries, tarEntry{name: fmt.Sprintf("pgdata/f%d", i), body: "x"})
			}
			data := makeTar(t, entries...)
			st := &failingStore{Store: storage.NewMem()}
			a := &archive.Archive{Store: st, Codec: &archive.Codec{Compression: compress.None}, Layout: archive.Layout{Prefix: "s"}, Site: "s"}
			c := archive.ManifestChunk{ChunkFilename: testBackup + "/" + testBackup + ".00000001.pghoard", InputSize: int64(len(data))}
			if _, err := a.Codec.Put(context.Background(), st.Store, a.Layout.ChunkKey(c.ChunkFilename), bytes.NewReader(data), -1, nil); err != nil {
				t.Fatal(err)
			}
			ex := testExtractor(t, t.TempDir())
			o := Options{Retries: DefaultRetries, StallTimeout: time.Minute}
			_, err := o.chunk(context.Background(), zerolog.Nop(), a, ex, c, make([]byte, 4096), &progress{})
			if err == nil || !strings.Contains(err.Error(), "connection reset") {
				t.Fatalf("chunk = %v, want the read error", err)
			}
			if st.opens != tt.wantOpens {
				t.Errorf("chunk opened the object %d times, want %d", st.opens, tt.wantOpens)
			}
		})
	}
}
