package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// createLockName is the lock file of a local store's object directory.
// Create holds its lock from the first link of an object to the end of
// the directory fsync that makes the links durable (and, when that fsync
// fails, the removal of what it linked), Put from its first rename to the
// end of its last directory fsync or that removal, mkdir from its mkdir
// of a new directory in it to the end of its fsync or the directory's
// removal (a writer that finds the directory waits for it); Sync holds it while it
// checks and fsyncs an object it found. So an object whose fsync failed is gone
// before any Sync sees it, and one that a Sync reported durable is never
// removed by the writer that linked it (see Create). The name starts with
// a dot: never listed (hidden), never a key (checkFileKey), and, being no
// temp file, never removed by List. Delete removes it, under its lock,
// with a directory it leaves holding nothing else (removeEmptyDir).
const createLockName = ".hoard-create-lock"

// lockPoll is how often lockDir tries again a lock another writer holds.
// Holders keep it for a few fsyncs.
const lockPoll = 10 * time.Millisecond

// lockFileMode is the lock file's mode: see openLockFile.
const lockFileMode = 0o644

// lockPatience is how long lockFile waits for a lock another holds
// before it fails the write (ErrLockHeld). Holders keep it for a few
// fsyncs; one held longer is a writer stopped or stuck (a hung NFS
// server), or held on purpose by someone who can write the storage
// directory, and a wal-push waiting for it in silence would let pg_wal
// fill with nothing in PostgreSQL's log. The waiter has linked and
// renamed nothing yet, so it fails with nothing stored, and reports
// nothing stored (Sync fails too): a slow holder that is still right (an
// fsync stalled longer than this by an overloaded disk) finishes its own
// write, and the failed one is tried again later (archive_command, the
// daemon's upload loop; WithRetry does not wait again).
const lockPatience = 2 * time.Minute

// ErrLockHeld is wrapped by the error of a local write that waited for a
// directory's create lock longer than a writer holds it.
var ErrLockHeld = errors.New("create lock held too long")

// lockDir takes the create lock of the object directory d (createLockName,
// flock(2) exclusive: on Linux, also between two opens in one process,
// and emulated over NFS) and returns the func that releases it. It waits
// for another holder while ctx lasts, and for lockPatience at most
// (ErrLockHeld); lockWait, when set, is called once when it must wait
// (tests). The name is in a directory anyone who can write the storage
// can write, and they may plant something under it: a symbolic link is
// not followed, anything but a regular file is refused naming it (a
// FIFO is not waited on), a hard link to a file they may link is used as
// the lock but never read, written or given another mode (ownLockFile),
// and a lock they hold fails the write after lockPatience.
//
// Delete removes the lock file with an emptied directory
// (removeEmptyDir), under the lock: a writer that opened the file before
// and gets its lock after finds it is no longer d's and locks d's new one
// (made again by the next writer), or fails with ENOENT when d is gone.
func (l *Local) lockDir(ctx context.Context, d *os.Root) (unlock func(), err error) {
	return l.lockCurrent(ctx, d, true)
}

// lockCurrent opens (creating it, with create) and locks d's lock file,
// and holds the lock only if the file is still d's once it is held (see
// lockDir); else it tries again. Without create, a lock file that is gone
// once held was d's last one, and nobody holds it: fs.ErrNotExist.
func (l *Local) lockCurrent(ctx context.Context, d *os.Root, create bool) (unlock func(), err error) {
	for {
		f, readOnly, err := openLockFile(d, create)
		if err != nil {
			return nil, err
		}
		fi, err := f.Stat()
		if err != nil {
			_ = f.Close()
			return nil, err
		}
		unlock, err := l.lockFile(ctx, d.Name(), f, readOnly)
		if err != nil {
			return nil, err
		}
		now, err := d.Lstat(createLockName)
		if err == nil && os.SameFile(fi, now) {
			return unlock, nil
		}
		unlock()
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}

// lockIfPresent takes the create lock of d as lockDir does, if d has a
// lock file; if not, nobody ever held it, and unlock does nothing. A
// writer that only waits for another one settling a new entry of d
// (mkdir) needs no write access to d, which lockDir's creating the file
// would.
func (l *Local) lockIfPresent(ctx context.Context, d *os.Root) (unlock func(), err error) {
	unlock, err = l.lockCurrent(ctx, d, false)
	if errors.Is(err, fs.ErrNotExist) {
		return func() {}, nil
	}
	return unlock, err
}

// lockParentIfPresent is lockIfPresent for dir, the parent of the
// storage directory (mkdirRoot): outside the store, dir is the
// configuration's path, links and all, and its lock file is opened by
// that path, not followed if it is a link. That needs only search
// permission on dir: a user who may write in the storage directory need
// not be able to list its parent (mode 0711), as an os.Root of dir would
// need.
func (l *Local) lockParentIfPresent(ctx context.Context, dir string) (unlock func(), err error) {
	f, readOnly, err := openParentLock(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return func() {}, nil
	}
	if err != nil {
		return nil, err
	}
	return l.lockFile(ctx, dir, f, readOnly)
}

// lockFile takes the lock of f, the lock file of the directory dir just
// opened (readOnly: not for writing), for lockDir, lockIfPresent and
// lockParentIfPresent, and closes f when it cannot.
func (l *Local) lockFile(ctx context.Context, dir string, f *os.File, readOnly bool) (unlock func(), err error) {
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, plantedLock(f.Name(), fmt.Sprintf("not a regular file (%s)", fi.Mode().Type()), nil)
	}
	if fi.Mode().Perm() != lockFileMode && ownLockFile(fi) {
		// A umask took the others' read bit; only the owner may give it
		// back, and another owner's file is left as it is.
		_ = f.Chmod(lockFileMode)
	}
	flock := syscall.Flock
	if l.flock != nil {
		flock = l.flock
	}
	patience := l.lockPatience
	if patience == 0 {
		patience = lockPatience
	}
	var since time.Time // when a try first found the lock held
	for {
		err := flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return func() { _ = f.Close() }, nil // closing releases the lock
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.ENOLCK), errors.Is(err, syscall.EOPNOTSUPP), errors.Is(err, syscall.ENOSYS):
			// A file system without locks (an NFS mount whose server
			// runs no lock manager): writers go on unlocked, as before
			// the lock existed, rather than stop archiving there. The
			// race the lock closes stays open on such a mount
			// (storage.md says so).
			_ = f.Close()
			return func() {}, nil
		case readOnly && errors.Is(err, syscall.EBADF):
			// NFSv4 emulates flock with a lock on the server, which
			// needs the file open for writing (fs/nfs/nfs4proc.c
			// nfs4_proc_lock), and this user may not write another
			// user's lock file: go on unlocked, as on a file system
			// without locks, rather than stop archiving.
			_ = f.Close()
			return func() {}, nil
		case !errors.Is(err, syscall.EWOULDBLOCK):
			_ = f.Close()
			return nil, fmt.Errorf("lock %s of %s: %w", createLockName, dir, err)
		}
		switch {
		case since.IsZero():
			since = time.Now()
			if l.lockWait != nil {
				l.lockWait()
			}
		case time.Since(since) > patience:
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: held by another for more than %v, where a writer holds it for a few fsyncs: "+
				"a hoard stopped or stuck in an fsync (a hung NFS server, an overloaded disk), or someone holds it on purpose "+
				"(fuser -v %s shows who holds it open): %w", f.Name(), patience, f.Name(), ErrLockHeld)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, ctx.Err()
		case <-time.After(lockPoll):
		}
	}
}

// ownLockFile reports whether the lock file fi may be one hoard
// created: one link and no bytes. Only such a file is given its mode
// back. A hard link to any file the planter may link is a regular file
// too (O_NOFOLLOW does not see it), and its mode must not change, or a
// 0600 file of the user hoard runs as (its .pgpass, a segment of a site
// without keys) or of root (/etc/shadow, for a wal-push run as root
// where fs.protected_hardlinks is 0) would become readable by all. Such
// a file still serves as the lock.
func ownLockFile(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Nlink == 1 && fi.Size() == 0
}

// openLockFile opens the lock file of d, creating it when create is set,
// with no link followed and no wait on a FIFO (openatBeneath). It holds
// no data, and nothing is ever read from or written to it (nor to a
// hard link planted under its name). It is opened for writing where
// this user may write it, since an NFSv4 client refuses an exclusive
// flock on a file open only for reading (fs/nfs/nfs4proc.c
// nfs4_proc_lock: EBADF), and read-only (readOnly) where not, or on a
// read-only mount (where a wal-push of a segment already archived only
// reads and fsyncs): a local flock needs no write access, and every user
// that writes objects in d must be able to lock it, whoever made the
// file first (a wal-push run once as root must not make the server
// user's fail from then on); so it is made readable by all.
func openLockFile(d *os.Root, create bool) (f *os.File, readOnly bool, err error) {
	if create {
		f, err = openatBeneath(d, createLockName, unix.O_RDWR|unix.O_CREAT, lockFileMode)
	} else {
		f, err = openatBeneath(d, createLockName, unix.O_RDWR, 0)
	}
	return openedLock(filepath.Join(d.Name(), createLockName), create, f, err, func() (*os.File, error) {
		return openBeneath(d, createLockName)
	})
}

// openParentLock opens the lock file of dir, the storage directory's
// parent, as openLockFile does, by its path, never creating it: a link
// under its name is not followed, a FIFO not waited on.
func openParentLock(dir string) (f *os.File, readOnly bool, err error) {
	name := filepath.Join(dir, createLockName)
	f, err = os.OpenFile(name, os.O_RDWR|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	return openedLock(name, false, f, err, func() (*os.File, error) {
		return os.OpenFile(name, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	})
}

// openedLock completes the opening of the lock file name for
// openLockFile and openParentLock: f and err are what opening it for
// writing (and creating it, with create) returned, and openReadOnly opens
// it for reading only, for a user who may not write it.
func openedLock(name string, create bool, f *os.File, err error, openReadOnly func() (*os.File, error)) (*os.File, bool, error) {
	readOnly := false
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, unix.EROFS) {
		rf, rerr := openReadOnly()
		// To be created, a lock file that does not exist is one this
		// user may not make: the first error says why (its directory is
		// not writable, or on a read-only mount), not that a file is
		// missing (which a Put would report as ErrNotFound).
		if !create || !errors.Is(rerr, fs.ErrNotExist) {
			f, err, readOnly = rf, rerr, true
		}
	}
	switch {
	case errors.Is(err, unix.ELOOP):
		return nil, false, plantedLock(name, "a symbolic link, which hoard does not follow", err)
	case errors.Is(err, unix.EISDIR):
		return nil, false, plantedLock(name, "a directory", err)
	case errors.Is(err, fs.ErrNotExist):
		return nil, false, err
	case errors.Is(err, fs.ErrPermission) && lockFileExists(name):
		// Refused read-only too: another user's file without the
		// others' read bit.
		return nil, false, &permanentError{msg: fmt.Sprintf("%s is not readable by this user (another user's file, made "+
			"by hand, by an older hoard run as that user, or planted): chmod 0644 it, or remove it, hoard creates "+
			"the file again", name), err: err}
	case err != nil:
		return nil, false, fmt.Errorf("open the lock file: %w", err)
	}
	return f, readOnly, nil
}

// lockFileExists reports whether something is under the lock file's
// name: a refused open of it is then the file's mode, not its
// directory's (that one is also refused where the directory may not be
// searched, and so says nothing of the file).
func lockFileExists(name string) bool {
	_, err := os.Lstat(name)
	return err == nil
}

// plantedLock is the error for what is under the lock file's name at
// path when it is not a regular file: a link, a FIFO, a directory. What
// says which; err is the open's error, if any.
func plantedLock(path, what string, err error) error {
	msg := fmt.Sprintf("%s is %s, not hoard's lock file: someone who can write that directory planted it, "+
		"or it was made by hand; remove it, hoard creates the file again", path, what)
	if err == nil {
		return errors.New(msg)
	}
	return fmt.Errorf("%s: %w", msg, err)
}
