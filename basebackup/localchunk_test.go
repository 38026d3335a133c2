package basebackup

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// replacedFile lists a data directory holding one 8 KiB file, then
// replaces that file with what replace makes at its path, as someone who
// can write the data directory may between the listing and the read. It
// returns the backup, a worker and the file's entry.
func replacedFile(t *testing.T, replace func(t *testing.T, path string)) (*worker, *entry) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, bytes.Repeat([]byte{'a'}, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	sc := &scanner{}
	roots := []*root{{dir: dir, prefix: "pgdata/", main: true}}
	if err := sc.scan(roots); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeRoots(roots) })
	if len(sc.entries) != 1 || sc.entries[0].typ != tar.TypeReg {
		t.Fatalf("scan = %+v, want the one file", sc.entries)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	replace(t, path)
	l := &localBackup{log: zerolog.Nop(), entries: sc.entries}
	return &worker{l: l, buf: make([]byte, readBufferSize)}, &l.entries[0]
}

// fifo makes a named pipe at path; when the test ends it opens the pipe
// for writing, which releases a reader blocked in open(2).
func fifo(t *testing.T, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err == nil {
			f.Close()
		}
	})
}

// symlinkToSecret makes path a symbolic link to a file outside the data
// directory.
func symlinkToSecret(t *testing.T, path string) {
	t.Helper()
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, bytes.Repeat([]byte("secret!!"), 1024), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, path); err != nil {
		t.Fatal(err)
	}
}

// readers are the three ways a local-tar backup reads a listed file.
var readers = []struct {
	name string
	read func(w *worker, e *entry) ([]byte, error)
}{
	{"Chunk", func(w *worker, e *entry) ([]byte, error) {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		err := w.file(tw, e, &chunkResult{filename: "chunk"})
		return buf.Bytes(), err
	}},
	{"Delta", func(w *worker, e *entry) ([]byte, error) {
		var buf bytes.Buffer
		_, _, err := w.readFile(context.Background(), e, true, nil, func(p []byte) error {
			buf.Write(p)
			return nil
		})
		return buf.Bytes(), err
	}},
	{"Embedded", func(w *worker, e *entry) ([]byte, error) {
		return readEmbedded(e)
	}},
}

// TestWorker_File_ErrNotRegular replaces a listed file with a named pipe
// or a symbolic link before it is read: the read fails at once, naming the
// file, instead of blocking forever in open(2) on the pipe or storing the
// bytes of the link's target under the file's name.
func TestWorker_File_ErrNotRegular(t *testing.T) {
	for _, r := range readers {
		for _, c := range []struct {
			name    string
			replace func(t *testing.T, path string)
		}{
			{"ErrFifo", fifo},
			{"ErrSymlink", symlinkToSecret},
		} {
			t.Run(r.name+"/"+c.name, func(t *testing.T) {
				w, e := replacedFile(t, c.replace)
				type result struct {
					data []byte
					err  error
				}
				done := make(chan result, 1)
				go func() {
					data, err := r.read(w, e)
					done <- result{data, err}
				}()
				select {
				case res := <-done:
					if res.err == nil || !strings.Contains(res.err.Error(), e.path()) {
						t.Errorf("read = %v, want an error naming %s", res.err, e.path())
					}
					if bytes.Contains(res.data, []byte("secret!!")) {
						t.Errorf("the link's target was read")
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("read of %s still blocked after 10s", e.path())
				}
			})
		}
	}
}

// TestWorker_File_Gone removes a listed file before it is read: it is left
// out (WAL replay recreates what the restore needs of it), not an error.
func TestWorker_File_Gone(t *testing.T) {
	for _, r := range readers[:2] {
		t.Run(r.name, func(t *testing.T) {
			w, e := replacedFile(t, func(*testing.T, string) {})
			data, err := r.read(w, e)
			if err != nil || len(data) != 0 {
				t.Errorf("read = %d bytes, %v; want the file left out", len(data), err)
			}
		})
	}
}
