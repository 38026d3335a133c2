package storage

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The create lock file is hoard's own, but whoever can write the storage
// directory can plant something under its name: a link is not followed
// (a Create fails, naming it and what to do), nor is a FIFO waited on,
// and a directory fails a Create the same way.
func TestLocal_CreateLockPlanted(t *testing.T) {
	for name, plant := range map[string]func(p, outside string) error{
		"ErrLink": func(p, outside string) error { return os.Symlink(outside, p) },
		"ErrFIFO": func(p, _ string) error { return syscall.Mkfifo(p, 0o600) },
		"ErrDir":  func(p, _ string) error { return os.Mkdir(p, 0o755) },
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			root := t.TempDir()
			outside := filepath.Join(t.TempDir(), "file")
			if err := os.WriteFile(outside, []byte("keep"), 0o600); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(root, "site", "xlog")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			lock := filepath.Join(dir, createLockName)
			if err := plant(lock, outside); err != nil {
				t.Fatal(err)
			}
			l := NewLocal(root)
			err := l.Create(ctx, "site/xlog/000000010000000000000001", strings.NewReader("wal"), nil)
			if err == nil || !strings.Contains(err.Error(), lock) || !strings.Contains(err.Error(), "remove it") {
				t.Fatalf("Create beside a planted lock file = %v, want an error naming %s and saying to remove it", err, lock)
			}
			if b, err := os.ReadFile(outside); err != nil || string(b) != "keep" {
				t.Errorf("the file the link names: %q, %v", b, err)
			}
			if err := os.Remove(lock); err != nil {
				t.Fatal(err)
			}
			if err := l.Create(ctx, "site/xlog/000000010000000000000001", strings.NewReader("wal"), nil); err != nil {
				t.Errorf("Create once the planted file is removed: %v", err)
			}
		})
	}
}

// A hard link is a regular file, and O_NOFOLLOW does not see it: whoever
// can write the storage directory can link the lock file's name to any
// file of the same file system they may link (any file at all where
// fs.protected_hardlinks is 0). Its mode and bytes are not hoard's to
// change: a lock file that made the others' read bit come back with a
// chmod would have made a 0600 file of hoard's user (its .pgpass, a
// segment of a site without keys) or of root (/etc/shadow, for a
// wal-fetch or restore run as root) readable by all.
func TestLocal_CreateLockHardLink(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	outside := filepath.Join(root, "secret") // the same file system, outside the site
	if err := os.WriteFile(outside, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "site", "xlog")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(outside, filepath.Join(dir, createLockName)); err != nil {
		t.Fatal(err)
	}
	l := NewLocal(root)
	const key = "site/xlog/000000010000000000000001"
	if err := l.Create(ctx, key, strings.NewReader("wal"), nil); err != nil {
		t.Fatalf("Create beside a lock file linked to another file: %v", err)
	}
	wantStored(t, l, key, "wal")
	fi, err := os.Stat(outside)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fi.Mode().Perm(), os.FileMode(0o600); got != want {
		t.Errorf("the linked file's mode = %v, want %v: hoard changed a file that is not its lock", got, want)
	}
	if b, err := os.ReadFile(outside); err != nil || string(b) != "keep" {
		t.Errorf("the linked file: %q, %v", b, err)
	}
}

// A lock someone holds for good (flock(1) on a planted lock file, a
// hoard stopped with SIGSTOP inside its fsync) must not make every
// wal-push wait in silence while pg_wal fills: after lockPatience the
// write fails, naming the file and what to look for. A Sync fails too:
// a wal-push that finds its segment stored while the writer that linked
// it is stuck in the directory's fsync (a loaded disk) must not report
// it archived, since that writer removes it should the fsync fail. The
// retrying wrapper does not wait again: archive_command and the daemon
// try again later.
func TestLocal_CreateLockHeld(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	root := t.TempDir()
	l := NewLocal(root)
	l.lockPatience = 50 * time.Millisecond
	const stored = "site/xlog/000000010000000000000001"
	if err := l.Create(ctx, stored, strings.NewReader("wal"), nil); err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(root, "site", "xlog", createLockName)
	f, err := os.Open(lock)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	const key = "site/xlog/000000010000000000000002"
	err = l.Create(ctx, key, strings.NewReader("wal"), nil)
	if !errors.Is(err, ErrLockHeld) || ctx.Err() != nil || !strings.Contains(err.Error(), lock) || !strings.Contains(err.Error(), "holds") {
		t.Fatalf("Create while another holds the lock for good = %v (context: %v), want ErrLockHeld naming %s and who holds it", err, ctx.Err(), lock)
	}
	if _, err := l.Stat(ctx, key); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat after the failed Create = %v, want ErrNotFound", err)
	}
	if err := l.Sync(ctx, stored); !errors.Is(err, ErrLockHeld) {
		t.Errorf("Sync while another holds the lock = %v, want ErrLockHeld", err)
	}
	retried := 0
	r := WithRetry(l, RetryOptions{Initial: time.Millisecond, OnRetry: func(string, string, int, error) { retried++ }})
	if err := Sync(ctx, r, stored); !errors.Is(err, ErrLockHeld) || retried != 0 {
		t.Errorf("Sync through WithRetry = %v after %d retries, want ErrLockHeld after none", err, retried)
	}
	if err := f.Close(); err != nil { // releases the lock
		t.Fatal(err)
	}
	if err := l.Create(ctx, key, strings.NewReader("wal"), nil); err != nil {
		t.Errorf("Create once the lock is released: %v", err)
	}
	wantStored(t, l, key, "wal")
	if err := Sync(ctx, r, stored); err != nil {
		t.Errorf("Sync once the lock is released: %v", err)
	}
}

// On a file system without locks (an NFS mount whose server runs no lock
// manager: flock fails with ENOLCK) Create and Sync go on unlocked, as
// before the lock, rather than stop archiving.
func TestLocal_CreateNoLocks(t *testing.T) {
	ctx := context.Background()
	calls := 0
	l := &Local{root: t.TempDir(), flock: func(int, int) error { calls++; return syscall.ENOLCK }}
	const key = "site/xlog/000000010000000000000001"
	if err := l.Create(ctx, key, strings.NewReader("wal"), nil); err != nil {
		t.Fatalf("Create without locks: %v", err)
	}
	if err := l.Create(ctx, key, strings.NewReader("wal"), nil); !errors.Is(err, ErrExist) {
		t.Errorf("Create of a stored key without locks = %v, want ErrExist", err)
	}
	if err := l.Sync(ctx, key); err != nil {
		t.Errorf("Sync without locks: %v", err)
	}
	if calls < 3 {
		t.Errorf("flock called %d times, want one per Create and Sync", calls)
	}
	wantStored(t, l, key, "wal")
}

// The first writer of a directory creates its lock file; every other
// user that may write objects there must be able to take the lock too.
// A root-run `hoard wal-push` (by hand, or a restore_command tried as root)
// that made the lock file in xlog/ must not make every later wal-push of
// the server's user fail: flock needs no write access, so the file is
// opened read-only by a user who may not write it, and made readable by
// all. On NFSv4, where that user's exclusive flock of a read-only file
// fails (nfs4Flock), the write goes on unlocked. The second writer runs on
// a thread whose file system uid is nobody's (setfsuid, which drops root's
// file capabilities for that thread only).
func TestLocal_CreateLockOtherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to act as two users")
	}
	t.Run("Local", func(t *testing.T) { testCreateLockOtherUser(t, nil) })
	locked := 0
	t.Run("NFSv4", func(t *testing.T) { testCreateLockOtherUser(t, nfs4Flock(&locked)) })
}

func testCreateLockOtherUser(t *testing.T, flock func(fd, how int) error) {
	ctx := context.Background()
	root := t.TempDir()
	dir := filepath.Join(root, "site", "xlog")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(root), root, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	l := &Local{root: root, flock: flock}
	if err := l.Create(ctx, "site/xlog/000000010000000000000001", strings.NewReader("root's"), nil); err != nil {
		t.Fatalf("Create as root: %v", err)
	}
	const nobody = 65534
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Setfsuid(nobody); err != nil {
			errc <- err
			return
		}
		errc <- l.Create(ctx, "site/xlog/000000010000000000000002", strings.NewReader("nobody's"), nil)
	}()
	if err := <-errc; err != nil {
		t.Fatalf("Create as another user beside root's lock file: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, "000000010000000000000002"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != nobody {
		t.Errorf("the second object belongs to uid %d, want %d: the test did not act as another user", st.Uid, nobody)
	}
}

// nfs4Flock acts as flock(2) on an NFSv4 mount, where the client emulates
// it with a lock on the server and refuses an exclusive lock on a file
// not open for writing (fs/nfs/nfs4proc.c nfs4_proc_lock: "Don't rely on
// the VFS having checked the file open mode, since it won't do this for
// flock() locks", EBADF). locked counts the locks it took.
func nfs4Flock(locked *int) func(fd, how int) error {
	return func(fd, how int) error {
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		if err != nil {
			return err
		}
		if how&syscall.LOCK_EX != 0 && flags&unix.O_ACCMODE == unix.O_RDONLY {
			return syscall.EBADF
		}
		if err := syscall.Flock(fd, how); err != nil {
			return err
		}
		*locked++
		return nil
	}
}

// On an NFSv4 mount an exclusive flock needs a file open for writing: the
// lock file is opened read-write by whoever may write it, so that Create,
// Put, Sync and a writer finding a new directory (mkdir) all take the
// lock there rather than fail every write of the store with EBADF.
func TestLocal_CreateLockNFSv4(t *testing.T) {
	ctx := context.Background()
	locked := 0
	l := &Local{root: t.TempDir(), flock: nfs4Flock(&locked)}
	const key = "site/xlog/000000010000000000000001"
	if err := l.Create(ctx, key, strings.NewReader("wal"), nil); err != nil {
		t.Fatalf("Create on NFSv4: %v", err)
	}
	if err := l.Sync(ctx, key); err != nil {
		t.Errorf("Sync on NFSv4: %v", err)
	}
	if err := l.Put(ctx, "site/xlog/000000010000000000000002.partial", strings.NewReader("part"), nil); err != nil {
		t.Errorf("Put on NFSv4 (mkdir finds site/xlog settled): %v", err)
	}
	if locked < 5 {
		t.Errorf("%d locks taken, want one per new directory, Create, Sync, and Put", locked)
	}
	wantStored(t, l, key, "wal")
}

// A lock file the server's user cannot read (another user's, 0600: made
// by hand, by an older hoard run as root, or planted) fails its uploads;
// the error names the file and the two ways forward.
func TestLocal_CreateLockUnreadable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to act as two users")
	}
	ctx := context.Background()
	root := t.TempDir()
	dir := filepath.Join(root, "site", "xlog")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(root), root, filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	lock := filepath.Join(dir, createLockName)
	if err := os.WriteFile(lock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l := NewLocal(root)
	const key = "site/xlog/000000010000000000000001"
	err := asNobody(func() error { return l.Create(ctx, key, strings.NewReader("wal"), nil) })
	if !errors.Is(err, ErrPermanent) || !strings.Contains(err.Error(), lock) || !strings.Contains(err.Error(), "chmod 0644") ||
		!strings.Contains(err.Error(), "remove it") || strings.Contains(err.Error(), "mode of the storage directory") {
		t.Fatalf("Create as another user beside root's 0600 lock file = %v, want a permanent error naming %s, chmod 0644 and removing it, not the directory", err, lock)
	}
	if err := os.Chmod(lock, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := asNobody(func() error { return l.Create(ctx, key, strings.NewReader("wal"), nil) }); err != nil {
		t.Errorf("Create once the lock file is readable: %v", err)
	}
}

// A directory where the server's user may not create the lock file (root
// made it, and the object in it, with an older hoard or by hand) fails a
// Sync with the directory's permission hint, as a Put there fails
// (TestLocal_Put_ErrDirNotWritable): not as if the object were missing,
// which the read-only retry of the open (that finds no file) would have
// said, and wal-push, which Syncs a segment it finds stored, would have
// reported for a segment that is there.
func TestLocal_CreateLockUncreatable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to act as two users")
	}
	ctx := context.Background()
	root := t.TempDir()
	l := NewLocal(root)
	const key = "site/xlog/000000010000000000000001"
	if err := l.Create(ctx, key, strings.NewReader("wal"), nil); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "site", "xlog")
	if err := os.Remove(filepath.Join(dir, createLockName)); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(root), root, filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	err := asNobody(func() error { return l.Sync(ctx, key) })
	if !errors.Is(err, fs.ErrPermission) || !errors.Is(err, ErrPermanent) || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "owner and mode of the storage directory") {
		t.Errorf("Sync as another user where it may not create the lock file = %v, want the directory's permission error", err)
	}
}

// asNobody runs f on a thread whose file system uid is nobody's
// (setfsuid, which drops root's file capabilities for that thread only)
// and returns its error.
func asNobody(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Setfsuid(65534); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}

// searchableTempDir returns a new temporary directory that every user
// may enter and list (mode 0755, its parent too).
func searchableTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// A directory a Put must create in a directory its user may not write
// (the storage directory at first use, or a new site's folder) fails the
// Put with the permission error, naming that directory: not with
// ErrNotFound, which says that an object is missing. The lock file the
// creator takes there cannot be made either, and the read-only open
// that serves a user who may not write an existing one finds none.
func TestLocal_Put_ErrDirNotWritable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to act as another user")
	}
	ctx := context.Background()
	// Each returns the storage directory and the directory below base
	// (root's, mode 0755) that nobody may not write.
	for name, layout := range map[string]func(t *testing.T, base string) (root, dir string){
		"StorageDirectory": func(t *testing.T, base string) (string, string) {
			return filepath.Join(base, "store"), base
		},
		"ObjectDirectory": func(t *testing.T, base string) (string, string) {
			site := filepath.Join(base, "site") // made by hand: no lock file
			if err := os.Mkdir(site, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(base, 0o777); err != nil {
				t.Fatal(err)
			}
			return base, site
		},
	} {
		t.Run(name, func(t *testing.T) {
			root, dir := layout(t, searchableTempDir(t))
			l := NewLocal(root)
			err := asNobody(func() error {
				return l.Put(ctx, "site/xlog/000000010000000000000001", strings.NewReader("wal"), nil)
			})
			if !errors.Is(err, fs.ErrPermission) || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), dir) {
				t.Fatalf("Put as a user who may not write %s = %v, want a permission error naming it, not ErrNotFound", dir, err)
			}
			t.Log(err)
		})
	}
}

// A storage directory hoard made leaves a lock file in its parent, which
// a writer that finds the directory takes, to wait for a creator still
// fsyncing that parent. A user who may enter the parent but not list it
// (mode 0711, as a home directory may be) must still write objects in an
// existing storage directory, and still wait for that lock.
func TestLocal_Put_ParentNotReadable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to act as another user")
	}
	ctx := context.Background()
	parent := filepath.Join(searchableTempDir(t), "parent")
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	second := newSecondWriter()
	l := &Local{root: filepath.Join(parent, "store"), lockWait: second.lockWait}
	const key = "site/xlog/000000010000000000000001"
	if err := l.Put(ctx, key, strings.NewReader("root's"), nil); err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(parent, createLockName)
	if _, err := os.Lstat(lock); err != nil {
		t.Fatalf("the storage directory's parent has no lock file: %v", err)
	}
	for _, d := range []string{l.root, filepath.Join(l.root, "site"), filepath.Join(l.root, "site", "xlog")} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(parent, 0o711); err != nil {
		t.Fatal(err)
	}
	// A creator that holds the parent's lock, as while it fsyncs it.
	f, err := os.Open(lock)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	const key2 = "site/xlog/000000010000000000000002"
	second.start(t, func() error {
		return asNobody(func() error { return l.Put(ctx, key2, strings.NewReader("nobody's"), nil) })
	})
	select {
	case err := <-second.done:
		t.Fatalf("Put as a user who may not list the storage directory's parent, while its lock is held = %v, want it to wait for the lock", err)
	default:
	}
	if err := f.Close(); err != nil { // releases the lock
		t.Fatal(err)
	}
	if err := second.result(t); err != nil {
		t.Fatalf("Put as a user who may not list the storage directory's parent: %v", err)
	}
	wantStored(t, l, key2, "nobody's")
}
