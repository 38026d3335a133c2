package e2e

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestDaemonSynchronous is zero RPO: with synchronous set and the
// daemon's application name (the slot's) in synchronous_standby_names, a
// client commits rows one at a time until the primary is killed under
// that load. Every row whose commit the client saw acknowledged must be
// in a restore to the end of the archive: the daemon reported WAL as
// flushed only once it was stored in MinIO.
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
	src.Exec(t, "create table counter (id int primary key, pad text)")
	src.Exec(t, "alter system set synchronous_standby_names = 'hoard_e2e'")
	src.Exec(t, "select pg_reload_conf()")
	d.waitFor("hoard_e2e a synchronous standby", time.Minute, func() bool {
		return src.QueryString(t, "select count(*) from pg_stat_replication where application_name = 'hoard_e2e' and sync_state = 'sync'") == "1"
	})

	// One client commits row after row. Each row is 2 kB, too short to be
	// compressed, so 400 of them cross a segment (1 MB) boundary.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conn, err := pgconn.Connect(ctx, src.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var acked atomic.Int64
	done := make(chan error, 1)
	go func() {
		for i := int64(1); ; i++ {
			_, err := conn.Exec(ctx, "insert into counter values ("+strconv.FormatInt(i, 10)+", repeat('x', 2000))").ReadAll()
			if err != nil {
				done <- err
				return
			}
			acked.Store(i)
		}
	}()
	d.waitFor("400 commits", 5*time.Minute, func() bool { return acked.Load() >= 400 })
	for range kills {
		time.Sleep(time.Duration(50+rand.IntN(500)) * time.Millisecond)
		d.stop(syscall.SIGKILL, 10*time.Second)
		d = s.startDaemon()
		// Commits go on only once the restarted daemon stores WAL.
		from := acked.Load()
		d.waitFor("commits after the restart", 3*time.Minute, func() bool { return acked.Load() >= from+20 })
	}

	// The primary is lost under load; the daemon stops after it.
	src.Kill(t)
	<-done
	n := acked.Load()
	t.Logf("%d commits acknowledged before the primary was lost; the daemon was killed %d times", n, kills)
	if code := d.stop(syscall.SIGTERM, 90*time.Second); code != 0 {
		t.Fatalf("hoard daemon exited %d after SIGTERM, want 0\n%s", code, tailLines(d.out.String(), 30))
	}

	dir := filepath.Join(pgtest.TempDir(t), "data")
	s.mustHoard("restore", "--target-dir", dir)
	c := pgtest.StartDataDir(t, src.Major, dir, map[string]string{"archive_mode": "off", "synchronous_standby_names": ""})
	c.WaitRecoveryDone(t, 3*time.Minute)
	got := c.QueryString(t, "select count(*) from counter where id <= $1", n)
	if got != strconv.FormatInt(n, 10) {
		t.Errorf("restored cluster holds %s of the %d rows acknowledged before the primary was lost", got, n)
	}
}
