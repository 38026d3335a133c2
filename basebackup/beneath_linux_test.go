package basebackup

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOpenBeneath opens paths beneath a directory with openat2(2) and, as
// on a kernel without it, by walking the path (walkBeneath): both open
// what is beneath, and refuse a link in place of the file or of any
// directory above it, or a path that leaves the directory.
func TestOpenBeneath(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "base", "5"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "base", "5", "f"), []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, link := range []string{"dirlink", "base/filelink"} {
		if err := os.Symlink(filepath.Join(dir, "base", "5"), filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("5", filepath.Join(dir, "base", "rel")); err != nil {
		t.Fatal(err)
	}
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cases := []struct {
		name, rel string
		dir       bool  // open a directory (O_DIRECTORY)
		want      error // nil: opens
	}{
		{"OK", "base/5/f", false, nil},
		{"OKDir", "base/5", true, nil},
		{"OKRoot", ".", true, nil},
		{"ErrNotExist", "base/5/gone", false, unix.ENOENT},
		{"ErrLinkAbove", "dirlink/f", false, unix.ELOOP},
		{"ErrLinkInside", "base/rel/f", false, unix.ELOOP},
		{"ErrLink", "base/filelink", false, unix.ELOOP},
		{"ErrDirLink", "dirlink", true, unix.ELOOP},
		{"ErrDotDot", "base/../../" + filepath.Base(dir) + "/base/5/f", false, unix.EXDEV},
		{"ErrAbsolute", filepath.Join(dir, "base/5/f"), false, unix.EXDEV},
	}
	for _, mode := range []string{"Openat2", "Walk"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "Walk" {
				noOpenat2.Store(true)
				defer noOpenat2.Store(false)
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					flags := unix.O_RDONLY | unix.O_NONBLOCK
					if c.dir {
						flags |= unix.O_DIRECTORY
					}
					fd, err := openBeneath(int(d.Fd()), c.rel, flags)
					if err == nil {
						unix.Close(fd)
					}
					if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
						t.Errorf("openBeneath(%q) = %v, want %v", c.rel, err, c.want)
					}
				})
			}
		})
	}
}

// TestWorker_File_ErrParentSymlinkWalk is TestWorker_File_ErrParentSymlink
// on a kernel without openat2(2).
func TestWorker_File_ErrParentSymlinkWalk(t *testing.T) {
	noOpenat2.Store(true)
	defer noOpenat2.Store(false)
	TestWorker_File_ErrParentSymlink(t)
	TestScanner_Scan_ErrDirSwapped(t)
	TestWorker_File_ErrNotRegular(t)
	TestWorker_File_Gone(t)
}

// TestOpenBeneath_Openat2Refused opens a file where a seccomp filter
// answers openat2(2) with EPERM, as the default profile of container
// runtimes older than openat2 does: the path is walked instead, and
// links above the file are still refused.
func TestOpenBeneath_Openat2Refused(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "base", "5"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "base", "5", "f"), []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "base", "5"), filepath.Join(dir, "dirlink")); err != nil {
		t.Fatal(err)
	}
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	calls := 0
	sysOpenat2 = func(int, string, *unix.OpenHow) (int, error) {
		calls++
		return -1, unix.EPERM
	}
	defer func() { sysOpenat2 = unix.Openat2; noOpenat2.Store(false) }()
	for _, c := range []struct {
		rel  string
		want error
	}{
		{"base/5/f", nil},
		{"dirlink/f", unix.ELOOP},
		{"base/5/f", nil},
	} {
		fd, err := openBeneath(int(d.Fd()), c.rel, unix.O_RDONLY|unix.O_NONBLOCK)
		if err == nil {
			unix.Close(fd)
		}
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("openBeneath(%q) with openat2 refused = %v, want %v", c.rel, err, c.want)
		}
	}
	if calls != 1 {
		t.Errorf("openat2 called %d times, want once: a refused call is not tried again", calls)
	}
}
