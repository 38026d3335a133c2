package e2e

import (
	"math/rand/v2"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestDaemonSynchronous is zero RPO: with synchronous set and the
// daemon's application name (the slot's) in synchronous_standby_names, a
// client commits rows one at a time until both the daemon's host and the
// primary are lost under that load (both killed, and the daemon's spool
// never read again). Every row whose commit the client saw acknowledged
// must be in a restore to the end of the archive: the daemon reported WAL
// as flushed only once it was stored in MinIO.
func TestDaemonSynchronous(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: -short")
	}
	testDaemonSynchronous(t, 0, nil)
}

// TestDaemonSynchronousKills is TestDaemonSynchronous with the daemon
// killed (SIGKILL) and restarted 8 times at random moments while the
// client commits: between, during and after its .partial uploads. Commits
// wait while it is down; none acknowledged may be missing from the
// restore, whatever upload a kill cut short.
func TestDaemonSynchronousKills(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: -short")
	}
	testDaemonSynchronous(t, 8, nil)
}

// TestDaemonSynchronousZstdEncrypted is TestDaemonSynchronous in a site
// that stores zstd, encrypted: the daemon makes each .partial copy from
// the compressed stream it kept since the segment's previous copy, ends
// the zstd frame by hand and encrypts the copy with a key of its own,
// and the restore reads the copies through hoard's own wal-fetch.
func TestDaemonSynchronousZstdEncrypted(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: -short")
	}
	testDaemonSynchronous(t, 0, func(s *streamSite) {
		s.editConfig(func(cfg map[string]any) { cfg["compression"] = map[string]any{"algorithm": "zstd"} })
		s.mustHoard("create-keys", "--key-id", "e2e-key")
	})
}

// testDaemonSynchronous runs the synchronous scenario, killing the daemon
// kills times under the load; setup, when not nil, changes the site
// first.
func testDaemonSynchronous(t *testing.T, kills int, setup func(*streamSite)) {
	s := newMinIOStreamSite(t)
	s.setSiteKey("active_backup_mode", "walreceiver")
	s.setSiteKey("synchronous", true)
	if setup != nil {
		setup(s)
	}
	src := s.startSource(pgtest.Options{})

	d := s.startDaemon()
	d.waitFirstBackup(s.name, 3*time.Minute, true)
	s.makeSynchronous(d, src)

	// One client commits row after row of 2 kB, so 400 of them cross a
	// segment (1 MB) boundary.
	load := startCommitLoad(t, src, 2000)
	d.waitFor("400 commits", 5*time.Minute, func() bool { return load.acked.Load() >= 400 })
	for range kills {
		time.Sleep(time.Duration(50+rand.IntN(500)) * time.Millisecond)
		d.stop(syscall.SIGKILL, 10*time.Second)
		d = s.startDaemon()
		// Commits go on only once the restarted daemon stores WAL.
		from := load.acked.Load()
		d.waitFor("commits after the restart", 3*time.Minute, func() bool { return load.acked.Load() >= from+20 })
	}
	t.Logf("the daemon was killed %d times", kills)
	s.loseAndRestore(d, src, load)
}

// makeSynchronous names the daemon's application name (the slot's) in
// src's synchronous_standby_names and waits until src sees it as its
// synchronous standby.
func (s *streamSite) makeSynchronous(d *daemonProc, src *pgtest.Cluster) {
	s.t.Helper()
	name := "hoard_" + s.name
	src.Exec(s.t, "alter system set synchronous_standby_names = '"+name+"'")
	src.Exec(s.t, "select pg_reload_conf()")
	d.waitFor(name+" a synchronous standby", time.Minute, func() bool {
		return src.QueryString(s.t, "select count(*) from pg_stat_replication where application_name = $1 and sync_state = 'sync'", name) == "1"
	})
}

// loseAndRestore loses the daemon's host and then the primary src under
// the load: the daemon is killed (SIGKILL) and its spool never read
// again, then the primary is killed. A restore to the end of the archive
// must hold every row whose commit the client saw return: once the daemon
// is dead no commit returns, and each one that did was stored.
func (s *streamSite) loseAndRestore(d *daemonProc, src *pgtest.Cluster, load *commitLoad) {
	t := s.t
	t.Helper()
	d.stop(syscall.SIGKILL, 10*time.Second)
	src.Kill(t)
	n := load.stop()
	t.Logf("%d commits acknowledged before the daemon's host and the primary were lost", n)
	dir := filepath.Join(pgtest.TempDir(t), "data")
	s.mustHoard("restore", "--target-dir", dir)
	c := pgtest.StartDataDir(t, src.Major, dir, map[string]string{"archive_mode": "off", "synchronous_standby_names": ""})
	c.WaitRecoveryDone(t, 3*time.Minute)
	checkAcked(t, c, n)
}
