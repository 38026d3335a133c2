package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/storage"
)

// siteLockEnv names the site folder a TestRun_SiteLockChild process runs
// its site in.
const siteLockEnv = "HOARD_TEST_SITE_LOCK_CHILD"

// pushSite is an archive_command site (no spool) whose folder is dir,
// with restore tests every hour scratching in dir/restore-test, storing
// into a local store in store.
func pushSite(dir, store, conn string) Site {
	arch := &archive.Archive{Store: storage.NewLocal(store), Codec: &archive.Codec{}, Site: "test"}
	return Site{
		Name: "test", Fingerprint: "1", Active: true,
		ActiveBackupMode: "archive_command", WAL: WALArchiveCommand,
		ConnString: conn, Dir: dir,
		RestoreTest: RestoreTest{Interval: time.Hour, Dir: filepath.Join(dir, "restore-test"), RestoreCommand: "hoard wal-fetch %f %p"},
		OpenArchive: func(context.Context) (*archive.Archive, func(), error) { return arch, func() {}, nil },
	}
}

// TestRun_SiteLockChild is the other daemon of TestRun_SiteLocked: a
// whole Run, in a process of its own, of an archive_command site in the
// folder it is given, until it is killed.
func TestRun_SiteLockChild(t *testing.T) {
	dir := os.Getenv(siteLockEnv)
	if dir == "" {
		return
	}
	conn := os.Getenv(siteLockEnv + "_CONN")
	o := Options{
		Sites:  []Site{pushSite(dir, filepath.Join(filepath.Dir(dir), "store"), conn)},
		Logger: zerolog.New(os.Stderr).Level(zerolog.DebugLevel),
	}
	if err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
}

// TestRun_SiteLocked starts a daemon of a site without a spool
// (archive_command) in another process, then a second one on the same
// site folder: the second must refuse the site, naming the first's pid,
// and touch nothing in the folder. Before the site lock, only a spool
// was locked: the second ran beside the first, taking the scheduled
// backups and running retention too, and its start-up clean-up removed
// the first's running restore test's scratch directory (a failed test
// restore, a false alert). The first runs in a process of its own
// (firstDaemon).
func TestRun_SiteLocked(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "test")
	conn := unreachableConn(t)
	// The first daemon's restore test loop has cleaned its scratch
	// directories and waits for the next test.
	first := startFirstDaemon(t, "TestRun_SiteLockChild", "restore test not due", siteLockEnv+"="+dir, siteLockEnv+"_CONN="+conn)
	// The first daemon's running restore test, which a start-up
	// clean-up removes.
	mine := filepath.Join(dir, "restore-test", "hoard-restore-test-1")
	if err := os.MkdirAll(mine, 0o700); err != nil {
		t.Fatal(err)
	}
	first.checkSecondRefused(t, Options{
		Sites:     []Site{pushSite(dir, filepath.Join(t.TempDir(), "store2"), conn)},
		StateFile: filepath.Join(t.TempDir(), "state.json"),
	}, mine, ErrSiteInUse, filepath.Join(dir, ".hoard-daemon.lock"))
}

// TestRun_SiteLockReload: a reload that restarts a site in place (its
// configuration changed, its folder did not) starts the new run after
// the stopped one released the site's lock, so the daemon does not
// refuse its own site. Then the new run holds the lock: a second open
// of the lock file, even in this process, is refused (flock(2) belongs
// to the open file).
func TestRun_SiteLockReload(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "test")
	site := pushSite(dir, filepath.Join(t.TempDir(), "store"), unreachableConn(t))
	reload := make(chan []Site)
	rd := runDaemon(t, Options{Sites: []Site{site}, Reload: reload})
	rd.waitLog("wal arrives through archive_command")
	next := site
	next.Fingerprint = "2"
	reload <- []Site{next}
	rd.waitLog("configuration reloaded")
	deadline := time.Now().Add(runTimeout)
	for strings.Count(rd.logs.String(), "wal arrives through archive_command") < 2 {
		select {
		case err := <-rd.done:
			rd.done = nil
			t.Fatalf("daemon stopped after the reload: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the site did not start again after the reload:\n%s", rd.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if release, err := lockSiteDir(dir); !errors.Is(err, ErrSiteInUse) {
		if err == nil {
			release()
		}
		t.Errorf("lockSiteDir after the reload: %v, want ErrSiteInUse (the restarted run holds it)", err)
	}
	rd.stop()
}
