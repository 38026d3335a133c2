package storage_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

func TestWriteFileIn_OK(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	for _, data := range []string{"first\n", "second\n"} {
		err := storage.WriteFileIn(root, "state.json", bytes.NewReader([]byte(data)), func(f *os.File) error { return f.Chmod(0o640) })
		if err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(filepath.Join(dir, "state.json")); err != nil || string(got) != data {
			t.Fatalf("read back %q (%v), want %q", got, err, data)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "state.json")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v (%v), want 0640", fi.Mode(), err)
	}
	if got := testio.DirNames(t, dir); !slices.Equal(got, []string{"state.json"}) {
		t.Errorf("directory holds %v, want only state.json", got)
	}
}

// TestWriteFileIn_Link: a link planted at the name is replaced, never
// written through.
func TestWriteFileIn_Link(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("keep\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "recovery.signal")); err != nil {
		t.Fatal(err)
	}
	if err := storage.WriteFileAtomic(filepath.Join(dir, "recovery.signal"), bytes.NewReader(nil), nil); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(victim); err != nil || string(got) != "keep\n" {
		t.Errorf("the link's target holds %q (%v), want it as it was", got, err)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "recovery.signal")); err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
		t.Errorf("recovery.signal: %v (%v), want an empty regular file", fi, err)
	}
}

// TestWriteFileIn_ErrRead: a source that fails halfway leaves the file as
// it was and no temporary file, and the error is the source's.
func TestWriteFileIn_ErrRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hoard.json")
	if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	errSource := errors.New("source failed")
	r := io.MultiReader(bytes.NewReader([]byte("half of the new")), &failReader{err: errSource})
	if err := storage.WriteFileAtomic(path, r, nil); !errors.Is(err, errSource) {
		t.Fatalf("WriteFileAtomic = %v, want %v", err, errSource)
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != "old\n" {
		t.Errorf("read back %q (%v), want the old contents", got, err)
	}
	if got := testio.DirNames(t, dir); !slices.Equal(got, []string{"hoard.json"}) {
		t.Errorf("directory holds %v, want only hoard.json", got)
	}
}

type failReader struct{ err error }

func (f *failReader) Read([]byte) (int, error) { return 0, f.err }

// killEnv names the file TestWriteFileAtomic_KilledChild writes when set.
const killEnv = "HOARD_TEST_WRITEFILE_KILL"

// TestWriteFileAtomic_KilledChild is the child process of
// TestWriteFileAtomic_Killed: without killEnv it does nothing. It writes
// half of a new file and dies of SIGKILL before the rest.
func TestWriteFileAtomic_KilledChild(t *testing.T) {
	path := os.Getenv(killEnv)
	if path == "" {
		return
	}
	r := io.MultiReader(bytes.NewReader([]byte("half of the new")), readerFunc(func([]byte) (int, error) {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}))
	t.Fatalf("WriteFileAtomic returned: %v", storage.WriteFileAtomic(path, r, nil))
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// TestWriteFileAtomic_Killed kills a writer (a child process, SIGKILL)
// halfway: the file is as it was, and the temporary file the writer left
// is one IsTempName recognises. Once it is old, the next write of the
// same file removes it: a state file or a configuration written after
// many crashes does not gather temporary files beside it.
func TestWriteFileAtomic_Killed(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pghoard_state.json")
	if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	testio.RunKilledChild(t, "TestWriteFileAtomic_KilledChild", killEnv, path)
	if got, err := os.ReadFile(path); err != nil || string(got) != "old\n" {
		t.Fatalf("after the kill: %q (%v), want the old contents", got, err)
	}
	var left []string
	for _, n := range testio.DirNames(t, dir) {
		if n != "pghoard_state.json" {
			left = append(left, n)
		}
	}
	if len(left) != 1 || !storage.IsTempName(left[0]) {
		t.Fatalf("the killed writer left %v, want one temporary file", left)
	}
	// A fresh leftover may be another writer's, in flight: it stays.
	if err := storage.WriteFileAtomic(path, bytes.NewReader([]byte("new\n")), nil); err != nil {
		t.Fatal(err)
	}
	if got := testio.DirNames(t, dir); len(got) != 2 {
		t.Fatalf("after a write: %v, want the fresh leftover kept", got)
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(filepath.Join(dir, left[0]), old, old); err != nil {
		t.Fatal(err)
	}
	if err := storage.WriteFileAtomic(path, bytes.NewReader([]byte("newer\n")), nil); err != nil {
		t.Fatal(err)
	}
	if got := testio.DirNames(t, dir); !slices.Equal(got, []string{"pghoard_state.json"}) {
		t.Errorf("after a write: %v, want the old leftover removed", got)
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != "newer\n" {
		t.Errorf("read back %q (%v)", got, err)
	}
}

// TestCreateFileIn: the first write of a name stores the file whole with
// its mode; a second, and one over a dangling link, fails with
// fs.ErrExist, leaving the name as it was and no temporary file.
func TestCreateFileIn(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "k1.private.pem")
	if err := storage.CreateFileAtomic(p, bytes.NewReader([]byte("first\n")), func(f *os.File) error { return f.Chmod(0o600) }); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v (%v), want 0600", fi.Mode(), err)
	}
	t.Run("ErrExist", func(t *testing.T) {
		err := storage.CreateFileAtomic(p, bytes.NewReader([]byte("second\n")), nil)
		if !errors.Is(err, fs.ErrExist) {
			t.Errorf("a second create: %v, want fs.ErrExist", err)
		}
		if got, err := os.ReadFile(p); err != nil || string(got) != "first\n" {
			t.Errorf("read back %q (%v), want the first file", got, err)
		}
	})
	t.Run("ErrDanglingLink", func(t *testing.T) {
		target := filepath.Join(t.TempDir(), "absent")
		if err := os.Symlink(target, filepath.Join(dir, "k1.public.pem")); err != nil {
			t.Fatal(err)
		}
		if err := storage.CreateFileAtomic(filepath.Join(dir, "k1.public.pem"), bytes.NewReader([]byte("x\n")), nil); !errors.Is(err, fs.ErrExist) {
			t.Errorf("a create over a dangling link: %v, want fs.ErrExist", err)
		}
		if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("the link's target was created: %v", err)
		}
	})
	if got := testio.DirNames(t, dir); !slices.Equal(got, []string{"k1.private.pem", "k1.public.pem"}) {
		t.Errorf("directory holds %v, want the two names only", got)
	}
}

// TestRemoveStaleTemps: the regular files of the prefix older than the
// cutoff go; a newer one, a file of another name, and a directory or a
// symbolic link of the prefix stay.
func TestRemoveStaleTemps(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-2 * time.Hour)
	write := func(name string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	write(".tmp-stale")
	write("000000010000000000000003")
	if err := os.WriteFile(filepath.Join(dir, ".tmp-fresh"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, ".tmp-dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("000000010000000000000003", filepath.Join(dir, ".tmp-link")); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	storage.RemoveStaleTemps(root, ".tmp-", time.Now().Add(-time.Hour))
	for _, c := range []struct {
		name string
		kept bool
	}{{".tmp-stale", false}, {"000000010000000000000003", true}, {".tmp-fresh", true}, {".tmp-dir", true}, {".tmp-link", true}} {
		if _, err := os.Lstat(filepath.Join(dir, c.name)); (err == nil) != c.kept {
			t.Errorf("%s: kept %t (%v), want %t", c.name, err == nil, err, c.kept)
		}
	}
}

// TestRemoveStaleTemps_OtherFiles: the files of another name are only
// listed, not looked at one by one. wal-fetch runs it on pg_wal at every
// call, and pg_wal holds hundreds of segments (max_wal_size, a standby's
// wal_keep_size): an os.Root directory's ReadDir lstats every entry
// (os/file_unix.go newUnixDirent). Each file more costs its name (one
// allocation), not a FileInfo too.
func TestRemoveStaleTemps_OtherFiles(t *testing.T) {
	allocs := func(files int) float64 {
		dir := t.TempDir()
		for i := range files {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%024X", i)), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		root, err := os.OpenRoot(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		cutoff := time.Now().Add(-time.Hour)
		return testing.AllocsPerRun(5, func() { storage.RemoveStaleTemps(root, ".tmp-", cutoff) })
	}
	few, many := allocs(10), allocs(1010)
	if perFile := (many - few) / 1000; perFile >= 2 {
		t.Errorf("RemoveStaleTemps allocates %.1f times per file of another name (%.0f with 10 files, %.0f with 1010); want its name alone", perFile, few, many)
	}
}

// BenchmarkRemoveStaleTemps: wal-fetch's look for its stale temporary
// files in a pg_wal of 200 segments and none of them.
func BenchmarkRemoveStaleTemps(b *testing.B) {
	dir := b.TempDir()
	for i := range 200 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%024X", i)), nil, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer root.Close()
	cutoff := time.Now().Add(-time.Hour)
	for b.Loop() {
		storage.RemoveStaleTemps(root, ".hoard-fetch-", cutoff)
	}
}
