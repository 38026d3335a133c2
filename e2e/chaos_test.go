package e2e

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sys/unix"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/wal"
)

// The chaos test attacks the streaming daemon's promise that it never
// loses committed WAL with the faults a real host has, all at once and
// at random moments: SIGKILL, a spool disk that fills up (ENOSPC, no
// disk guard), and a store that refuses writes. It checks the promise
// where it is made: each time the daemon is dead, every segment the
// replication slot lets PostgreSQL recycle must be in the spool or the
// archive, and the WAL the daemon last reported stored (stored_lsn) must
// be in the archive; at the end, every commit the client saw is in a
// restore, and pg_waldump reads the archived WAL as one unbroken chain.

// commitLoad is one client committing rows of the table commits one at a
// time: ids 1, 2, 3, ..., acked the last whose commit returned.
type commitLoad struct {
	acked  atomic.Int64
	done   chan error
	cancel context.CancelFunc
}

// startCommitLoad creates the table commits in c and commits rows into it
// until c goes away or stop is called. Each row holds pad bytes of random
// hex digits, which PostgreSQL cannot compress much: pad bytes of WAL a
// row.
func startCommitLoad(t testing.TB, c *pgtest.Cluster, pad int) *commitLoad {
	t.Helper()
	c.Exec(t, "create table commits (id bigint primary key, pad text)")
	ctx, cancel := context.WithCancel(context.Background())
	conn, err := pgconn.Connect(ctx, c.ConnString("postgres"))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	l := &commitLoad{done: make(chan error, 1), cancel: cancel}
	go func() {
		defer conn.Close(context.Background())
		for i := int64(1); ; i++ {
			sql := "insert into commits select " + strconv.FormatInt(i, 10) + ", string_agg(md5(random()::text), '') from generate_series(1, " + strconv.Itoa(pad/32) + ")"
			if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
				l.done <- err
				return
			}
			l.acked.Store(i)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-l.done
		l.done <- nil
	})
	return l
}

// stop ends the load and returns the number of rows acknowledged.
func (l *commitLoad) stop() int64 {
	l.cancel()
	err := <-l.done
	l.done <- err
	return l.acked.Load()
}

// checkAcked fails unless the restored cluster c holds every row of
// commits up to n.
func checkAcked(t testing.TB, c *pgtest.Cluster, n int64) {
	t.Helper()
	if got := c.QueryString(t, "select count(*) from commits where id <= $1", n); got != strconv.FormatInt(n, 10) {
		t.Errorf("restored cluster holds %s of the %d rows acknowledged to the client", got, n)
	}
}

// chaosFaults are the faults of one round.
type chaosFaults struct {
	diskFull, storeDown bool
}

// fillDisk fills the filesystem of dir with a file, so that every write
// there fails with ENOSPC, and returns a function removing it. The daemon
// allocates meanwhile: what is free is taken in pieces, halving the piece
// that does not fit.
func fillDisk(t *testing.T, dir string) func() {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "ballast")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var off int64
	for piece := int64(st.Bavail * uint64(st.Bsize)); piece >= 4096; {
		err := unix.Fallocate(int(f.Fd()), 0, off, piece)
		switch {
		case err == nil:
			off += piece
		case errors.Is(err, unix.ENOSPC):
			piece /= 2
		default:
			t.Fatalf("fill %s: %v", dir, err)
		}
	}
	return func() {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
}

// refuseWrites makes the local store's WAL directories read-only for the
// server's user, which the daemon runs as, and returns a function giving
// the permissions back.
func (s *streamSite) refuseWrites(t *testing.T) func() {
	t.Helper()
	var dirs []string
	for _, sub := range []string{"xlog", "timeline"} {
		d := filepath.Join(s.storeDir, s.name, sub)
		if _, err := os.Stat(d); err == nil {
			dirs = append(dirs, d)
		}
	}
	for _, d := range dirs {
		if err := os.Chmod(d, 0o555); err != nil {
			t.Fatal(err)
		}
	}
	return func() {
		for _, d := range dirs {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// slotRestartLSN returns the restart_lsn of the daemon's slot.
func slotRestartLSN(t *testing.T, c *pgtest.Cluster, slot string) pglogrepl.LSN {
	t.Helper()
	return lsnOf(t, c.QueryString(t, "select coalesce(restart_lsn, '0/0')::text from pg_replication_slots where slot_name = $1", slot))
}

// checkWhileDead is run while the daemon is dead. Every segment from
// first up to the one holding the slot's restart_lsn, which PostgreSQL
// may recycle, must be complete in the spool or in the archive; and the
// archive alone must hold the WAL up to claimed, the stored_lsn the
// daemon reported before it died. It returns the restart_lsn.
func (s *streamSite) checkWhileDead(t *testing.T, c *pgtest.Cluster, spool, first string, claimed pglogrepl.LSN) pglogrepl.LSN {
	t.Helper()
	const segSize = 1 << 20
	restart := slotRestartLSN(t, c, "hoard_"+s.name)
	stored := map[string]bool{}
	for _, n := range s.storedWAL() {
		stored[n] = true
	}
	spooled := map[string]bool{}
	entries, err := os.ReadDir(filepath.Join(spool, s.name, "xlog_incoming"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		spooled[e.Name()] = true
	}
	f, err := wal.ParseSegmentName(first, segSize)
	if err != nil {
		t.Fatal(err)
	}
	end := wal.SegmentOf(f.Timeline, restart, segSize)
	for seg := f; seg.No < end.No; seg = seg.Next() {
		if name := seg.Name(segSize); !stored[name] && !spooled[name] {
			t.Errorf("the slot's restart_lsn is %s, but segment %s is neither in the spool nor in the archive", restart, name)
		}
	}
	end = wal.SegmentOf(f.Timeline, claimed, segSize)
	for seg := f; seg.No <= end.No && seg.StartLSN(segSize) < claimed; seg = seg.Next() {
		name := seg.Name(segSize)
		if !stored[name] && (seg.No < end.No || !stored[name+wal.PartialSuffix]) {
			t.Errorf("the daemon reported WAL stored up to %s, but the archive misses %s", claimed, name)
		}
	}
	return restart
}

// waldump runs Debian's pg_waldump over the segments in dir, first
// through last: it checks every record's CRC and link to the previous
// one across the segments.
func waldump(t *testing.T, dir, first, last string) {
	t.Helper()
	cmd := exec.Command(pgtest.Tool(t, "pg_waldump"), "--quiet", "--path", dir, first, last)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("pg_waldump %s..%s: %v\n%s", first, last, err, tailLines(string(out), 20))
	}
}

// chaosRounds is how many rounds of faults TestDaemonChaos runs: four
// (each combination of faults once, each with a kill) by default, forty
// with HOARD_CHAOS_LONG=1.
func chaosRounds() int {
	if os.Getenv("HOARD_CHAOS_LONG") == "1" {
		return 40
	}
	return 4
}

// TestDaemonChaos streams WAL of PostgreSQL 15 (1 MiB segments) with
// hoard daemon into a local store, its spool on an 8 MiB tmpfs without a
// disk guard, while one client commits 2 kB rows one at a time. Each
// round brings faults: the spool's disk filled up (every write there
// fails with ENOSPC), the store's WAL directories made read-only, both or
// neither (each combination once in four rounds); after a random while
// under them the daemon is killed (SIGKILL). While it is dead the slot's
// restart_lsn must not have passed any segment that is neither in the
// spool nor in the archive, and the archive must hold the WAL up to the
// stored_lsn the daemon last reported. It is restarted under the same
// faults, which are lifted a random while later. At the end the daemon
// must store everything and exit 0 on SIGTERM, the archive must be whole
// (verify --full, and pg_waldump over every segment from the first
// backup on), and a restore of the first backup must hold every row the
// client saw committed.
func TestDaemonChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: -short")
	}
	testDaemonChaos(t, false)
}

// TestDaemonChaosSynchronous is TestDaemonChaos with synchronous set and
// the daemon a synchronous standby: commits wait while the store refuses
// writes or the daemon is down. At the end the daemon's host and the
// primary are lost under the load (see loseAndRestore), and a restore to
// the end of the archive must hold every row whose commit the client saw
// return.
func TestDaemonChaosSynchronous(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: -short")
	}
	testDaemonChaos(t, true)
}

// testDaemonChaos runs the chaos scenario, with the daemon a synchronous
// standby when sync is set.
func testDaemonChaos(t *testing.T, sync bool) {
	// The store fails by refusing writes: the local store's WAL
	// directories made read-only. In synchronous mode this also fails the
	// daemon's replace of the growing segment's stored copy between its
	// renames, which must leave a copy (it once left none, about one run
	// in two; docs/daemon.md, synchronous mode).
	s := newLocalStreamSite(t)
	storeDown := func() func() { return s.refuseWrites(t) }
	spool := pgtest.MountTmpfs(t, 8)
	s.editConfig(func(cfg map[string]any) { cfg["backup_location"] = spool })
	if sync {
		s.setSiteKey("synchronous", true)
	}
	src := pgtest.Start(t, pgtest.Options{Major: pgtest.DebianMajor, WALSegmentSizeMB: 1})
	s.use(src)
	pgtest.Pgbench(t, src, "-i", "-s", "1", "-q")

	d := s.startDaemon()
	d.waitFirstBackup(s.name, 3*time.Minute, true)
	first := s.listBackups()[0]
	if sync {
		s.makeSynchronous(d, src)
	}
	// A synchronous commit waits for an upload: rows of 16 kB let the
	// slower load still cross segments.
	pad := 2000
	if sync {
		pad = 16000
	}
	load := startCommitLoad(t, src, pad)
	d.waitFor("100 commits", 2*time.Minute, func() bool { return load.acked.Load() >= 100 })
	rounds := chaosRounds()
	var kills, fulls, downs int
	for i := range rounds {
		// Every combination of faults in each four rounds; only the
		// moments are random.
		f := chaosFaults{diskFull: i%2 == 0, storeDown: i%4 < 2}
		var undo []func()
		if f.diskFull {
			undo = append(undo, fillDisk(t, spool))
			fulls++
		}
		if f.storeDown {
			undo = append(undo, storeDown())
			downs++
		}
		time.Sleep(time.Duration(200+rand.IntN(2500)) * time.Millisecond)
		var claimed pglogrepl.LSN
		if st, ok := d.status(); ok && st.Sites[s.name].WAL != nil && st.Sites[s.name].WAL.Stored != "" {
			claimed = lsnOf(t, st.Sites[s.name].WAL.Stored)
		}
		d.stop(syscall.SIGKILL, 10*time.Second)
		kills++
		restart := s.checkWhileDead(t, src, spool, first.StartWALSegment, claimed)
		t.Logf("round %d %+v: killed at restart_lsn %s, stored_lsn %s, %d commits", i, f, restart, claimed, load.acked.Load())
		d = s.startDaemon()
		time.Sleep(time.Duration(200+rand.IntN(2500)) * time.Millisecond)
		for _, u := range undo {
			u()
		}
		// Let it stream again before the next round, so that the rounds
		// make progress whatever the random delays.
		from := src.QueryString(t, "select pg_current_wal_lsn()::text")
		d.waitFor("the daemon flushed "+from, 3*time.Minute, func() bool {
			return slotRestartLSN(t, src, "hoard_"+s.name) >= lsnOf(t, from)
		})
	}
	t.Logf("%d rounds: %d kills, the spool filled %d times, the store refused writes %d times; %d commits", rounds, kills, fulls, downs, load.acked.Load())
	if sync {
		s.loseAndRestore(d, src, load)
		return
	}
	n := load.stop()
	c := s.finishAndCheck(t, d, src, first.Name)
	checkAcked(t, c, n)

	dump := t.TempDir()
	last := s.storedWAL()
	end := ""
	for _, name := range last {
		if wal.IsSegmentName(name) {
			end = name
		}
	}
	checkContiguous(t, s, first.StartWALSegment, end, 1<<20, dump)
	waldump(t, dump, first.StartWALSegment, end)
}
