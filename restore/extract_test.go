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
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/storage"
)

// extractAll runs the extractor over data as one chunk with no size limit.
func extractAll(t *testing.T, ex *extractor, data []byte) error {
	t.Helper()
	return ex.extract(bytes.NewReader(data), func() int64 { return 1 << 40 }, nil, make([]byte, 4096), nil)
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
	data := hostile.Tar(t,
		hostile.Member{Name: ".pghoard_tar_metadata.json", Body: "{}"},
		hostile.Member{Name: "pgdata", Type: tar.TypeDir},
		hostile.Member{Name: "pgdata/base", Type: tar.TypeDir},
		hostile.Member{Name: "pgdata/base/1/1259", Body: "heap"},
		hostile.Member{Name: "pgdata/global/pg_control", Body: "not from a chunk"},
		hostile.Member{Name: "pgdata/backup_label", Body: "not from a chunk"},
		hostile.Member{Name: "tablespaces/ts1", Type: tar.TypeDir},
		hostile.Member{Name: "tablespaces/ts1/PG_15_1/5/16384", Body: "spc"},
		hostile.Member{Name: "pax-global", Type: tar.TypeXGlobalHeader, PAX: map[string]string{"comment": "x"}},
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
		entries []hostile.Member
		member  string // the member the error must name
	}{
		{"Absolute", []hostile.Member{{Name: "/etc/passwd", Body: "x"}}, "/etc/passwd"},
		{"DotDot", []hostile.Member{{Name: "pgdata/../../escape", Body: "x"}}, "pgdata/../../escape"},
		{"DotDotTablespace", []hostile.Member{{Name: "tablespaces/ts1/../../escape", Body: "x"}}, "tablespaces/ts1/../../escape"},
		{"OutsidePGData", []hostile.Member{{Name: "etc/passwd", Body: "x"}}, "etc/passwd"},
		{"UnknownTablespace", []hostile.Member{{Name: "tablespaces/other/x", Body: "x"}}, "tablespaces/other/x"},
		{"Symlink", []hostile.Member{{Name: "pgdata/evil", Type: tar.TypeSymlink, Link: "/tmp"}}, "pgdata/evil"},
		{"SymlinkInnerFirst", []hostile.Member{
			{Name: "pgdata/aa/bb", Type: tar.TypeSymlink, Link: "../../escape"},
			{Name: "pgdata/aa", Type: tar.TypeSymlink, Link: "/tmp"},
		}, "pgdata/aa/bb"},
		{"SymlinkPGWal", []hostile.Member{{Name: "pgdata/pg_wal", Type: tar.TypeSymlink, Link: "/elsewhere/wal"}}, "pgdata/pg_wal"},
		{"HardLink", []hostile.Member{{Name: "pgdata/x", Type: tar.TypeLink, Link: "/etc/passwd"}}, "pgdata/x"},
		{"HardLinkInside", []hostile.Member{{Name: "pgdata/a", Body: "a"}, {Name: "pgdata/b", Type: tar.TypeLink, Link: "pgdata/a"}}, "pgdata/b"},
		{"CharDevice", []hostile.Member{{Name: "pgdata/null", Type: tar.TypeChar}}, "pgdata/null"},
		{"BlockDevice", []hostile.Member{{Name: "pgdata/sda", Type: tar.TypeBlock}}, "pgdata/sda"},
		{"FIFO", []hostile.Member{{Name: "pgdata/fifo", Type: tar.TypeFifo}}, "pgdata/fifo"},
		{"Duplicate", []hostile.Member{{Name: "pgdata/PG_VERSION", Body: "15\n"}, {Name: "pgdata/PG_VERSION", Body: "16\n"}}, "pgdata/PG_VERSION"},
		{"FileOverDirectory", []hostile.Member{{Name: "pgdata/base", Type: tar.TypeDir}, {Name: "pgdata/base", Body: "x"}}, "pgdata/base"},
		{"TablespaceLink", []hostile.Member{{Name: "pgdata/pg_tblspc/16384", Type: tar.TypeDir}}, "pgdata/pg_tblspc/16384"},
		{"RootNotDirectory", []hostile.Member{{Name: "pgdata", Body: "x"}}, "pgdata"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			ex := testExtractor(t, root)
			err := extractAll(t, ex, hostile.Tar(t, tt.entries...))
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
		{"GNU", hostile.Tar(t, hostile.GNUSparse("pgdata/base/1/big", 1<<30))},
		{"PAX", hostile.Tar(t, hostile.PAXSparse("pgdata/base/1/big", 1<<30))},
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
	data := hostile.Tar(t, hostile.Member{Name: "pgdata/big", Body: strings.Repeat("x", 4096)})
	err := ex.extract(bytes.NewReader(data), func() int64 { return 1000 }, nil, make([]byte, 4096), nil)
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
	for _, e := range []hostile.Member{{Name: "pgdata/file", Body: "x"}, {Name: "pgdata/dir/new", Body: "x"}, {Name: "pgdata/dir/victim", Body: "x"}} {
		if err := extractAll(t, ex, hostile.Tar(t, e)); err == nil {
			t.Errorf("%s: written through a link", e.Name)
		}
	}
	if b, err := os.ReadFile(victim); err != nil || string(b) != "keep" {
		t.Errorf("victim = %q, %v", b, err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 1 {
		t.Errorf("outside holds %v", ents)
	}
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
// remembered in memory for a retry up to maxMadeFiles, the rest on the
// local disk, so a chunk of millions of tiny members costs no memory per
// member: a chunk under the limit and one over it are both retried.
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
		{"OverLimit", 4, 1 + DefaultRetries},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var entries []hostile.Member
			for i := range tt.files {
				entries = append(entries, hostile.Member{Name: fmt.Sprintf("pgdata/f%d", i), Body: "x"})
			}
			data := hostile.Tar(t, entries...)
			st := &failingStore{Store: storage.NewMem()}
			a := archivetest.New(t, st, &archive.Codec{Compression: compress.None})
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

// TestLargestFirst: chunks are handed to the workers largest first, ties
// in the manifest's order.
func TestLargestFirst(t *testing.T) {
	chunks := []archive.ManifestChunk{{InputSize: 10}, {InputSize: 300}, {InputSize: 10}, {InputSize: 20}}
	if got, want := largestFirst(chunks), []int{1, 3, 0, 2}; !slices.Equal(got, want) {
		t.Errorf("largestFirst = %v, want %v", got, want)
	}
}

// TestExtractor_MkdirOncePerDirectory restores a chunk of 3 000 files in
// three directories, as a database directory of a schema-per-tenant
// cluster holds tens of thousands: the extractor creates each directory
// once, not again (a mkdirat, a stat, an open and close of each parent)
// for each of its files.
func TestExtractor_MkdirOncePerDirectory(t *testing.T) {
	root := t.TempDir()
	ex := testExtractor(t, root)
	members := []hostile.Member{{Name: "pgdata/base", Type: tar.TypeDir}, {Name: "pgdata/base/1", Type: tar.TypeDir}}
	for _, dir := range []string{"pgdata/base/1", "pgdata/base/5", "tablespaces/ts1/PG_15_1/5"} {
		for i := range 1000 {
			members = append(members, hostile.Member{Name: fmt.Sprintf("%s/%d", dir, 16384+i), Body: "x"})
		}
	}
	if err := extractAll(t, ex, hostile.Tar(t, members...)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "spc", "PG_15_1/5/17383")); err != nil {
		t.Fatal(err)
	}
	// base and base/1 from their members, base/5 and PG_15_1/5 for
	// their first files.
	if got, want := ex.mkdirs.Load(), int64(4); got > want {
		t.Errorf("%d directory creations for 3 000 files in 3 directories, want at most %d", got, want)
	}
	// Each directory's files are created in it as it was opened once
	// for the first, not from the root again for each.
	if got, want := ex.dirOpens.Load(), int64(3); got > want {
		t.Errorf("%d directory opens for 3 000 files in 3 directories, want at most %d", got, want)
	}
}

// failOnceStore fails the first read of an object at its end, as one
// dropped connection does, and serves it whole after.
type failOnceStore struct {
	storage.Store
	opens int
}

func (s *failOnceStore) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	rc, obj, err := s.Store.Open(ctx, key)
	if err != nil {
		return nil, storage.Object{}, err
	}
	s.opens++
	if s.opens > 1 {
		return rc, obj, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(rc, iotest.ErrReader(errors.New("connection reset"))), rc}, obj, nil
}

// TestChunk_RetryManyFiles: a chunk of more members than the extractor
// keeps in memory (maxMadeFiles) is retried after a dropped connection
// all the same, its files listed on the local disk past the limit, and
// restores whole.
func TestChunk_RetryManyFiles(t *testing.T) {
	old := maxMadeFiles
	maxMadeFiles = 3
	t.Cleanup(func() { maxMadeFiles = old })
	var entries []hostile.Member
	for i := range 1000 {
		entries = append(entries, hostile.Member{Name: fmt.Sprintf("pgdata/base/1/f%d", i), Body: fmt.Sprint(i)})
	}
	data := hostile.Tar(t, entries...)
	st := &failOnceStore{Store: storage.NewMem()}
	a := archivetest.New(t, st, &archive.Codec{Compression: compress.None})
	c := archive.ManifestChunk{ChunkFilename: testBackup + "/" + testBackup + ".00000001.pghoard", InputSize: int64(len(data))}
	if _, err := a.Codec.Put(context.Background(), st.Store, a.Layout.ChunkKey(c.ChunkFilename), bytes.NewReader(data), -1, nil); err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	ex := testExtractor(t, target)
	o := Options{Retries: DefaultRetries, StallTimeout: time.Minute}
	if _, err := o.chunk(context.Background(), zerolog.Nop(), a, ex, c, make([]byte, 4096), &progress{}); err != nil {
		t.Fatalf("chunk of 1 000 files after one dropped connection = %v, want it retried and restored", err)
	}
	if st.opens != 2 {
		t.Errorf("chunk opened the object %d times, want 2", st.opens)
	}
	for i := range 1000 {
		if b, err := os.ReadFile(filepath.Join(target, "pg/base/1", fmt.Sprintf("f%d", i))); err != nil || string(b) != fmt.Sprint(i) {
			t.Fatalf("file %d = %q, %v", i, b, err)
		}
	}
}
