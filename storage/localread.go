package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Reads of the local store never leave the storage directory, as its
// writes do not (objectDir): someone who can write the storage directory
// (often a shared or NFS mount) could plant <site>/basebackup ->
// /var/lib/postgresql/15/main, or <site>/xlog/<segment> -> /etc/shadow
// with a sidecar beside it. Followed, such a link hands a file of the
// user hoard runs as to a restore or a wal-fetch as if it were an object
// (a site without keys has nothing else to tell them apart), or has List
// walk /proc, or report files outside as objects that retention then
// deletes by key. So the object's directory is opened through an os.Root
// of the storage directory, which follows a link only while it stays
// inside, and the object's file and sidecar are opened in that directory
// with O_NOFOLLOW: hoard and PGHoard make no links in a store.
//
// A hard link cannot be told from the file it names: it is the file. One
// planted in the store needs the planter to be able to link the file
// (fs.protected_hardlinks: its owner, or read and write access to it) on
// the same file system; keeping the storage directory on a file system of
// its own rules it out. docs/security.md says so.

// readDir checks key and opens the directory of its files for a read
// (objectDir), with the Store's errors: a directory that is missing is
// ErrNotFound (with mounted, notFound's check of the storage directory),
// and a link out of the storage directory a permanent error naming it.
func (l *Local) readDir(op, key string, mounted bool) (*os.Root, string, error) {
	if err := checkFileKey(key, "a local file"); err != nil {
		return nil, "", fmt.Errorf("%s: %w", op, err)
	}
	// A read creates no directory, so it never waits for a lock.
	d, base, err := l.objectDir(context.Background(), key, false)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && mounted {
			return nil, "", l.notFound(op, key)
		}
		return nil, "", localErr(op, key, err)
	}
	return d, base, nil
}

// errLinkOut is the error for the path link below the storage directory
// root, a symbolic link that leads out of it. The path is quoted by its
// first 72 bytes: its names are read from a directory anyone who can write
// the storage directory fills.
func errLinkOut(root, link string, err error) error {
	return &permanentError{
		msg: fmt.Sprintf("%.72q is a symbolic link out of the storage directory %s, where hoard reads, writes and deletes nothing: "+
			"someone who can write the storage directory planted it, or it was made by hand; make it a directory",
			filepath.ToSlash(link), root),
		err: err,
	}
}

// openBeneath opens the file name of directory d for reading, never
// through a link (O_NOFOLLOW: a link fails with syscall.ELOOP) and without
// waiting for a writer should the file be a FIFO (O_NONBLOCK, which
// changes nothing for a regular file's reads). os.Root's own OpenFile
// would follow a link that stays in d.
func openBeneath(d *os.Root, name string) (*os.File, error) {
	return openatBeneath(d, name, unix.O_RDONLY, 0)
}

// openatBeneath is openBeneath with the access and creation flags flag
// and the mode perm of a file it creates.
func openatBeneath(d *os.Root, name string, flag int, perm uint32) (*os.File, error) {
	dir, err := d.Open(".")
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	p := filepath.Join(d.Name(), name)
	for {
		fd, err := unix.Openat(int(dir.Fd()), name, flag|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, perm)
		switch {
		case err == nil:
			return os.NewFile(uintptr(fd), p), nil
		case !errors.Is(err, unix.EINTR):
			return nil, &fs.PathError{Op: "open", Path: p, Err: err}
		}
	}
}
