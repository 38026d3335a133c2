package archive

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/hoardbackup/hoard/storage"
)

// createLockedTemp creates a temporary file named prefix* in dir
// (storage.CreateTempIn: O_EXCL) and takes an exclusive flock on it
// through a second descriptor, lock, which the caller closes once the file
// is renamed into place or removed: closing tmp before the rename (fsync,
// close, rename) does not release it. lock is open for writing: an NFSv4
// client emulates flock with a lock on the server and refuses an
// exclusive one on a file open only for reading (fs/nfs/nfs4proc.c
// nfs4_proc_lock: EBADF), which would fail every download into a pg_wal
// there. The kernel releases the lock when the process dies, however it
// dies (kill -9 included): a temporary file with data whose lock another
// process can take is a dead download's, and removeDeadTemp removes it at
// once, without waiting for it to grow old.
//
// Between the create and the lock, another wal-fetch can take the lock,
// but finds the file empty (nothing is written before the lock) and
// leaves it; the name is checked after the lock all the same. Where flock
// fails (a file system without locks), the download goes on unlocked, and
// removeDeadTemp falls back to the file's age.
func createLockedTemp(dir *os.Root, prefix string) (tmp, lock *os.File, name string, err error) {
	tmp, name, err = storage.CreateTempIn(dir, prefix)
	if err != nil {
		return nil, nil, "", err
	}
	lock, err = dir.OpenFile(name, os.O_RDWR, 0)
	if err == nil {
		err = flockWait(lock)
		switch {
		case errors.Is(err, syscall.ENOLCK), errors.Is(err, syscall.EOPNOTSUPP):
			return tmp, lock, name, nil
		case err == nil:
			err = sameFile(dir, name, lock)
		}
		if err == nil {
			return tmp, lock, name, nil
		}
		lock.Close()
	}
	tmp.Close()
	dir.Remove(name)
	return nil, nil, "", fmt.Errorf("lock %s in %s: %w", name, dir.Name(), err)
}

// sameFile returns an error wrapping os.ErrNotExist where name in dir is
// no longer the file f (removed, or another file put there).
func sameFile(dir *os.Root, name string, f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	cur, err := dir.Lstat(name)
	if err != nil {
		return err
	}
	if !os.SameFile(fi, cur) {
		return fmt.Errorf("%s was replaced: %w", name, os.ErrNotExist)
	}
	return nil
}

// flock is syscall.Flock, which tests replace to act as an NFSv4 client.
var flock = syscall.Flock

// flockWait takes an exclusive flock on f, waiting for it: only
// removeDeadTemps holds another's, and only while it removes a file.
func flockWait(f *os.File) error {
	for {
		err := flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// removeDeadTemps removes the regular files of dir named prefix* that no
// live download holds (createLockedTemp): those of a wal-fetch killed
// during its download (kill -9, or its exit 10 s after a signal), up to a
// segment each. Left until they are old, they filled a small pg_wal and
// every following wal-fetch failed for want of space. A file whose lock
// is held is a live download's (the prefetch worker's, or a call by hand
// beside PostgreSQL's) and is left alone; where flock fails, a file last
// written more than staleFetchTemp ago is removed. It is housekeeping:
// errors are ignored, and the download reports what lack of space remains.
//
// It looks at the names of the prefix alone (storage.NamesWithPrefix):
// wal-fetch runs it on pg_wal, hundreds of segments, at every call.
func removeDeadTemps(dir *os.Root, prefix string) {
	names, _ := storage.NamesWithPrefix(dir, prefix)
	for _, name := range names {
		removeDeadTemp(dir, name)
	}
}

// removeDeadTemp removes name from dir if it is a regular file whose lock
// can be taken, checking after the lock that the name is still the file
// locked. An empty one is left until it is staleFetchTemp old: it may be
// a live download's between its create and its lock (createLockedTemp),
// and it takes no room.
func removeDeadTemp(dir *os.Root, name string) {
	fi, err := dir.Lstat(name)
	if err != nil || !fi.Mode().IsRegular() {
		return
	}
	// For writing, as createLockedTemp's lock (NFSv4), or for reading
	// where this user may not write it (another user's download, a
	// wal-fetch run by hand as root): a local flock needs no more.
	f, err := dir.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		if f, err = dir.Open(name); err != nil {
			return
		}
	}
	defer f.Close()
	err = flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	switch {
	case errors.Is(err, syscall.EWOULDBLOCK), errors.Is(err, syscall.EINTR):
		return
	case err != nil:
		// No locks here: only the age tells.
		if fi.ModTime().After(time.Now().Add(-staleFetchTemp)) {
			return
		}
	default:
		// Locked, it cannot grow: its size is what its writer wrote
		// while it held the lock, before it died.
		cur, err := f.Stat()
		if err != nil || cur.Size() == 0 && cur.ModTime().After(time.Now().Add(-staleFetchTemp)) {
			return
		}
	}
	if sameFile(dir, name, f) == nil {
		_ = dir.Remove(name)
	}
}

// noSpace adds to err, where it is ENOSPC, how much space the file system
// of dir (pg_wal) has free and what to do: the download needs room for a
// whole segment, and what wal-fetch can remove (dead downloads' files, the
// prefetch spool) it already has.
func noSpace(dir *os.Root, err error) error {
	if !errors.Is(err, syscall.ENOSPC) {
		return err
	}
	d, derr := dir.Open(".")
	if derr != nil {
		return err
	}
	defer d.Close()
	var st syscall.Statfs_t
	if serr := syscall.Fstatfs(int(d.Fd()), &st); serr != nil {
		return err
	}
	return fmt.Errorf("%w (the file system of %s has %d bytes free, after removing hoard's dead downloads and prefetched segments: free space there)",
		err, dir.Name(), st.Bavail*uint64(st.Bsize))
}
