package verify

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

const (
	// scratchPrefix starts the names of test restores' scratch directories.
	scratchPrefix = "hoard-restore-test-"
	// scratchLock is the file in a scratch directory that its test restore
	// holds flock'ed while it runs. The kernel drops the lock when the
	// process dies, however it dies, so a scratch directory whose lock
	// nobody holds was left by a run that was killed (SIGKILL, the OOM
	// killer, a power cut) with a whole restored cluster in it.
	scratchLock = ".hoard-restore-test.lock"
	// staleUnlocked is the age past which a scratch directory without a
	// lock file (an earlier hoard's, or one killed between making it and
	// locking it) counts as left behind.
	staleUnlocked = time.Hour
)

// scratchLockHook, set by tests, runs in newScratch between creating the
// lock file and locking it.
var scratchLockHook func(path string)

// newScratch makes a scratch directory in dir ("" the system's temporary
// directory) and locks it: the lock is held until lock is closed. The
// lock file is created under another name and gets scratchLock once it is
// locked (the lock stays with the open file): another test restore's
// cleanup never finds it unlocked while this one runs, and a fresh
// directory without it stays (staleScratch).
func newScratch(dir string) (path string, lock *os.File, err error) {
	path, err = os.MkdirTemp(dir, scratchPrefix)
	if err != nil {
		return "", nil, fmt.Errorf("create scratch directory: %w", err)
	}
	tmp := filepath.Join(path, scratchLock+".new")
	lock, err = os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		if scratchLockHook != nil {
			scratchLockHook(path)
		}
		if err = flock(lock); err == nil {
			err = os.Rename(tmp, filepath.Join(path, scratchLock))
		}
		if err != nil {
			_ = lock.Close()
		}
	}
	if err != nil {
		_ = os.RemoveAll(path)
		return "", nil, fmt.Errorf("lock scratch directory %s: %w", path, err)
	}
	return path, lock, nil
}

// removeStaleScratch removes the scratch directories in dir ("" the
// system's temporary directory) that killed test restores left: without
// it each kill leaves a copy of the cluster behind, until the disk fills
// (the WAL spool's disk, as often as not). A directory whose lock another
// process holds is a test restore running (hoard verify --restore beside
// the daemon), and stays; so does anything that is not a directory.
// Errors are logged: this is housekeeping, and the test goes on.
func removeStaleScratch(dir string, log zerolog.Logger) {
	if dir == "" {
		dir = os.TempDir()
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), scratchPrefix) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if !staleScratch(p, e) {
			continue
		}
		// A PostgreSQL still running there finds its postmaster.pid gone
		// and shuts down (RecheckDataDirLockFile, miscinit.c).
		if err := os.RemoveAll(p); err != nil {
			log.Warn().Err(err).Str("dir", p).Msg("restore test: remove the scratch directory of a killed run")
			continue
		}
		log.Info().Str("dir", p).Msg("restore test: removed the scratch directory of a killed run")
	}
}

// staleScratch reports whether the scratch directory p, e its entry, was
// left by a run that is gone.
func staleScratch(p string, e fs.DirEntry) bool {
	f, err := os.OpenFile(filepath.Join(p, scratchLock), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		fi, err := e.Info()
		return err == nil && time.Since(fi.ModTime()) > staleUnlocked
	}
	if err != nil {
		return false // another user's, or not ours to judge
	}
	defer f.Close()
	return flock(f) == nil
}

// flock takes an exclusive lock on f without waiting.
func flock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
