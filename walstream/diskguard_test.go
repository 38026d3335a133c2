package walstream

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"golang.org/x/sys/unix"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/wal"
)

// TestReceiver_Run_DiskGuard fills a 16 MiB tmpfs spool while uploads
// fail: below MinFreeBytes receiving pauses, the server is told nothing
// beyond what was flushed, and the WAL waits in the slot. Once uploads
// work again the spool drains, receiving resumes, and every segment is
// archived with no gap.
func TestReceiver_Run_DiskGuard(t *testing.T) {
	spool := pgtest.MountTmpfs(t, 16)
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1})
	segSize := segSizeOf(t, c)
	s := newSink(t)
	s.failing.Store(true)
	rr := startReceiver(t, c, spool, s, Options{MinFreeBytes: 8 << 20, DiskCheckInterval: 50 * time.Millisecond}, nil, lagAfterPause)
	first := rr.r.Status().Segment

	// Write segments until the guard pauses receiving.
	var last string
	for i := 0; !rr.r.Status().Paused; i++ {
		if i == 30 {
			t.Fatalf("not paused after %d segments; status %+v", i, rr.r.Status())
		}
		last = switchWAL(t, c)
		// The receiver has either paused or moved past the segment
		// switched from: only then is it worth switching again.
		waitFor(t, "segment "+last+" received or a pause", func() bool {
			st := rr.r.Status()
			return st.Paused || st.Segment > last
		})
	}
	checkStaysPaused(t, c, rr, segSize, func() {
		for range 3 {
			last = switchWAL(t, c)
		}
	})

	s.failing.Store(false)
	waitFor(t, "receiving resumed", func() bool { return !rr.r.Status().Paused })
	names := waltest.Names(t, first, last, segSize)
	waitUploaded(t, s, names...)
	rr.stop(t)
	checkStreamed(t, c, s, names)
}

// fillSpool writes WAL while uploads fail until the Receiver pauses, and
// checks what a full spool must never do: report a flush position past
// what is in the spool, or leave a full segment as .partial behind the
// slot. It fails after limit segments without a pause.
func (d *durable) fillSpool(rr *running, limit int) Status {
	t := d.t
	t.Helper()
	for i := 0; !rr.r.Status().Paused; i++ {
		if i == limit {
			t.Fatalf("not paused after %d segments; status %+v", i, rr.r.Status())
		}
		d.insert(1100) // a little more than a segment
	}
	paused := checkStaysPaused(t, d.c, rr, d.segSize, func() { d.insert(3000) })
	d.checkSpoolAfterCrash()
	return paused
}

// checkStaysPaused takes the status of a paused Receiver, calls more to
// write WAL, and checks that none of it past the segment being written when the
// pause was seen is received and that the slot keeps what was not
// flushed. It returns the status taken. That segment may still be
// completed: the status can show the pause (set as the next segment
// cannot be opened) before the receiver wrote the rest of the message it
// was handling, and lagAfterPause makes that happen every time.
func checkStaysPaused(t *testing.T, c *pgtest.Cluster, rr *running, segSize uint64, more func()) Status {
	t.Helper()
	paused := rr.r.Status()
	segEnd := paused.Received + pglogrepl.LSN(segSize) - 1
	segEnd -= segEnd % pglogrepl.LSN(segSize)
	more()
	// The window in which nothing may be received: a negative
	// observation, with no event to wait for (a paused receiver reads
	// nothing from the server), and longer than lagAfterPause's 400 ms.
	time.Sleep(500 * time.Millisecond)
	if st := rr.r.Status(); !st.Paused || st.Received > segEnd {
		t.Fatalf("received %s while paused (at %s, its segment ends at %s)", st.Received, paused.Received, segEnd)
	}
	if restart := lsn(t, c, "select restart_lsn from pg_replication_slots where slot_name = 'hoard'"); restart > paused.Flushed {
		t.Fatalf("slot at %s, beyond the flushed %s", restart, paused.Flushed)
	}
	return paused
}

// lagAfterPause makes the Receiver publish Received 400 ms late after
// a pause taken as a segment completes, the order a loaded machine may
// give (the CI run of 1bca53a failed on it): the test's polls see the
// pause with Received before the end of the message being handled, and
// checkStaysPaused's look 500 ms after the further WAL sees the rest.
func lagAfterPause(r *Receiver) {
	r.faults.step = func(step, _ string) {
		if step == "next-opened" && r.Status().Paused {
			time.Sleep(400 * time.Millisecond)
		}
	}
}

// TestReceiver_Run_DiskGuardBeforeAllocation fills a tmpfs spool while
// the storage is down, with the free space looked at on the timer only
// once an hour: the guard must still pause before the next segment would
// leave less than MinFreeBytes, because it is asked before every
// preallocation. No write may fail for lack of space. Once the storage is
// back, the spool drains, receiving resumes without waiting for the timer
// (each upload that frees the spool has the guard asked again), and a
// restore has every row.
func TestReceiver_Run_DiskGuardBeforeAllocation(t *testing.T) {
	spool := pgtest.MountTmpfs(t, 12)
	d := newDurable(t, spool)
	var logs testio.SyncBuffer
	rr := startReceiver(t, d.c, spool, d.up, Options{MinFreeBytes: 4 << 20, DiskCheckInterval: time.Hour}, &logs, lagAfterPause)
	d.backup()
	d.up.failing.Store(true)
	d.fillSpool(rr, 20)
	if strings.Contains(logs.String(), "no space left") {
		t.Errorf("a write hit the full disk:\n%s", logs.String())
	}
	d.up.failing.Store(false)
	// The timer is an hour away: the uploads that free the spool make
	// the paused receiver look at the free space again.
	waitFor(t, "receiving resumed", func() bool { return !rr.r.Status().Paused && rr.r.Status().QueueDepth == 0 })
	d.finish(rr)
}

// TestReceiver_Run_DiskFull fills a tmpfs spool while the storage is
// down, without MinFreeBytes: preallocating the next segment fails with
// ENOSPC. The finished segment stays complete, receiving pauses, the
// server keeps the rest, and once the storage is back everything is
// archived: a restore has every row.
func TestReceiver_Run_DiskFull(t *testing.T) {
	spool := pgtest.MountTmpfs(t, 6)
	d := newDurable(t, spool)
	var logs testio.SyncBuffer
	rr := startReceiver(t, d.c, spool, d.up, Options{DiskCheckInterval: 100 * time.Millisecond}, &logs, lagAfterPause)
	d.backup()
	d.up.failing.Store(true)
	d.fillSpool(rr, 20)
	if !strings.Contains(logs.String(), "spool disk full") {
		t.Errorf("no full disk logged:\n%s", logs.String())
	}
	d.up.failing.Store(false)
	waitFor(t, "receiving resumed", func() bool { return !rr.r.Status().Paused && rr.r.Status().QueueDepth == 0 })
	d.finish(rr)
}

// TestReceiver_Run_DiskFullOverwrite: on a copy-on-write file system
// (btrfs, XFS with reflinks) preallocation reserves no space for
// overwrites, so with the disk full a write into a segment file that
// was preallocated fails with ENOSPC. The faults.write hook stands for
// such a file system and guard.free for its free space. The session
// ends (what was written since the last fsync counts as lost); the next
// one pauses before it writes, as for a full disk at preallocation: it
// writes nothing more and the slot keeps what was not flushed, with no
// reconnection while the disk stays full. Once there is room, receiving
// resumes and a restore has every row.
func TestReceiver_Run_DiskFullOverwrite(t *testing.T) {
	d := newDurable(t, "")
	var (
		full   atomic.Bool
		failed atomic.Int64  // writes failed with ENOSPC
		before atomic.Uint64 // the flush position at the first failed write
		logs   testio.SyncBuffer
	)
	rr := startReceiver(t, d.c, d.spool, d.up, Options{DiskCheckInterval: 100 * time.Millisecond}, &logs, func(r *Receiver) {
		r.faults.write = func(path string, _ uint64) error {
			if !full.Load() || !strings.HasSuffix(path, wal.PartialSuffix) {
				return nil
			}
			if failed.Add(1) == 1 {
				before.Store(uint64(r.Status().Flushed))
			}
			return unix.ENOSPC
		}
		free := r.guard.free
		r.guard.free = func() (uint64, error) {
			if full.Load() {
				return 0, nil
			}
			return free()
		}
	})
	d.backup()
	d.insert(100)
	full.Store(true)
	for failed.Load() == 0 {
		d.insert(50)
	}
	waitFor(t, "receiving paused", func() bool { return rr.r.Status().Paused })
	n := failed.Load()
	d.insert(300)
	// A negative observation: a paused receiver writes nothing, and no
	// event says it will not reconnect and write again.
	time.Sleep(2 * time.Second)
	st := rr.r.Status()
	if got := failed.Load(); got != n || !st.Paused {
		t.Errorf("while the disk stayed full: %d more writes failed with ENOSPC (sessions that wrote again), paused %v; want none, true", got-n, st.Paused)
	}
	if restart, flushed := lsn(t, d.c, "select restart_lsn from pg_replication_slots where slot_name = 'hoard'"), pglogrepl.LSN(before.Load()); restart > flushed {
		t.Errorf("slot at %s, beyond the %s flushed when the first write failed", restart, flushed)
	}
	if !strings.Contains(logs.String(), "spool disk full") {
		t.Errorf("no full disk logged:\n%s", tailLines(logs.String(), 20))
	}
	full.Store(false)
	waitFor(t, "receiving resumed", func() bool { st := rr.r.Status(); return !st.Paused && st.Connected })
	d.finish(rr)
}

// TestReceiver_Run_PausedSenderTimeout: while the disk guard pauses
// receiving, the Receiver reads nothing, so it never sees the keepalive
// requests the server sends at half its wal_sender_timeout; only its own
// status updates tell the server it is alive. With the daemon's status
// interval (10 s) above a server's wal_sender_timeout (2 s here; a
// failover setup's few seconds), the server dropped the connection
// ("terminating walsender process due to replication timeout") every
// few seconds for as long as the pause lasted. The status updates now
// come at least at half the server's wal_sender_timeout: the paused
// connection stays.
func TestReceiver_Run_PausedSenderTimeout(t *testing.T) {
	spool := pgtest.MountTmpfs(t, 16)
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1,
		Conf: map[string]string{"wal_sender_timeout": "2s"}})
	s := newSink(t)
	s.failing.Store(true)
	var logs testio.SyncBuffer
	rr := startReceiver(t, c, spool, s, Options{MinFreeBytes: 8 << 20, DiskCheckInterval: 50 * time.Millisecond,
		StatusInterval: DefaultStatusInterval}, &logs, nil)
	for i := 0; !rr.r.Status().Paused; i++ {
		if i == 30 {
			t.Fatalf("not paused after %d segments; status %+v", i, rr.r.Status())
		}
		last := switchWAL(t, c)
		waitFor(t, "segment "+last+" received or a pause", func() bool {
			st := rr.r.Status()
			return st.Paused || st.Segment > last
		})
	}
	const pidQuery = "select coalesce(max(pid), 0)::text from pg_stat_replication"
	pid := c.QueryString(t, pidQuery)
	// Three times the server's timeout, paused all along.
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		st := rr.r.Status()
		if !st.Paused {
			t.Fatalf("receiving resumed with uploads failing: %+v", st)
		}
		if !st.Connected {
			t.Fatalf("paused connection dropped: %s", st.LastError)
		}
	}
	if now := c.QueryString(t, pidQuery); now != pid || pid == "0" {
		t.Errorf("walsender %s replaced by %s while paused: the server dropped the connection (last error %q)", pid, now, rr.r.Status().LastError)
	}
	if want := `"wal_sender_timeout":"2s","status_interval_ms":1000`; strings.Count(logs.String(), want) != 1 {
		t.Errorf("the log does not say once that status updates come every second (%s)", want)
	}
}
