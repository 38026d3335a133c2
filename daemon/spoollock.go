package daemon

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// spoolLockName is the lock file a streaming site's supervisor holds in
// its spool for as long as it runs, and every site's supervisor in its
// folder (Site.Dir). A dot name: readSpool takes it for no WAL,
// cleanSpool for no temporary file.
const spoolLockName = ".hoard-daemon.lock"

// ErrSpoolInUse is wrapped by the error of a site whose spool another
// hoard daemon holds.
var ErrSpoolInUse = errors.New("the spool is in use by another hoard daemon")

// ErrSiteInUse is wrapped by the error of a site whose folder
// (<backup_location>/<site>) another hoard daemon holds.
var ErrSiteInUse = errors.New("the site is in use by another hoard daemon")

// lockSpool takes the lock of the spool dir (created if missing) for
// this process, and writes its pid into the lock file for the error of
// the next one. Two daemons streaming into one spool (two replicas of a
// Deployment on a shared volume, a host daemon and a manual run) would
// each clean up the other's temporary files at start, resume from
// the other's .partial and upload and delete the same segments: the
// second is refused instead (ErrSpoolInUse, naming the first's pid).
func lockSpool(dir string) (release func(), err error) {
	return lockDir(dir, 0o700, "spool", ErrSpoolInUse)
}

// lockSiteDir takes the lock of a site's folder dir (Site.Dir, created if
// missing) as lockSpool does its spool. Every site takes it, spool or
// none: two daemons of one site without a spool (archive_command,
// basic) would both take the scheduled backups and run retention, and
// the second's start-up clean-up would remove the first's running
// restore test's scratch directory (restore-test/, inside dir): the
// second is refused instead (ErrSiteInUse). The folder is created
// 0711, as the restore tests create their scratch directory's parents:
// a restored server running as another user must reach it.
func lockSiteDir(dir string) (release func(), err error) {
	return lockDir(dir, 0o711, "site", ErrSiteInUse)
}

// lockDir takes the lock file of dir (created with perm if missing),
// naming it what in its errors, and inUse when another process holds it.
// The lock is flock(2), which belongs to the open file: it is released
// when the process ends, even by kill -9, so a crash leaves no stale
// lock; and it excludes a second open of the file in the same process
// too (a site restarted by a reload takes it after the stopped run
// released it). release closes the file; the file stays.
func lockDir(dir string, perm os.FileMode, what string, inUse error) (release func(), err error) {
	if err := os.MkdirAll(dir, perm); err != nil {
		return nil, fmt.Errorf("create %s: %w", what, err)
	}
	path := filepath.Join(dir, spoolLockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", what, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("lock %s: flock %s: %w", what, path, err)
		}
		holder := "another process"
		if b, rerr := io.ReadAll(io.LimitReader(f, 32)); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
				holder = "pid " + strconv.Itoa(pid)
			}
		}
		return nil, fmt.Errorf("%w: %s holds %s; stop that daemon, or give this one another backup_location (two daemons must not share a %s)",
			inUse, holder, path, what)
	}
	// The pid only names the holder in the next one's error: the lock
	// holds without it, so a failure to write it is no reason to stop.
	if f.Truncate(0) == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { _ = f.Close() }, nil
}
