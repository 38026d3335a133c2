package restore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/storage"
)

// ErrTargetNotEmpty is returned (wrapped) when the target directory, or a
// tablespace directory, holds files and Overwrite is not set.
var ErrTargetNotEmpty = errors.New("directory is not empty")

// targetDir is a directory restore writes into, and how its errors name
// it. The target directory and a tablespace directory the caller chose
// (mapped, or under TablespaceBaseDir) are the operator's own paths:
// named whole, however long, so that the operator sees which one failed.
// A tablespace restored to its path in the backup's manifest (planted)
// has a path that whoever can write the storage chooses: quoted by
// archive.Quoted, like every other name from the storage.
type targetDir struct {
	path    string
	planted bool
}

// String names d in an error.
func (d targetDir) String() string {
	if d.planted {
		return archive.Quoted(d.path)
	}
	return d.path
}

// pathErr is quotedPath for an error of a file in d: d's own path stays
// whole unless planted.
func (d targetDir) pathErr(err error) error {
	if d.planted {
		return quotedPath(err, "")
	}
	return quotedPath(err, d.path)
}

// checkEmptyDir reports whether d is absent, or empty, or holds only
// lost+found (a fresh file system's mount point). It changes nothing.
func checkEmptyDir(d targetDir) error { return checkEmpty(d, nil) }

// checkEmptyTarget is checkEmptyDir for the target directory dir, which
// may also hold what a restore killed before it wrote a file of the
// backup leaves: pg_wal, empty or holding only wal-fetch's prefetch spool
// (archive.SpoolDirName), where the check of the backup's WAL keeps
// segments from the start (startWALCheck). The same command then
// restores as into an empty directory, without --overwrite; the next
// check clears the spool before it keeps anything (archive.CheckWAL).
// With a WAL directory walDir (Options.WALDir), that pg_wal is instead
// the link to walDir such a restore made (linkWAL).
func checkEmptyTarget(dir, walDir string) error {
	return checkEmpty(targetDir{path: dir}, func(e fs.DirEntry) bool {
		if e.Name() != "pg_wal" {
			return false
		}
		pgWAL := filepath.Join(dir, "pg_wal")
		if walDir == "" {
			return onlySpool(pgWAL)
		}
		link, err := os.Readlink(pgWAL)
		return err == nil && link == walDir
	})
}

// checkEmptyWALDir is checkEmptyDir for the WAL directory dir
// (Options.WALDir), which may also hold, as the target's own pg_wal may,
// what a restore killed before it wrote a file of the backup leaves: the
// prefetch spool's directory (not a link).
func checkEmptyWALDir(dir string) error {
	return checkEmpty(targetDir{path: dir}, func(e fs.DirEntry) bool {
		return e.Name() == archive.SpoolDirName && e.IsDir()
	})
}

// checkEmpty reports whether d is absent, or holds nothing but lost+found
// and the entries left accepts (nil: none).
func checkEmpty(d targetDir, left func(fs.DirEntry) bool) error {
	ents, err := os.ReadDir(d.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read directory %s: %w", d, d.pathErr(err))
	}
	for _, e := range ents {
		if e.Name() == "lost+found" || left != nil && left(e) {
			continue
		}
		// The caller's hint says what to do (hoard restore: --overwrite).
		return fmt.Errorf("%w: %s holds %s", ErrTargetNotEmpty, d.path, e.Name())
	}
	return nil
}

// onlySpool reports whether pg_wal is a directory (not a link) that is
// empty or holds only the prefetch spool's directory (not a link).
func onlySpool(pgWAL string) bool {
	if fi, err := os.Lstat(pgWAL); err != nil || !fi.IsDir() {
		return false
	}
	ents, err := os.ReadDir(pgWAL)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if e.Name() != archive.SpoolDirName || !e.IsDir() {
			return false
		}
	}
	return true
}

// prepareDir creates d (mode 0700) or, when wipe is set, removes its
// contents but not d itself (it may be a mount point) nor lost+found,
// global/pg_control first (removeControl); then it checks that a file can
// be written there.
func prepareDir(d targetDir, wipe bool) error {
	dir := d.path
	if wipe {
		if err := removeControl(dir); err != nil {
			return err
		}
		ents, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("read directory %s: %w", d, d.pathErr(err))
		}
		for _, e := range ents {
			if e.Name() == "lost+found" {
				continue
			}
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("remove %s: %w", filepath.Join(dir, e.Name()), err)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create directory %s: %w", d, d.pathErr(err))
	}
	// PostgreSQL refuses a data directory readable by others.
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("chmod %s: %w", d, d.pathErr(err))
	}
	return writeTest(d)
}

// writeTest writes, syncs and removes a small file in d, so that a
// read-only or full file system is found before any download.
func writeTest(d targetDir) error {
	f, err := os.CreateTemp(d.path, ".hoard-write-test-*")
	if err != nil {
		return fmt.Errorf("write test in %s: %w", d, d.pathErr(err))
	}
	name := f.Name()
	_, werr := f.Write([]byte("hoard"))
	serr := f.Sync()
	cerr := f.Close()
	rerr := os.Remove(name)
	if err := errors.Join(werr, serr, cerr, rerr); err != nil {
		return fmt.Errorf("write test in %s: %w", d, d.pathErr(err))
	}
	return nil
}

// removeControl removes global/pg_control of dir, when dir holds a
// global directory (not a link) with one, and syncs global so that the
// removal is on disk before anything else is removed. Emptying a data
// directory takes an unlink per file: one that fails, or a kill or a
// crash halfway, must not leave pg_control beside part of the old files,
// which PostgreSQL would start on. (PG_VERSION, which sorts first, is
// removed first too, and PostgreSQL refuses a directory without it, but
// that is an accident of the order.)
func removeControl(dir string) error {
	global := filepath.Join(dir, "global")
	if fi, err := os.Lstat(global); err != nil || !fi.IsDir() {
		return nil // nothing to remove, or a link RemoveAll removes itself
	}
	root, err := os.OpenRoot(global)
	if err != nil {
		return fmt.Errorf("open %s: %w", global, err)
	}
	defer root.Close()
	if err := root.Remove("pg_control"); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove %s: %w", filepath.Join(global, "pg_control"), err)
	}
	if err := storage.SyncRoot(root); err != nil {
		return fmt.Errorf("sync %s: %w", global, err)
	}
	return nil
}

// ErrServerRunning is returned (wrapped) when Overwrite would empty the
// data directory of a running PostgreSQL.
var ErrServerRunning = errors.New("PostgreSQL is running on the target directory")

// checkNotRunning refuses to overwrite dir while its postmaster.pid names a
// live process. As PostgreSQL's own CreateLockFile (miscinit.c) does, a pid
// that is this process or its parent counts as stale; a postmaster.pid
// that cannot be read or holds no pid is refused too: a person must look.
func checkNotRunning(dir string) error {
	root, err := os.OpenRoot(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer root.Close()
	b, err := readRegular(root, "postmaster.pid", 4096)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	stale := "remove " + filepath.Join(dir, "postmaster.pid") + " if no PostgreSQL runs on the directory"
	if err != nil {
		return fmt.Errorf("%s holds a postmaster.pid that cannot be read (%v): %s: %w", dir, err, stale, ErrServerRunning)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return fmt.Errorf("%s holds a postmaster.pid without a process id: %s: %w", dir, stale, ErrServerRunning)
	}
	if pid == os.Getpid() || pid == os.Getppid() || !processAlive(pid) {
		return nil
	}
	return fmt.Errorf("%s: postmaster.pid names process %d, which is running: stop PostgreSQL first (if process %d is not PostgreSQL, %s): %w",
		dir, pid, pid, stale, ErrServerRunning)
}

// processAlive reports whether a process pid exists (kill(pid, 0); EPERM
// means it exists under another user).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
