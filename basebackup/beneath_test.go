package basebackup

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// secretDir makes a directory outside the data directory holding a file
// named name, of other bytes: what someone who can write the data
// directory would have the backup read in place of a cluster's file.
func secretDir(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, name), bytes.Repeat([]byte("secret!!"), 1024), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// replacedParent lists a data directory holding base/5/f (8 KiB), then
// replaces the directory swap (base/5 or base) with a symbolic link to a
// directory outside the data directory whose same path holds other
// bytes, as someone who can write the data directory may between the
// listing and the read. It returns a worker and the file's entry.
func replacedParent(t *testing.T, swap string) (*worker, *entry) {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "base", "5"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "base", "5", "f"), bytes.Repeat([]byte{'a'}, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	sc := &scanner{}
	roots := []*root{{dir: dir, prefix: "pgdata/", main: true}}
	if err := sc.scan(roots); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeRoots(roots) })
	var e *entry
	for i := range sc.entries {
		if sc.entries[i].rel == "base/5/f" {
			e = &sc.entries[i]
		}
	}
	if e == nil || e.typ != tar.TypeReg {
		t.Fatalf("scan = %+v, want base/5/f", sc.entries)
	}
	under, err := filepath.Rel(swap, "base/5/f")
	if err != nil {
		t.Fatal(err)
	}
	secret := secretDir(t, "f")
	target := filepath.Join(secret, filepath.Dir(filepath.Dir(under)))
	if under != "f" {
		// base swapped: the link's target holds 5/f.
		target = t.TempDir()
		if err := os.Mkdir(filepath.Join(target, "5"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(secret, "f"), filepath.Join(target, "5", "f")); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(filepath.Join(dir, swap), filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, swap)); err != nil {
		t.Fatal(err)
	}
	l := &localBackup{entries: sc.entries}
	return &worker{l: l, buf: make([]byte, readBufferSize)}, e
}

// TestWorker_File_ErrParentSymlink replaces the directory of a listed
// file, or the directory above that, with a symbolic link to a directory
// holding a file of the same name with other bytes, before the file is
// read: the read fails naming the file, instead of storing the other
// file's bytes under the cluster file's name.
func TestWorker_File_ErrParentSymlink(t *testing.T) {
	for _, r := range readers {
		for _, swap := range []string{"base/5", "base"} {
			t.Run(r.name+"/"+strings.ReplaceAll(swap, "/", "_"), func(t *testing.T) {
				w, e := replacedParent(t, swap)
				data, err := r.read(w, e)
				if err == nil || !strings.Contains(err.Error(), e.path()) || !strings.Contains(err.Error(), "symbolic link") {
					t.Errorf("read = %v, want an error naming %s and the link", err, e.path())
				}
				if bytes.Contains(data, []byte("secret!!")) {
					t.Errorf("the file under the link was read")
				}
			})
		}
	}
}
