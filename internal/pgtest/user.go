package pgtest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/testio"
)

// ServerUser is the unprivileged user that runs server processes when the
// tests run as root: initdb and postgres refuse to run as root.
const ServerUser = "postgres"

var serverIDs = sync.OnceValues(func() ([2]int, error) {
	u, err := user.Lookup(ServerUser)
	if err != nil {
		return [2]int{}, fmt.Errorf("look up user %s: %w", ServerUser, err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return [2]int{}, fmt.Errorf("parse uid of %s: %w", ServerUser, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return [2]int{}, fmt.Errorf("parse gid of %s: %w", ServerUser, err)
	}
	return [2]int{uid, gid}, nil
})

// asRoot reports whether the test process is root, so server processes
// must switch to ServerUser.
func asRoot() bool { return os.Geteuid() == 0 }

// serverUser returns the uid and gid server processes run as, and whether a
// switch is needed at all. It skips or fails the test when we are root and
// ServerUser does not exist.
func serverUser(t testing.TB) (uid, gid int, switchUser bool) {
	t.Helper()
	if !asRoot() {
		return os.Geteuid(), os.Getegid(), false
	}
	ids, err := serverIDs()
	if err != nil {
		testio.Unavailable(t, "pgtest: running as root needs user %s: %v", ServerUser, err)
	}
	return ids[0], ids[1], true
}

// RunAs makes cmd run as the server's user (postgres) when the test process
// is root, so that what it writes is usable by the server and it can read
// the server's files; it leaves cmd unchanged otherwise. Tests use it for
// anything the server would run itself, such as an archive_command.
func RunAs(cmd *exec.Cmd) {
	if !asRoot() {
		return
	}
	ids, err := serverIDs()
	if err != nil {
		// Leave cmd as is: the command fails visibly with its own error
		// (initdb, postgres), or runs as root where that is harmless.
		return
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{
		Uid:         uint32(ids[0]),
		Gid:         uint32(ids[1]),
		NoSetGroups: true,
	}
}

// Chown gives path, and everything under it, to the server's user when the
// tests run as root. It does nothing otherwise.
func Chown(t testing.TB, path string) {
	t.Helper()
	uid, gid, ok := serverUser(t)
	if !ok {
		return
	}
	err := filepath.WalkDir(path, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatalf("pgtest: chown %s: %v", path, err)
	}
}

// TempDir returns a new empty directory owned by the server's user, mode
// 0700, removed when the test ends. Use it for anything the server writes:
// tablespaces, WAL archives, restored data directories. t.TempDir is not
// enough when running as root: its directories are root's and mode 0700.
func TempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		t.Fatalf("pgtest: create temp dir: %v", err)
	}
	t.Cleanup(func() {
		if err := removeSettled(dir, time.Minute); err != nil {
			t.Errorf("pgtest: remove %s: %v", dir, err)
		}
	})
	Chown(t, dir)
	return dir
}

// removeSettled removes dir and everything in it, trying again every
// 100 ms for up to wait while the removal fails because a directory
// filled up meanwhile: a process the test started but does not wait for
// (hoard wal-fetch's detached prefetch worker, which downloads into
// pg_wal/hoard-prefetch after PostgreSQL stopped) may still be writing.
func removeSettled(dir string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		err := os.RemoveAll(dir)
		if err == nil || !errors.Is(err, syscall.ENOTEMPTY) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
