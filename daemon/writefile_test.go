package daemon

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
)

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	for _, data := range []string{"first\n", "second\n"} {
		if err := writeFileAtomic(path, []byte(data), 0o640); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != data {
			t.Fatalf("read back %q (%v), want %q", got, err, data)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v (%v), want 0640", fi.Mode(), err)
	}
	assertOnly(t, dir, "state.json")
}

// TestWriteFileAtomic_ErrRename: a rename that fails (path is a
// non-empty directory) leaves path as it was and no temporary file.
func TestWriteFileAtomic_ErrRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := os.MkdirAll(filepath.Join(path, "inside"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(path, []byte("x"), 0o644); err == nil {
		t.Fatal("writeFileAtomic over a directory succeeded")
	}
	if fi, err := os.Stat(filepath.Join(path, "inside")); err != nil || !fi.IsDir() {
		t.Errorf("the directory changed: %v", err)
	}
	assertOnly(t, dir, "state.json")
}

// assertOnly checks that dir holds only the entry name.
func assertOnly(t *testing.T, dir, name string) {
	t.Helper()
	if names := testio.DirNames(t, dir); len(names) != 1 || names[0] != name {
		t.Errorf("%s holds %v, want only %s", dir, names, name)
	}
}

// TestWriteStateFile_ErrDiskFull: the state file on a full, then
// read-only, file system is not written: the error names it, the last
// state stays whole and no temporary file is left; with room again it is
// written.
func TestWriteStateFile_ErrDiskFull(t *testing.T) {
	dir := pgtest.MountTmpfs(t, 1)
	path := filepath.Join(dir, "state.json")
	if err := writeStateFile(path, Status{}); err != nil {
		t.Fatal(err)
	}
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(dir, "filler")
	pgtest.FillDisk(t, filler, 0)
	big := Status{Sites: map[string]SiteStatus{}}
	for i := range 100 {
		big.Sites[strconv.Itoa(i)] = SiteStatus{}
	}
	check := func(t *testing.T, want string) {
		t.Helper()
		err := writeStateFile(path, big)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), want) {
			t.Errorf("writeStateFile = %v, want an error naming %s and %q", err, path, want)
		}
		if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, old) {
			t.Errorf("the state file changed (%v)", err)
		}
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) != 2 {
			t.Errorf("the directory holds %d entries (%v), want the state file and the filler", len(entries), err)
		}
	}
	pgtest.DiskFaults(t, dir, filler, check, func(t *testing.T) {
		if err := writeStateFile(path, big); err != nil {
			t.Fatal(err)
		}
	})
}

// TestWriteStateFile_ErrNoDirectory: a state file whose directory cannot
// be made (here under a regular file; for a newcomer, PGHoard's default
// /var/lib/pghoard) is named, with the setting to change.
func TestWriteStateFile_ErrNoDirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(file, "pghoard", "pghoard_state.json")
	err := writeStateFile(path, Status{})
	for _, want := range []string{path, "set json_state_file_path"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("writeStateFile = %v, want it to say %q", err, want)
		}
	}
}
