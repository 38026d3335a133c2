package e2e

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestRecovery_PrefetchLeavesRoom restores a backup into a tmpfs that
// holds the data directory and pg_wal, as by default, and then shrinks it
// to what the restored directory takes, plus what replay adds to table t
// (47 MiB, from WAL in segments of 1 MiB), plus 16 MiB: recovery fits
// with restore_prefetch 0 (the WAL it keeps is bounded by the backup's
// max_wal_size of 4 MB). With restore_prefetch 32 the worker must leave
// the startup process its room: recovery ends with every row. Before, the
// worker spooled until the file system was full, and the startup process
// stopped recovery: "FATAL: could not extend file "base/5/16384": wrote
// only 4096 of 8192 bytes at block 2666".
func TestRecovery_PrefetchLeavesRoom(t *testing.T) {
	const major = 15
	s := newSite(t, siteOptions{})
	s.editConfig(func(cfg map[string]any) { cfg["restore_prefetch"] = 32 })
	// Checkpoints every few segments, in the backup's configuration too:
	// recovery's restartpoints then keep little of the WAL it replayed.
	conf := s.clusterConf()
	conf["max_wal_size"], conf["min_wal_size"] = "4MB", "2MB"
	src := pgtest.Start(t, pgtest.Options{Major: major, WALSegmentSizeMB: 1, Conf: conf})
	s.use(src)
	src.Exec(t, "create table t (id int, pad text)")
	s.mustHoard("basebackup", "--fast")
	src.Exec(t, "insert into t select i, repeat(md5(i::text), 4) from generate_series(1, 300000) i")
	switchAndWaitArchived(t, src)
	grow, err := strconv.ParseInt(src.QueryString(t, "select pg_total_relation_size('t')::text"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}

	mnt := pgtest.MountTmpfs(t, 256)
	dir := filepath.Join(mnt, "data")
	// A detached prefetch worker leaves within a second of the server's
	// stop: wait for it after the server's cleanup, before the unmount,
	// until no process has held the file system for two seconds.
	t.Cleanup(func() {
		for deadline, quiet := time.Now().Add(30*time.Second), 0; quiet < 4 && time.Now().Before(deadline); {
			if len(holders(t, mnt)) == 0 {
				quiet++
			} else {
				quiet = 0
			}
			time.Sleep(500 * time.Millisecond)
		}
	})
	s.mustHoard("restore", "--target-dir", dir)
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	used := int64(st.Blocks-st.Bfree) * st.Bsize
	size := used + grow + 16<<20
	pgtest.Remount(t, mnt, "size="+strconv.FormatInt(size>>10+1, 10)+"k")
	t.Logf("restored: %d MiB; table t grows by %d MiB in replay; file system: %d MiB", used>>20, grow>>20, size>>20)

	c, err := pgtest.TryStartDataDir(t, major, dir, noArchiving)
	if err == nil {
		if !waitRecoveryEnd(t, c, 3*time.Minute) {
			t.Fatalf("recovery stopped:\n%s", tailLines(c.Log(), 20))
		}
	} else {
		t.Fatalf("PostgreSQL did not start: %v\n%s", err, tailLines(c.Log(), 20))
	}
	c.WaitRecoveryDone(t, 3*time.Minute)
	if got := c.QueryString(t, "select count(*) from t"); got != "300000" {
		t.Errorf("restored rows = %s, want 300000", got)
	}
	if log := c.Log(); strings.Contains(log, "No space left on device") {
		t.Errorf("the server ran out of space:\n%s", tailLines(log, 20))
	}
}
