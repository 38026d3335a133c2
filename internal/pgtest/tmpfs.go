package pgtest

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Remount remounts the file system at dir (a MountTmpfs) with opts:
// "ro", "rw", "size=64m", "nr_inodes=N", joined with commas.
func Remount(t testing.TB, dir string, opts ...string) {
	t.Helper()
	o := strings.Join(append([]string{"remount"}, opts...), ",")
	if out, err := exec.Command("mount", "-o", o, dir).CombinedOutput(); err != nil {
		t.Fatalf("pgtest: remount %s %s: %v: %s", dir, o, err, out)
	}
}

// FillDisk creates the file path taking all but leave bytes of the free
// space of its file system, as a disk filled by something else would be;
// removing it frees the space.
func FillDisk(t testing.TB, path string, leave int64) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(path), &st); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), 0, 0, int64(st.Bavail)*st.Bsize-leave); err != nil {
		t.Fatalf("pgtest: fill %s: %v", path, err)
	}
}

// Files lists the files under dir by their paths relative to it, sorted:
// what a test compares before and after a failed write to find litter.
func Files(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		out = append(out, rel)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// DiskFaults runs check as subtests on the tmpfs dir, first filled by
// the file filler (FillDisk), with want "no space left on device", then
// remounted read-only, with want "read-only file system"; then it removes
// filler and runs ok, which must succeed with room again.
func DiskFaults(t *testing.T, dir, filler string, check func(t *testing.T, want string), ok func(t *testing.T)) {
	t.Helper()
	t.Run("ErrFull", func(t *testing.T) { check(t, "no space left on device") })
	t.Run("ErrReadOnly", func(t *testing.T) {
		Remount(t, dir, "ro")
		defer Remount(t, dir, "rw")
		check(t, "read-only file system")
	})
	t.Run("OKFreed", func(t *testing.T) {
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		ok(t)
	})
}
