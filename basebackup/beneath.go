package basebackup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A local-tar backup opens every path under a root (the data directory, a
// tablespace) relative to a descriptor of the root opened once, and
// follows no symbolic link below it: someone who can write the data
// directory (a database superuser, through COPY ... TO PROGRAM) may
// replace any directory in it by a link at any time, and a path opened by
// name would then lead the backup, run as a user who may read more than
// the database's, into a directory the database's user may not read,
// storing its files under the names of the cluster's. The root itself is
// opened through a link (a data directory or tablespace location linked
// to another disk), as PostgreSQL follows it.

// open opens r's directory, following a link that names it, unless
// it is open already. It does not wait on a named pipe there (a
// tablespace's location is whatever its pg_tblspc link names).
func (r *root) open() error {
	if r.fd != nil {
		return nil
	}
	fd, err := unix.Open(r.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: r.dir, Err: err}
	}
	r.fd = os.NewFile(uintptr(fd), r.dir)
	return nil
}

// closeRoots closes the roots' descriptors.
func closeRoots(roots []*root) {
	for _, r := range roots {
		if r.fd != nil {
			r.fd.Close()
			r.fd = nil
		}
	}
}

// openBeneath opens rel, a slash-separated path below the directory dirfd
// ("." for the directory itself), with flags, following no symbolic link
// on the way: a link in place of rel or of any directory above it fails
// with ELOOP. Each call resolves rel afresh from dirfd.
func openBeneath(dirfd int, rel string, flags int) (int, error) {
	flags |= unix.O_CLOEXEC
	if fd, ok, err := openat2Beneath(dirfd, rel, flags); ok {
		return fd, err
	}
	return walkBeneath(dirfd, rel, flags|unix.O_NOFOLLOW)
}

// walkBeneath is openBeneath where openat2(2) is missing (Linux before
// 5.6): it opens rel's directories one at a time, each relative to the
// last and without following a link (O_NOFOLLOW|O_DIRECTORY).
func walkBeneath(dirfd int, rel string, flags int) (int, error) {
	if rel == "." {
		return unix.Openat(dirfd, ".", flags, 0)
	}
	parts := strings.Split(rel, "/")
	for _, p := range parts {
		if p == "" || p == "." || p == ".." {
			return -1, unix.EXDEV // as openat2 refuses to leave the root
		}
	}
	cur := dirfd
	defer func() {
		if cur != dirfd {
			unix.Close(cur)
		}
	}()
	for _, p := range parts[:len(parts)-1] {
		next, err := openatNoLink(cur, p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC)
		if err != nil {
			return -1, err
		}
		if cur != dirfd {
			unix.Close(cur)
		}
		cur = next
	}
	return openatNoLink(cur, parts[len(parts)-1], flags)
}

// openatNoLink is openat(2) of name in dirfd with flags, which hold
// O_NOFOLLOW. O_DIRECTORY|O_NOFOLLOW fails a link with ENOTDIR: it
// returns ELOOP then, as openat2 does.
func openatNoLink(dirfd int, name string, flags int) (int, error) {
	fd, err := unix.Openat(dirfd, name, flags, 0)
	if errors.Is(err, unix.ENOTDIR) {
		var st unix.Stat_t
		if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			err = unix.ELOOP
		}
	}
	return fd, err
}

// beneathError describes err from openBeneath of e's path for op.
func beneathError(op, path string, err error) error {
	if errors.Is(err, unix.ELOOP) {
		return fmt.Errorf("%s or a directory above it in the data directory or tablespace was replaced by a symbolic link since the backup began: the backup follows no link there; find out what replaced it", path)
	}
	return &fs.PathError{Op: op, Path: path, Err: err}
}

// readable checks that r looks like a data directory this process may
// read: PG_VERSION and global/pg_control open.
func (r *root) readable() error {
	for _, rel := range []string{"PG_VERSION", "global/pg_control"} {
		f, err := openRegular(r, rel)
		if err != nil {
			return err
		}
		f.Close()
	}
	return nil
}

// openDir opens the directory rel of r ("" for the root) to list it.
func (r *root) openDir(rel string) (*os.File, error) {
	if rel == "" {
		rel = "."
	}
	fd, err := openBeneath(int(r.fd.Fd()), rel, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NONBLOCK)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), r.path(rel)), nil
}

// path returns the local path of rel in r.
func (r *root) path(rel string) string { return filepath.Join(r.dir, rel) }

// lstatAt is lstat(2) of name in the directory d: a link is described,
// never followed.
func lstatAt(d *os.File, name string) (fs.FileInfo, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(int(d.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: d.Name() + "/" + name, Err: err}
	}
	return &statInfo{name: name, st: st}, nil
}

// readlinkAt reads the link name in the directory d.
func readlinkAt(d *os.File, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(int(d.Fd()), name, buf)
		if err != nil {
			return "", &fs.PathError{Op: "readlink", Path: d.Name() + "/" + name, Err: err}
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// statInfo is an fs.FileInfo of a unix.Stat_t.
type statInfo struct {
	name string
	st   unix.Stat_t
}

func (s *statInfo) Name() string       { return s.name }
func (s *statInfo) Size() int64        { return s.st.Size }
func (s *statInfo) IsDir() bool        { return s.Mode().IsDir() }
func (s *statInfo) Sys() any           { return &s.st }
func (s *statInfo) ModTime() time.Time { return time.Unix(s.st.Mtim.Unix()) }

func (s *statInfo) Mode() fs.FileMode {
	m := s.st.Mode
	mode := fs.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFLNK:
		mode |= fs.ModeSymlink
	case unix.S_IFREG:
	case unix.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= fs.ModeSocket
	case unix.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		mode |= fs.ModeDevice
	default:
		mode |= fs.ModeIrregular
	}
	if m&unix.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}
