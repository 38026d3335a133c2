package archive

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
)

// zeroTail reads head, then zeros up to size bytes in all, counting what
// was read: the decoded stream of a WAL object that decodes to more than
// its file may hold.
type zeroTail struct {
	head []byte
	size int64
	n    int64
}

func (z *zeroTail) Read(p []byte) (int, error) {
	if z.n >= z.size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), z.size-z.n)]
	k := 0
	if z.n < int64(len(z.head)) {
		k = copy(p, z.head[z.n:])
	}
	clear(p[k:])
	z.n += int64(len(p))
	return len(p), nil
}

// countWriter counts what is written to it.
type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return len(p), nil
}

// A WAL file that decodes to more than its kind may hold is refused at
// that size: a segment or .partial at the segment size its first page
// declares, a history or backup history file at maxHistorySize. Before,
// copyChecked wrote every decoded byte (the whole 64 MiB here, gigabytes
// for a bomb) into pg_wal before the size check at the end.
func TestCopyChecked_ErrTooLarge(t *testing.T) {
	seg := segName(3)
	segment := waltest.Segment(t, seg, testSegSize, 3)
	tests := []struct {
		name  string
		file  string
		head  []byte
		limit int64
	}{
		{"Segment", seg, segment, testSegSize},
		{"Partial", seg + ".partial", segment, testSegSize},
		{"History", "00000002.history", []byte("1\t0/3000000\tno recovery target specified\n"), maxHistorySize},
		{"BackupHistory", "000000010000000000000002.00000028.backup", []byte("START WAL LOCATION: 0/2000028\n"), maxHistorySize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := &zeroTail{head: tt.head, size: 64 << 20}
			var w countWriter
			_, _, err := copyChecked(&w, src, nil, "site/xlog/"+tt.file, tt.file)
			if !errors.Is(err, ErrWALTooLarge) {
				t.Fatalf("err = %v, want ErrWALTooLarge", err)
			}
			if w.n > tt.limit {
				t.Fatalf("wrote %d bytes, more than the %d limit", w.n, tt.limit)
			}
			if max := tt.limit + copyBufferSize; src.n > max {
				t.Fatalf("decoded %d bytes, more than the limit and one buffer (%d)", src.n, max)
			}
		})
	}
	t.Run("OK", func(t *testing.T) {
		var w countWriter
		if _, _, err := copyChecked(&w, bytes.NewReader(segment), nil, "site/xlog/"+seg, seg); err != nil {
			t.Fatal(err)
		}
		if w.n != testSegSize {
			t.Fatalf("wrote %d bytes, want %d", w.n, testSegSize)
		}
	})
}

// An object under a segment's name that decodes to more than the segment
// (a bomb planted without the keys, or a real object of the site copied
// there: it authenticates) is refused naming the object, and nothing is
// left in pg_wal.
func TestArchive_FetchWAL_ErrTooLarge(t *testing.T) {
	ctx := context.Background()
	name := segName(3)
	key := "site/xlog/" + name
	for _, encrypted := range []bool{false, true} {
		a := walTestArchive(t, encrypted)
		body := &zeroTail{head: waltest.Segment(t, name, testSegSize, 3), size: 64 << 20}
		if _, err := a.Codec.Put(ctx, a.Store, key, body, -1, nil); err != nil {
			t.Fatal(err)
		}
		pgwal := t.TempDir()
		err := a.FetchWAL(ctx, name, filepath.Join(pgwal, "RECOVERYXLOG"), FetchOptions{})
		if !errors.Is(err, ErrWALTooLarge) || errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), key) {
			t.Fatalf("encrypted=%v: err = %v, want ErrWALTooLarge naming %s", encrypted, err, key)
		}
		if got := testio.DirNames(t, pgwal); len(got) != 0 {
			t.Fatalf("encrypted=%v: pg_wal holds %v", encrypted, got)
		}
	}
}

// firstPage, reading a whole object to authenticate it, reads no further
// than the segment size its header declares. Before, it decoded the whole
// 64 MiB and took the header as sound.
func TestWALFile_FirstPageErrTooLarge(t *testing.T) {
	ctx := context.Background()
	name := segName(3) + ".partial"
	for _, encrypted := range []bool{false, true} {
		a := walTestArchive(t, encrypted)
		f := WALFile{Name: name, Key: "site/xlog/" + name, Archive: a}
		body := &zeroTail{head: waltest.Segment(t, segName(3), testSegSize, 3), size: 64 << 20}
		if _, err := a.Codec.Put(ctx, a.Store, f.Key, body, -1, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := f.firstPage(ctx, true); !errors.Is(err, ErrWALTooLarge) || !strings.Contains(err.Error(), f.Key) {
			t.Fatalf("encrypted=%v: err = %v, want ErrWALTooLarge naming %s", encrypted, err, f.Key)
		}
		if _, err := f.firstPage(ctx, false); err != nil {
			t.Fatalf("encrypted=%v: first page only: %v", encrypted, err)
		}
	}
}

// readCount is a store that counts the stored bytes read through Open.
type readCount struct {
	storage.Store
	n atomic.Int64
}

func (s *readCount) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	rc, obj, err := s.Store.Open(ctx, key)
	if err != nil {
		return nil, obj, err
	}
	return &countedRC{ReadCloser: rc, n: &s.n}, obj, nil
}

type countedRC struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countedRC) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// wal-push compares a local file with an archived object that has no
// hash (PGHoard's timeline files) by decoding it, but no further than one
// byte past the local file's size. Before, it decoded the whole object
// (64 MiB here; a compression bomb for as long as it decodes).
func TestArchive_PushWAL_ComparesNoFurther(t *testing.T) {
	ctx := context.Background()
	a := walTestArchive(t, false)
	a.Codec.Compression = compress.None
	name := "00000002.history"
	content := []byte("1\t0/3000000\tno recovery target specified\n")
	key := "site/timeline/" + name
	if _, err := a.Codec.Put(ctx, a.Store, key, &zeroTail{head: content, size: 64 << 20}, -1, nil); err != nil {
		t.Fatal(err)
	}
	rc := &readCount{Store: a.Store}
	a.Store = rc
	_, err := a.PushWAL(ctx, writeWALFile(t, t.TempDir(), name, content), PushOptions{SystemID: testSystemID})
	if !errors.Is(err, ErrWALConflict) {
		t.Fatalf("err = %v, want ErrWALConflict", err)
	}
	if got, max := rc.n.Load(), int64(1<<20); got > max {
		t.Fatalf("read %d stored bytes to compare a %d-byte file, want at most %d", got, len(content), max)
	}
}
