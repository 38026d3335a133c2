package walstream

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/replication"
	"github.com/hoardbackup/hoard/wal"
)

// TestReceiver_Run_LeftoverServerGone: a Receiver (a child process)
// streams with PartialUploadInterval 0; a commit and a record after it
// are fsynced in the spool's .partial and reported flushed (the slot
// moves past them); the child is killed with SIGKILL, without its stop
// path, so nothing stores that segment; then the server stops and is
// never started again. A new Run on the same spool cannot connect: it
// stores the .partial the dead run left, up to the end of its last valid
// record. pg_waldump (PostgreSQL 15) finds the commit in the stored copy
// decoded; on every major, the copy is the start of the spool file and
// holds the record after the commit whole. Then the server comes back
// after all: streaming resumes, and the complete segment supersedes the
// copy.
func TestReceiver_Run_LeftoverServerGone(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, major int) {
		g := crashServerGone(t, major)
		data := g.waitCopy()
		n := g.checkCopy(data)
		if n < g.end {
			t.Errorf("the stored copy's records end at %d, before the end of the record after the commit at %d", n, g.end)
		}
		g.checkCommit(data)

		// The server after all: the segment completes and supersedes
		// the copy.
		g.d.c.Start(t)
		waitFor(t, "streaming again", func() bool { return g.rr.r.Status().Connected })
		g.d.insert(100)
		if done := switchWAL(t, g.d.c); done != g.seg {
			t.Fatalf("the server completed %s, want %s, where it stopped", done, g.seg)
		}
		s, err := wal.ParseSegmentName(g.seg, g.d.segSize)
		if err != nil {
			t.Fatal(err)
		}
		end := s.Next().StartLSN(g.d.segSize)
		waitFor(t, g.seg+" uploaded", func() bool { return g.rr.r.Status().Uploaded >= end })
		if g.d.stored(g.name) {
			t.Errorf("%s still stored after the complete segment", g.name)
		}
		g.rr.stop(t)
	})
}

// TestReceiver_Run_LeftoverReceivedAgain: as
// TestReceiver_Run_LeftoverServerGone, but the server still answers when
// the new Run starts after the crash: its session resumes at the start of
// the segment the dead run was receiving, and as the session's first WAL
// arrives the server is killed for good and Run stopped. The session
// received only the walsender's first message of the segment (at most
// 128 KiB, MAX_SEND_SIZE), less than the spool's file already held;
// the bytes after it are still the dead run's, the same WAL of the same
// timeline. The copy stored at the stop holds the file's valid WAL, the
// commit and the record after it included, not only what the session
// received again.
func TestReceiver_Run_LeftoverReceivedAgain(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, major int) {
		g := crashLeftover(t, major)
		hit, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		g.rr = launch(t, g.d.c, g.d.spool, g.d.up, Options{}, nil, func(r *Receiver) {
			r.faults.write = func(path string, _ uint64) error {
				if filepath.Base(path) == g.name {
					once.Do(func() { close(hit); <-release })
				}
				return nil
			}
		})
		select {
		case <-hit:
		case <-time.After(testTimeout):
			t.Fatalf("no WAL of %s received after the crash", g.seg)
		}
		g.d.c.Kill(t)
		// The receive loop looks at its ctx before the next message.
		g.rr.cancel()
		close(release)
		g.rr.stop(t)
		s, err := wal.ParseSegmentName(g.seg, g.d.segSize)
		if err != nil {
			t.Fatal(err)
		}
		if got := int64(g.rr.r.Status().Flushed - s.StartLSN(g.d.segSize)); got >= g.end {
			t.Fatalf("the session received %d bytes of %s again, past the record after the commit at %d: nothing to test", got, g.seg, g.end)
		}
		data := g.waitCopy()
		if n := g.checkCopy(data); n < g.end {
			t.Errorf("the stored copy's records end at %d, before the end of the record after the commit at %d", n, g.end)
		}
		g.checkCommit(data)
	})
}

// TestReceiver_Run_LeftoverTimelines: the server is promoted (restarted
// as a standby with nothing to replay, then pg_ctl promote: timeline 2)
// while a Receiver (a child process) streams from it with the storage
// down, so the spool keeps every file: timeline 1's complete segments
// and its last segment as .partial, 00000002.history, a complete segment
// of timeline 2 and the .partial in progress, a commit and a record after
// it fsynced there. The child is killed with SIGKILL and the server
// stopped for good. A new Run on the spool, the storage back, stores
// every one of those files without a server, in segment order: timeline
// 1's .partial as the server has it up to the switch point, and the
// .partial in progress up to the record after the commit (pg_waldump on
// 15 finds the commit).
func TestReceiver_Run_LeftoverTimelines(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, major int) {
		c := pgtest.Start(t, pgtest.Options{Major: major, WALSegmentSizeMB: 1})
		c.Exec(t, "create table rows (id bigint, pad text)")
		g := &serverGone{t: t, d: durableOf(t, c, "")}
		ch := g.d.runChild(crashSpec{StorageDown: true})
		c.WaitTrue(t, testTimeout, "select exists (select from pg_replication_slots where slot_name = 'hoard' and active)")
		g.d.insert(10)
		switchWAL(t, c)
		g.d.insert(50)
		c.NewTimeline(t)
		if done := switchWAL(t, c); !strings.HasPrefix(done, "00000002") {
			t.Fatalf("the server completed %s after the promotion, not a segment of timeline 2", done)
		}
		g.commitLast(2)
		ch.kill(t)
		c.Stop(t)

		sp, err := readSpool(g.d.spool)
		if err != nil {
			t.Fatal(err)
		}
		want := slices.Sorted(slices.Values(slices.Concat(sp.uploads, sp.partials)))
		ended := sp.endedPartials()
		if len(ended) != 1 || !slices.Contains(sp.uploads, "00000002.history") || !slices.Contains(sp.partials, g.name) {
			t.Fatalf("the spool holds %v: want one .partial of timeline 1, 00000002.history and %s", want, g.name)
		}
		for _, name := range want {
			if g.d.stored(name) {
				t.Fatalf("%s stored before the crash: the storage was down", name)
			}
		}
		g.rr = launch(t, c, g.d.spool, g.d.up, Options{}, nil, nil)
		waitFor(t, fmt.Sprintf("every file of the spool stored: %v", want), func() bool {
			for _, name := range want {
				if !g.d.stored(name) {
					return false
				}
			}
			return true
		})
		calls := g.d.up.uploads()
		for i := 1; i < len(calls); i++ {
			if calls[i].name < calls[i-1].name {
				t.Errorf("%s stored after %s: not in segment order", calls[i].name, calls[i-1].name)
			}
		}

		// Timeline 1's .partial: the server began timeline 2's segment of
		// the same number (streamed on its own, stored complete, the
		// server's copy recycled since) with those bytes, up to the
		// switch point its history file names.
		history, err := os.ReadFile(filepath.Join(c.DataDir, "pg_wal", "00000002.history"))
		if err != nil {
			t.Fatal(err)
		}
		h, err := wal.ParseHistory(2, history)
		if err != nil || len(h) != 2 {
			t.Fatalf("history %q: %v", history, err)
		}
		n := int64(uint64(h[1].Begin) % g.d.segSize)
		old, next := g.decoded(ended[0]), g.fetch("00000002"+ended[0][8:24])
		if n == 0 || int64(len(old)) < n || !bytes.Equal(old[:n], next[:n]) {
			t.Errorf("the stored %s (%d bytes) differs from timeline 2's segment in its first %d bytes, up to the switch point", ended[0], len(old), n)
		}
		data := g.decoded(g.name)
		if n := g.checkCopy(data); n < g.end {
			t.Errorf("the stored copy's records end at %d, before the end of the record after the commit at %d", n, g.end)
		}
		g.checkCommit(data)
	})
}

// TestReceiver_Run_LeftoverTorn: as TestReceiver_Run_LeftoverServerGone,
// with the dead run's .partial damaged past the record after the commit
// before the new Run reads it: a torn tail (random bytes, as a write cut
// by a power loss leaves), or older WAL (the pages of the segment before,
// as a recycled file holds). The copy stored ends at the end of the last
// valid record: exactly where the record after the commit ends, for the
// torn tail; past it and before the first page of older WAL, for that.
func TestReceiver_Run_LeftoverTorn(t *testing.T) {
	major := pgtest.Versions()[len(pgtest.Versions())-1]
	t.Run("TornTail", func(t *testing.T) {
		g := crashServerGone(t, major, func(g *serverGone) {
			garbage := make([]byte, 3000)
			if _, err := rand.Read(garbage); err != nil {
				t.Fatal(err)
			}
			g.writeSpool(garbage, align8(g.end))
		})
		data := g.waitCopy()
		if n := g.checkCopy(data); n != align8(g.end) || int64(len(data)) != n {
			t.Errorf("the stored copy is %d bytes and its records end at %d, want both at %d, the end of the record before the torn tail", len(data), n, align8(g.end))
		}
	})
	t.Run("OlderWAL", func(t *testing.T) {
		var page int64
		g := crashServerGone(t, major, func(g *serverGone) {
			const blockSize = 8192
			page = (g.end + blockSize - 1) / blockSize * blockSize
			g.writeSpool(g.prev[page:], page)
		})
		data := g.waitCopy()
		n := g.checkCopy(data)
		if n < g.end || int64(len(data)) > page {
			t.Errorf("the stored copy is %d bytes and its records end at %d, want them past %d and no byte past %d, where the older WAL starts", len(data), n, g.end, page)
		}
	})
}

// TestReceiver_Run_LeftoverSlotGone: as
// TestReceiver_Run_LeftoverServerGone, but the server runs on and no
// longer has the dead run's segment: while no Receiver runs, the slot is
// dropped and created again (an operator, or a slot invalidated by
// max_slot_wal_keep_size), and checkpoints recycle the segment. A new Run
// on the spool connects, cannot resume (ErrWALRemoved, fatal), and the
// .partial the dead run left is the only copy of the last commits: Run
// stores it, up to the end of its last valid record, before it returns
// the error. pg_waldump (PostgreSQL 15) finds the commit in the stored
// copy.
func TestReceiver_Run_LeftoverSlotGone(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, major int) {
		g := crashLeftover(t, major)
		c := g.d.c
		c.WaitTrue(t, testTimeout, "select not exists (select from pg_replication_slots where slot_name = 'hoard' and active)")
		c.Exec(t, "select pg_drop_replication_slot('hoard')")
		// The new slot reserves WAL from the redo point of the last
		// checkpoint: one after the dead run's segment.
		switchWAL(t, c)
		c.Exec(t, "checkpoint")
		c.Exec(t, "select pg_create_physical_replication_slot('hoard', true)")
		gone := func() bool {
			_, err := os.Stat(filepath.Join(c.DataDir, "pg_wal", g.seg))
			return errors.Is(err, os.ErrNotExist)
		}
		waitFor(t, g.seg+" recycled by the server", func() bool {
			g.d.insert(10)
			switchWAL(t, c)
			c.Exec(t, "checkpoint")
			return gone()
		})

		g.runFails(c, ErrWALRemoved)
	})
}

// runFails runs a Receiver on the spool against c, waits until Run
// returns an error wrapping want, and checks that it stored the spool's
// .partial first, up to the record after the commit at least (pg_waldump
// on 15 finds the commit).
func (g *serverGone) runFails(c *pgtest.Cluster, want error) {
	t := g.t
	t.Helper()
	g.rr = launch(t, c, g.d.spool, g.d.up, Options{}, nil, nil)
	var err error
	select {
	case err = <-g.rr.done:
		g.rr.done = nil
	case <-time.After(testTimeout):
		t.Fatalf("Run did not return, want %v", want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("Run returned %v, want %v", err, want)
	}
	if !g.d.stored(g.name) {
		t.Fatalf("Run returned without storing %s, the only copy of the WAL of transaction %s", g.name, g.xid)
	}
	data := g.decoded(g.name)
	if n := g.checkCopy(data); n < g.end {
		t.Errorf("the stored copy's records end at %d, before the end of the record after the commit at %d", n, g.end)
	}
	g.checkCommit(data)
}

// TestReceiver_Run_LeftoverOldLayout: the spool an older hoard version
// left when it died while completing a segment. It opened the next
// segment's .partial (created at the segment size, zeros) before it
// renamed the finished one, so a crash in between left the finished
// segment as <segment>.partial and an empty .partial after it (the
// layout repairSpool deals with when the server answers). Here a child
// Receiver is killed with SIGKILL after it fsynced a full segment and
// before the rename (step "synced"), the next segment's .partial is
// created as the old code did (openSegment), and the server is stopped
// for good. A new Run cannot connect: it stores the full segment's
// .partial, up to the end of its last valid record, and not the empty
// file after it. pg_waldump (Debian's, so PostgreSQL 15 only) decodes in
// the stored copy every record it decodes in the spool's file, a commit
// among them.
func TestReceiver_Run_LeftoverOldLayout(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.DebianMajor, WALSegmentSizeMB: 1})
	c.Exec(t, "create table rows (id bigint, pad text)")
	d := durableOf(t, c, "")
	d.crash("synced")
	full := d.checkSpoolAfterCrash()
	if full == nil {
		t.Fatal("the crash at synced left no full .partial")
	}
	next, err := openSegment(d.spool, full.Next(), d.segSize, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := next.close(); err != nil {
		t.Fatal(err)
	}
	c.Stop(t)
	seg := full.Name(d.segSize)
	g := &serverGone{t: t, d: d, seg: seg, name: seg + wal.PartialSuffix}
	if d.stored(g.name) || d.stored(seg) {
		t.Fatalf("%s stored before the new run", seg)
	}
	g.rr = launch(t, c, d.spool, d.up, Options{}, nil, nil)
	data := g.waitCopy()
	n := g.checkCopy(data)
	if n == 0 || int64(len(data)) != n {
		t.Errorf("the stored copy is %d bytes and its records end at %d: want the copy to end where they do", len(data), n)
	}
	if next := next.name() + wal.PartialSuffix; d.stored(next) {
		t.Errorf("%s stored: the older version's empty file", next)
	}
	spool, err := os.ReadFile(filepath.Join(d.spool, g.name))
	if err != nil {
		t.Fatal(err)
	}
	records := func(out string) []string {
		return regexp.MustCompile(`(?m)^rmgr: .*lsn: [0-9A-F]+/[0-9A-F]+`).FindAllString(out, -1)
	}
	got, want := pgtest.Waldump(t, seg, data, int(d.segSize)), pgtest.Waldump(t, seg, spool, int(d.segSize))
	if w := records(want); len(w) == 0 || !slices.Equal(records(got), w) {
		t.Errorf("pg_waldump decodes %d records in the stored copy, %d in the spool's file:\n%s\nspool's file:\n%s",
			len(records(got)), len(w), tailLines(got, 5), tailLines(want, 5))
	}
	if !strings.Contains(got, "desc: COMMIT") {
		t.Errorf("pg_waldump finds no commit in the stored copy:\n%s", tailLines(got, 5))
	}
	g.rr.stop(t)
}

// TestReceiver_Run_LeftoverRenameFailed: the other spool an older hoard
// version could leave: its rename of a full segment failed and it went
// on into the next segment, so the full segment stayed
// <segment>.partial behind the .partial it was receiving. That run
// reported the full segment flushed, so the server may have recycled
// it: the spool's file is its only copy. Here the spool gets the
// server's own files (PostgreSQL 15): a full segment (completed by a
// switch, whose pages after it are zeros, or filled with rows) as the
// full .partial, and the next one, holding a commit and a record after
// it, as the .partial in progress; then the server stops for good. A new
// Run cannot connect: it stores the full segment complete, the server's
// bytes, before the next one's .partial, whose copy holds the commit
// (pg_waldump); a restore then reaches the commit through them, which
// it cannot from the .partial alone.
func TestReceiver_Run_LeftoverRenameFailed(t *testing.T) {
	t.Run("Switched", func(t *testing.T) {
		testLeftoverRenameFailed(t, func(d *durable) string {
			d.insert(300)
			return switchWAL(t, d.c)
		})
	})
	t.Run("Filled", func(t *testing.T) {
		testLeftoverRenameFailed(t, func(d *durable) string {
			segment := func() string {
				return d.c.QueryString(t, "select pg_walfile_name(pg_current_wal_insert_lsn())")
			}
			cur := segment()
			for segment() == cur {
				d.insert(100)
			}
			return cur
		})
	})
}

// testLeftoverRenameFailed is TestReceiver_Run_LeftoverRenameFailed
// with the full segment that fill completes.
func testLeftoverRenameFailed(t *testing.T, fill func(*durable) string) {
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.DebianMajor, WALSegmentSizeMB: 1})
	c.Exec(t, "create table rows (id bigint, pad text)")
	d := durableOf(t, c, "")
	g := &serverGone{t: t, d: d}
	full := fill(d)
	d.insert(300)
	g.xid = c.QueryString(t, "with i as (insert into rows values (1, 'last') returning id) select txid_current()::text from i")
	after := lsn(t, c, "select pg_logical_emit_message(false, 'hoard-test', 'after the commit')")
	c.WaitTrue(t, testTimeout, "select pg_current_wal_flush_lsn() >= $1::pg_lsn", after.String())
	s := wal.SegmentOf(1, after-1, d.segSize)
	g.seg, g.name = s.Name(d.segSize), s.Name(d.segSize)+wal.PartialSuffix
	g.end = int64(after - s.StartLSN(d.segSize))
	if prev := (wal.Segment{Timeline: 1, No: s.No - 1}).Name(d.segSize); prev != full {
		t.Fatalf("the commit's record after ends in %s, not in the segment after %s", g.seg, full)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(c.DataDir, "pg_wal", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	want := read(full)
	if err := os.WriteFile(filepath.Join(d.spool, full+wal.PartialSuffix), want, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.spool, g.name), read(g.seg), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Stop(t)

	g.rr = launch(t, c, d.spool, d.up, Options{}, nil, nil)
	data := g.waitCopy()
	if !d.stored(full) {
		t.Fatalf("%s stored, but not %s before it: the spool's %s.partial is the only copy of its WAL", g.name, full, full)
	}
	if got := g.fetch(full); !bytes.Equal(got, want) {
		t.Errorf("the stored %s (%d bytes) is not the server's (%d bytes)", full, len(got), len(want))
	}
	if n := g.checkCopy(data); n < g.end {
		t.Errorf("the stored copy's records end at %d, before the end of the record after the commit at %d", n, g.end)
	}
	g.checkCommit(data)
	var order []string
	for _, u := range d.up.uploads() {
		order = append(order, u.name)
	}
	if want := []string{full, g.name}; !slices.Equal(order, want) {
		t.Errorf("stored %v, want %v", order, want)
	}
	if d.stored(full + wal.PartialSuffix) {
		t.Errorf("%s.partial stored: a full segment is stored complete", full)
	}
	g.rr.stop(t)
}

// TestReceiver_Run_RepairSlotPast: the spool an older hoard version
// left (repairSpool's case) with the server running on: a full segment
// as <segment>.partial below the .partial of the next one, which is
// empty (a crash between opening it and the rename) or holds WAL (a
// failed rename), while the slot is past the full segment (that version
// reported its end flushed) and the server recycled it. The spool's file
// is the only copy of that segment, and a whole one (the server's own
// bytes, PostgreSQL 15): a segment completed by a switch, whose pages
// after the switch record are zeros, or one filled with rows. A new Run
// completes and stores it, the server's bytes, and streams on from the
// next segment, which the server still has; it does not try to stream the
// recycled segment again and stop (ErrWALRemoved), which left a switched
// segment stored as a .partial only, at every restart.
func TestReceiver_Run_RepairSlotPast(t *testing.T) {
	switched := func(d *durable) string {
		d.insert(300)
		return switchWAL(t, d.c)
	}
	filled := func(d *durable) string {
		segment := func() string {
			return d.c.QueryString(t, "select pg_walfile_name(pg_current_wal_insert_lsn())")
		}
		cur := segment()
		for segment() == cur {
			d.insert(100)
		}
		return cur
	}
	t.Run("SwitchedNextEmpty", func(t *testing.T) { testRepairSlotPast(t, switched, false) })
	t.Run("SwitchedNextWritten", func(t *testing.T) { testRepairSlotPast(t, switched, true) })
	t.Run("FilledNextEmpty", func(t *testing.T) { testRepairSlotPast(t, filled, false) })
}

// testRepairSlotPast is TestReceiver_Run_RepairSlotPast with the full
// segment that fill completes and the next segment's .partial holding
// the server's WAL (written) or none.
func testRepairSlotPast(t *testing.T, fill func(*durable) string, written bool) {
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.DebianMajor, WALSegmentSizeMB: 1})
	c.Exec(t, "create table rows (id bigint, pad text)")
	d := durableOf(t, c, "")
	full := fill(d)
	d.insert(10)
	seg, err := wal.ParseSegmentName(full, d.segSize)
	if err != nil {
		t.Fatal(err)
	}
	next := seg.Next().Name(d.segSize)
	want, err := os.ReadFile(filepath.Join(c.DataDir, "pg_wal", full))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.spool, full+wal.PartialSuffix), want, 0o600); err != nil {
		t.Fatal(err)
	}
	if written {
		b, err := os.ReadFile(filepath.Join(c.DataDir, "pg_wal", next))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d.spool, next+wal.PartialSuffix), b, 0o600); err != nil {
			t.Fatal(err)
		}
	} else {
		f, err := openSegment(d.spool, seg.Next(), d.segSize, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.close(); err != nil {
			t.Fatal(err)
		}
	}
	// The slot reserves WAL from the redo point of the last checkpoint,
	// in the next segment: past the full one, as the older version
	// reported it flushed.
	c.Exec(t, "checkpoint")
	c.Exec(t, "select pg_create_physical_replication_slot('hoard', true)")
	if restart := lsn(t, c, "select restart_lsn from pg_replication_slots where slot_name = 'hoard'"); restart < seg.Next().StartLSN(d.segSize) {
		t.Fatalf("the slot's restart_lsn %s is not past %s", restart, full)
	}
	waitFor(t, full+" recycled by the server", func() bool {
		c.Exec(t, "checkpoint")
		_, err := os.Stat(filepath.Join(c.DataDir, "pg_wal", full))
		return errors.Is(err, os.ErrNotExist)
	})

	rr := launch(t, c, d.spool, d.up, Options{}, nil, nil)
	deadline := time.Now().Add(testTimeout)
	for !d.stored(full) || !rr.r.Status().Connected {
		select {
		case err := <-rr.done:
			rr.done = nil
			t.Fatalf("Run returned %v; %s stored complete: %v", err, full, d.stored(full))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s stored and streaming", full)
		}
	}
	if got := (&serverGone{t: t, d: d}).fetch(full); !bytes.Equal(got, want) {
		t.Errorf("the stored %s (%d bytes) is not the server's (%d bytes)", full, len(got), len(want))
	}
	if d.stored(full + wal.PartialSuffix) {
		t.Errorf("%s.partial stored: a whole segment is stored complete", full)
	}
	// Streaming goes on from the next segment.
	if done := switchWAL(t, c); done != next {
		t.Fatalf("the server completed %s, want %s", done, next)
	}
	waitFor(t, next+" stored", func() bool { return d.stored(next) })
	rr.stop(t)
}

// TestCompleteFull: a full segment left as .partial is renamed complete
// only when it is a whole segment of valid WAL records, as PostgreSQL 15
// wrote it: completed by a switch (zeros after the switch record, which
// a check of every page's header refused) or filled with records. One
// with a page never written, a page of another segment (a recycled
// file) or cut short stays a .partial, and so does one whose segment size
// is not the server's, when a server told it.
func TestCompleteFull(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.DebianMajor, WALSegmentSizeMB: 1})
	c.Exec(t, "create table rows (id bigint, pad text)")
	d := durableOf(t, c, "")
	d.insert(300)
	switched := switchWAL(t, c)
	segment := func() string { return c.QueryString(t, "select pg_walfile_name(pg_current_wal_insert_lsn())") }
	filled := segment()
	for segment() == filled {
		d.insert(100)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(c.DataDir, "pg_wal", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	sw, fl := read(switched), read(filled)
	const page = 8192
	for _, tc := range []struct {
		name, seg string
		data      []byte
		segSize   uint64 // the server's; 0 when none told it
		ok        bool
	}{
		{"OKSwitched", switched, sw, 0, true},
		{"OKFilled", filled, fl, 0, true},
		{"OKServersSize", filled, fl, d.segSize, true},
		{"ErrUnwrittenPage", filled, func() []byte {
			b := slices.Clone(fl)
			clear(b[len(b)-page:])
			return b
		}(), 0, false},
		{"ErrOtherSegmentsPage", filled, func() []byte {
			b := slices.Clone(fl)
			addr := binary.LittleEndian.Uint64(b[page*3+8:])
			binary.LittleEndian.PutUint64(b[page*3+8:], addr+d.segSize)
			return b
		}(), 0, false},
		{"ErrShort", filled, fl[:len(fl)/2], 0, false},
		{"ErrOtherServersSize", filled, fl, 2 * d.segSize, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, tc.seg+wal.PartialSuffix), tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			err := completeFull(dir, tc.seg+wal.PartialSuffix, tc.segSize)
			got, readErr := os.ReadFile(filepath.Join(dir, tc.seg))
			if tc.ok && (err != nil || readErr != nil || !bytes.Equal(got, tc.data)) {
				t.Errorf("complete: %v; complete segment: %v", err, readErr)
			}
			if !tc.ok && (err == nil || readErr == nil) {
				t.Errorf("complete a segment that is not whole: %v; complete segment: %v", err, readErr)
			}
		})
	}
}

// tailLines returns the last n lines of s.
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// serverGone is a spool that a Receiver killed with SIGKILL left, with
// the server stopped for good, and a new Receiver running on it.
type serverGone struct {
	t    *testing.T
	d    *durable
	seg  string // the segment in progress at the crash
	name string // its .partial
	xid  string // the last commit's transaction
	// end is the segment offset of the end of the record written after
	// the last commit, which the dead run fsynced and reported.
	end int64
	// prev is the segment before seg, as archived.
	prev []byte
	rr   *running
}

// crashServerGone is crashLeftover, then the server stopped for good and
// each damage run on the spool before a new Receiver starts on it.
func crashServerGone(t *testing.T, major int, damage ...func(*serverGone)) *serverGone {
	t.Helper()
	g := crashLeftover(t, major)
	g.d.c.Stop(t)
	for _, fn := range damage {
		fn(g)
	}
	g.rr = launch(t, g.d.c, g.d.spool, g.d.up, Options{}, nil, nil)
	return g
}

// crashLeftover streams a server of the major into a real archive from
// a child process, writes about 300 KiB of rows into a new segment, then
// commits one more, writes a record after it and waits until the slot
// says the child fsynced it. Then it kills the child with SIGKILL; the
// server runs on, and no Receiver runs on the spool.
func crashLeftover(t *testing.T, major int) *serverGone {
	t.Helper()
	c := pgtest.Start(t, pgtest.Options{Major: major, WALSegmentSizeMB: 1})
	c.Exec(t, "create table rows (id bigint, pad text)")
	return crashLeftoverOf(t, c, 1)
}

// crashLeftoverOf is crashLeftover on the running cluster c, which has
// the table rows and is on timeline tli.
func crashLeftoverOf(t *testing.T, c *pgtest.Cluster, tli uint32) *serverGone {
	t.Helper()
	g := &serverGone{t: t, d: durableOf(t, c, "")}
	ch := g.d.startChild("")
	c.WaitTrue(t, testTimeout, "select exists (select from pg_replication_slots where slot_name = 'hoard' and active)")
	g.d.insert(10)
	prev := switchWAL(t, c)
	g.commitLast(tli)
	waitFor(t, prev+" archived", func() bool { return g.d.stored(prev) })
	ch.kill(t)

	if g.seg == prev {
		t.Fatalf("the record after the commit ends in %s, the segment the switch completed", prev)
	}
	if g.d.stored(g.name) {
		t.Fatalf("%s stored before the crash: PartialUploadInterval is 0", g.name)
	}
	g.prev = g.fetch(prev)
	return g
}

// commitLast writes about 300 KiB of rows (records over many pages),
// commits one more, writes a record after it on timeline tli and waits
// until the slot says the child fsynced it. It sets g.xid, g.seg, g.name
// and g.end.
func (g *serverGone) commitLast(tli uint32) {
	t, c := g.t, g.d.c
	t.Helper()
	g.d.insert(300)
	g.xid = c.QueryString(t, "with i as (insert into rows values (1, 'last') returning id) select txid_current()::text from i")
	after := lsn(t, c, "select pg_logical_emit_message(false, 'hoard-test', 'after the commit')")
	c.WaitTrue(t, testTimeout, "select restart_lsn >= $1::pg_lsn from pg_replication_slots where slot_name = 'hoard'", after.String())
	s := wal.SegmentOf(tli, after-1, g.d.segSize)
	g.seg, g.name = s.Name(g.d.segSize), s.Name(g.d.segSize)+wal.PartialSuffix
	g.end = int64(after - s.StartLSN(g.d.segSize))
}

// fetch returns the archived WAL file name, decoded.
func (g *serverGone) fetch(name string) []byte {
	g.t.Helper()
	p := filepath.Join(g.t.TempDir(), name)
	if err := g.d.arch.FetchWAL(context.Background(), name, p, archive.FetchOptions{}); err != nil {
		g.t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		g.t.Fatal(err)
	}
	return b
}

// writeSpool writes b at off in the spool's .partial.
func (g *serverGone) writeSpool(b []byte, off int64) {
	g.t.Helper()
	f, err := os.OpenFile(filepath.Join(g.d.spool, g.name), os.O_WRONLY, 0)
	if err != nil {
		g.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		g.t.Fatal(err)
	}
}

// waitCopy waits until the new Run stored the .partial and returns it
// decoded.
func (g *serverGone) waitCopy() []byte {
	t := g.t
	t.Helper()
	waitFor(t, g.name+" stored by the run after the crash", func() bool { return g.d.stored(g.name) })
	return g.decoded(g.name)
}

// decoded returns the stored .partial name, decoded.
func (g *serverGone) decoded(name string) []byte {
	t := g.t
	t.Helper()
	rc, _, err := g.d.arch.Codec.Open(context.Background(), g.d.arch.Store, g.d.arch.Layout.WALKey(name))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
	return data
}

// checkCopy checks that the stored copy data is the start of the spool
// file, and returns the segment offset where its valid records end.
func (g *serverGone) checkCopy(data []byte) int64 {
	t := g.t
	t.Helper()
	spool, err := os.ReadFile(filepath.Join(g.d.spool, g.name))
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > len(spool) || !bytes.Equal(data, spool[:len(data)]) {
		t.Fatalf("the stored %s (%d bytes) is not the start of the spool's (%d bytes)", g.name, len(data), len(spool))
	}
	var rec wal.RecordEnd
	if _, err := rec.Write(data); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d bytes stored, records end at %d, the record after the commit at %d", g.name, len(data), rec.End(), g.end)
	return rec.End()
}

// checkCommit checks, on PostgreSQL 15 (pgtest.DebianMajor), that
// pg_waldump finds the last commit in the stored copy data.
func (g *serverGone) checkCommit(data []byte) {
	t := g.t
	t.Helper()
	if g.d.major != pgtest.DebianMajor {
		return
	}
	out := pgtest.Waldump(t, g.seg, data, int(g.d.segSize))
	if !regexp.MustCompile(`tx: +` + g.xid + `, lsn: .*desc: COMMIT`).MatchString(out) {
		t.Errorf("pg_waldump of the stored %s.partial (%d bytes) has no commit of transaction %s:\n%s", g.seg, len(data), g.xid, out)
	}
}

// align8 rounds n up to a multiple of 8, as PostgreSQL aligns records.
func align8(n int64) int64 { return (n + 7) &^ 7 }

// TestValidWAL reads a real segment (wal.RecordEnd's) as a spool's
// .partial: the valid WAL ends at the end of its last record, whatever
// follows it: zeros, a torn tail, a record cut short or changed, or pages of an
// older segment (a recycled file), whose records are intact but whose
// pages carry another segment's address. A first page that is not the
// segment's, or no page at all, is not WAL.
func TestValidWAL(t *testing.T) {
	z := waltest.ZeroEndedSegment(t, pgtest.Versions()[len(pgtest.Versions())-1])
	name := z.Name + wal.PartialSuffix
	const blockSize = 8192
	// The page holding the last record's last byte.
	page := (z.Aligned - 1) / blockSize * blockSize
	if page == 0 {
		t.Fatalf("the segment's records end at %d, on its first page", z.Aligned)
	}
	torn := bytes.Clone(z.Data)
	if _, err := rand.Read(torn[z.Aligned:]); err != nil {
		t.Fatal(err)
	}
	changed := bytes.Clone(z.Data)
	changed[z.Aligned-9] ^= 0x01
	// The same bytes from page on, with the addresses of the segment
	// before: what a recycled file of that segment holds there.
	recycled := bytes.Clone(z.Data)
	for off := page; off < int64(len(recycled)); off += blockSize {
		addr := binary.LittleEndian.Uint64(recycled[off+8:])
		binary.LittleEndian.PutUint64(recycled[off+8:], addr-uint64(len(recycled)))
	}
	for _, tc := range []struct {
		name string
		data []byte
		file string
		want int64 // -1: not WAL
		max  int64 // when not 0: want is not known, but is above 0 and at most max
	}{
		{"OK", z.Data, name, z.Aligned, 0},
		{"OKTrimmed", z.Data[:z.Aligned], name, z.Aligned, 0},
		{"TornTail", torn, name, z.Aligned, 0},
		{"CutInRecord", z.Data[:z.Aligned-8], name, z.Before, 0},
		{"RecordChanged", changed, name, z.Before, 0},
		{"RecycledPages", recycled, name, 0, page},
		{"ErrOtherSegment", z.Data, "000000010000000000000063" + wal.PartialSuffix, -1, 0},
		{"ErrZeros", make([]byte, len(z.Data)), name, -1, 0},
		{"ErrShort", z.Data[:20], name, -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), tc.file)
			if err := os.WriteFile(p, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			n, err := validWAL(p, tc.file)
			switch {
			case tc.want < 0:
				if !errors.Is(err, wal.ErrBadPageHeader) {
					t.Errorf("validWAL = %d, %v; want an error wrapping wal.ErrBadPageHeader", n, err)
				}
			case err != nil:
				t.Fatal(err)
			case tc.max != 0:
				if n == 0 || int64(n) > tc.max {
					t.Errorf("validWAL = %d, want above 0 and at most %d, where the pages of another segment start (the records end at %d)", n, tc.max, z.Aligned)
				}
			case int64(n) != tc.want:
				t.Errorf("validWAL = %d, want %d", n, tc.want)
			}
		})
	}
}

// TestReceiver_leftover: the newest .partial of the spool that holds WAL
// is noted (passing over newer ones that hold none, which older versions
// opened ahead), unless a complete segment is as new or the previous
// Run's copy was adopted;
// a session that received no WAL and found no server, or Run's stop,
// queues its valid WAL as the stream end's copy, once, and so does a
// fatal error after which the server cannot stream it again
// (ErrWALRemoved, ErrOtherHistory); a server that answered without
// streaming keeps it for the next session; a session that received WAL,
// or another fatal error, forgets it.
func TestReceiver_leftover(t *testing.T) {
	z := waltest.ZeroEndedSegment(t, pgtest.Versions()[len(pgtest.Versions())-1])
	seg, err := wal.ParseSegmentName(z.Name, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	name := z.Name + wal.PartialSuffix
	prev := wal.Segment{Timeline: seg.Timeline, No: seg.No - 1}.Name(1 << 20)
	older := prev + wal.PartialSuffix
	newer := seg.Next().Name(1 << 20)
	unreachable := fmt.Errorf("connect: %w: connection refused", replication.ErrUnreachable)
	for _, tc := range []struct {
		name       string
		files      []string // besides the .partial name
		end        StreamEnd
		progressed bool
		err        error
		stopping   bool
		want       bool // the copy queued
		later      bool // queued by the next session, unreachable
	}{
		{"OK", nil, StreamEnd{}, false, unreachable, false, true, false},
		{"OKStopping", nil, StreamEnd{}, false, context.Canceled, true, true, false},
		{"OKOlderPartial", []string{older}, StreamEnd{}, false, unreachable, false, true, false},
		{"OKOlderSegment", []string{prev}, StreamEnd{}, false, unreachable, false, true, false},
		{"OKAfterReachable", nil, StreamEnd{}, false, errors.New(`replication slot "hoard" is active for PID 7`), false, false, true},
		{"ErrNewerSegment", []string{newer}, StreamEnd{}, false, unreachable, false, false, false},
		// An older version's layout: the next segment's .partial opened
		// (zeros) before this one was renamed complete.
		{"OKNewerEmptyPartial", []string{newer + wal.PartialSuffix}, StreamEnd{}, false, unreachable, false, true, false},
		{"OKNewerEmptyPartialWALRemoved", []string{newer + wal.PartialSuffix}, StreamEnd{}, false, fatal(fmt.Errorf("resume: %w", ErrWALRemoved)), false, true, false},
		{"ErrNewerEmptyPartialNewerSegment", []string{newer + wal.PartialSuffix, z.Name}, StreamEnd{}, false, unreachable, false, false, false},
		{"ErrEndedTimeline", []string{"00000002.history"}, StreamEnd{}, false, unreachable, false, false, false},
		{"ErrHandedOver", []string{older}, StreamEnd{Name: older, Length: 8192}, false, unreachable, false, false, false},
		{"ErrProgressed", nil, StreamEnd{}, true, unreachable, false, false, false},
		{"OKWALRemoved", nil, StreamEnd{}, false, fatal(fmt.Errorf("resume: %w", ErrWALRemoved)), false, true, false},
		{"OKOtherHistory", nil, StreamEnd{}, false, fatal(fmt.Errorf("spool is on timeline 3: %w", ErrOtherHistory)), false, true, false},
		{"ErrFatal", nil, StreamEnd{}, false, fatal(unreachable), false, false, false},
		{"ErrFatalSegmentSize", nil, StreamEnd{}, false, fatal(errors.New("wal segment size changed")), false, false, false},
		{"ErrNotFatal", nil, StreamEnd{}, false, fmt.Errorf("resume: %w", ErrWALRemoved), false, false, true},
		{"ErrProgressedWALRemoved", nil, StreamEnd{}, true, fatal(ErrWALRemoved), false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spool := t.TempDir()
			if err := os.WriteFile(filepath.Join(spool, name), z.Data, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, f := range tc.files {
				if err := os.WriteFile(filepath.Join(spool, f), make([]byte, 1<<20), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			r, err := New(Options{Slot: "s", SpoolDir: spool, Uploader: newSink(t), StreamEnd: tc.end})
			if err != nil {
				t.Fatal(err)
			}
			c, err := readSpool(spool)
			if err != nil {
				t.Fatal(err)
			}
			r.adoptStreamEnd()
			r.noteLeftover(c)
			r.leftoverAfter(tc.progressed, tc.err, tc.stopping)
			want := tc.end // adopted, when set
			if tc.want {
				want = StreamEnd{Name: name, Length: uint64(z.Aligned)}
			}
			if got := r.PendingStreamEnd(); got != want {
				t.Errorf("PendingStreamEnd %+v, want %+v", got, want)
			}
			if queued := r.queue.hasSnapshot(); queued != (want != StreamEnd{}) {
				t.Errorf("copy queued %v, want %v", queued, want != StreamEnd{})
			}
			// Once, unless kept: the next session finds no server.
			r.queue = newUploadQueue()
			r.leftoverAfter(false, unreachable, false)
			if queued := r.queue.hasSnapshot(); queued != tc.later {
				t.Errorf("copy queued by the next session %v, want %v", queued, tc.later)
			}
		})
	}
}

// TestReceiver_completeBelow: a .partial below the leftover on its
// timeline whose records stop before the end of the segment (zeros
// after them, no XLOG_SWITCH) is not whole: it stays in the spool as it
// is, nothing of it is queued, the error is kept in Status, and the
// leftover's copy is queued all the same; one that holds no WAL is left
// alone without an error.
func TestReceiver_completeBelow(t *testing.T) {
	z := waltest.ZeroEndedSegment(t, pgtest.Versions()[len(pgtest.Versions())-1])
	seg, err := wal.ParseSegmentName(z.Name, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	below := z.Name + wal.PartialSuffix
	next := seg.Next().Name(1 << 20)
	for _, tc := range []struct {
		name    string
		data    []byte
		wantErr bool
	}{
		{"ErrNotWhole", z.Data, true},
		{"OKEmpty", make([]byte, 1<<20), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spool := t.TempDir()
			if err := os.WriteFile(filepath.Join(spool, below), tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			// The leftover: the next segment's WAL, as the same server
			// wrote it (z.Data renamed would not fit its name).
			leftover := bytes.Clone(z.Data)
			binary.LittleEndian.PutUint64(leftover[8:], uint64(seg.Next().StartLSN(1<<20)))
			if err := os.WriteFile(filepath.Join(spool, next+wal.PartialSuffix), leftover, 0o600); err != nil {
				t.Fatal(err)
			}
			r, c := spoolReceiver(t, spool)
			r.noteLeftover(c)
			if !slices.Equal(r.below, []string{below}) {
				t.Fatalf("below %v, want [%s]", r.below, below)
			}
			r.leftoverAfter(false, fmt.Errorf("connect: %w", replication.ErrUnreachable), false)
			got, err := os.ReadFile(filepath.Join(spool, below))
			if err != nil || !bytes.Equal(got, tc.data) {
				t.Errorf("%s changed in the spool (%v)", below, err)
			}
			for _, task := range r.queue.tasks {
				if task.kind == taskFile {
					t.Errorf("%s queued", task.name)
				}
			}
			if gotErr := r.Status().LastErr != nil; gotErr != tc.wantErr {
				t.Errorf("error kept %v (%v), want %v", gotErr, r.Status().LastErr, tc.wantErr)
			}
			if !r.queue.hasSnapshot() {
				t.Error("the leftover's copy not queued")
			}
		})
	}
}

// TestReceiver_storeStreamEnd_held: a stream end of the segment whose
// spool file held WAL before its session (an earlier run's, read from the
// file; or a length this process fsynced) stores the longer of that and
// what the session fsynced, whichever way the session ended; a stream
// end of another segment stores what its session fsynced.
func TestReceiver_storeStreamEnd_held(t *testing.T) {
	z := waltest.ZeroEndedSegment(t, pgtest.Versions()[len(pgtest.Versions())-1])
	seg, err := wal.ParseSegmentName(z.Name, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	name := z.Name + wal.PartialSuffix
	other := seg.Next().Name(1<<20) + wal.PartialSuffix
	lost := fmt.Errorf("receive: %w", io.ErrUnexpectedEOF)
	short := uint64(z.Before / 2)
	for _, tc := range []struct {
		name     string
		held     StreamEnd
		synced   uint64
		err      error
		stopping bool
		want     uint64
	}{
		{"OKLeftoverRead", StreamEnd{Name: name}, short, lost, false, uint64(z.Aligned)},
		{"OKLeftoverReadStopping", StreamEnd{Name: name}, short, context.Canceled, true, uint64(z.Aligned)},
		{"OKFsyncedHere", StreamEnd{Name: name, Length: uint64(z.Before)}, short, lost, false, uint64(z.Before)},
		{"OKSessionLonger", StreamEnd{Name: name, Length: uint64(z.Before)}, uint64(z.Aligned) + 8, lost, false, uint64(z.Aligned) + 8},
		{"OKOtherSegment", StreamEnd{Name: other, Length: uint64(z.Aligned)}, short, lost, false, short},
		{"OKNone", StreamEnd{}, short, replication.ErrStreamEnded, false, short},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spool := t.TempDir()
			if err := os.WriteFile(filepath.Join(spool, name), z.Data, 0o600); err != nil {
				t.Fatal(err)
			}
			r, err := New(Options{Slot: "s", SpoolDir: spool, Uploader: newSink(t)})
			if err != nil {
				t.Fatal(err)
			}
			r.held = tc.held
			cur := &segmentFile{dir: spool, seg: seg, segSize: 1 << 20, written: tc.synced, synced: tc.synced}
			r.storeStreamEnd(cur, tc.err, tc.stopping)
			want := StreamEnd{Name: name, Length: tc.want}
			if got := r.PendingStreamEnd(); got != want {
				t.Errorf("PendingStreamEnd %+v, want %+v", got, want)
			}
			// The next stream end of the segment knows what the file holds.
			if r.held != want {
				t.Errorf("held %+v, want %+v", r.held, want)
			}
		})
	}
}

// TestReceiver_queueSpool: the files a run left in the spool are queued
// at the start in segment order, the .partial files of ended timelines
// (below the newest timeline of a segment, .partial or .history in the
// spool) among them as final .partial uploads; one that holds no WAL is
// removed; the .partial of the newest timeline is not queued (the
// stream, or the leftover, stores it).
func TestReceiver_queueSpool(t *testing.T) {
	wal1 := bytes.Repeat([]byte{1}, 8192)
	for _, tc := range []struct {
		name  string
		files map[string][]byte
		want  []uploadTask
		gone  []string // removed from the spool
	}{
		{"OKTimelines", map[string][]byte{
			"000000010000000000000004":         wal1,
			"000000010000000000000005.partial": wal1,
			"00000002.history":                 wal1,
			"000000020000000000000005":         wal1,
			"000000020000000000000006.partial": wal1,
		}, []uploadTask{
			{kind: taskFile, name: "000000010000000000000004"},
			{kind: taskPartial, name: "000000010000000000000005.partial"},
			{kind: taskFile, name: "00000002.history"},
			{kind: taskFile, name: "000000020000000000000005"},
		}, nil},
		{"OKHistoryOnly", map[string][]byte{
			"000000010000000000000005.partial": wal1,
			"00000002.history":                 wal1,
		}, []uploadTask{
			{kind: taskPartial, name: "000000010000000000000005.partial"},
			{kind: taskFile, name: "00000002.history"},
		}, nil},
		{"OKEmptyRemoved", map[string][]byte{
			"000000010000000000000005.partial": make([]byte, 8192),
			"000000020000000000000005.partial": wal1,
		}, nil, []string{"000000010000000000000005.partial"}},
		{"OKOneTimeline", map[string][]byte{
			"000000010000000000000004":         wal1,
			"000000010000000000000004.partial": wal1,
			"000000010000000000000005.partial": wal1,
		}, []uploadTask{{kind: taskFile, name: "000000010000000000000004"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spool := t.TempDir()
			for name, b := range tc.files {
				if err := os.WriteFile(filepath.Join(spool, name), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			r, c := spoolReceiver(t, spool)
			r.queueSpool(c)
			if got := r.queue.tasks; !slices.Equal(got, tc.want) {
				t.Errorf("queued %+v, want %+v", got, tc.want)
			}
			for _, name := range tc.gone {
				if _, err := os.Stat(filepath.Join(spool, name)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s still in the spool: %v", name, err)
				}
			}
		})
	}
}

// TestReceiver_queueSpool_QueuedSince: a file an earlier run left in the
// spool has waited for upload since it was written (its modification
// time), not since this run started: Status.QueuedSince, which
// hoard_wal_lag_seconds reports, is the oldest such time. A time in the
// future (a clock set back since) counts as now.
func TestReceiver_queueSpool_QueuedSince(t *testing.T) {
	wal1 := bytes.Repeat([]byte{1}, 8192)
	now := time.Now()
	hourAgo, halfHourAgo := now.Add(-time.Hour), now.Add(-30*time.Minute)
	spool := t.TempDir()
	for _, f := range []struct {
		name  string
		mtime time.Time
	}{
		{"000000010000000000000005.partial", halfHourAgo}, // an ended timeline's
		{"00000002.history", now.Add(time.Hour)},
		{"000000020000000000000005", hourAgo},
		{"000000020000000000000006.partial", now},
	} {
		p := filepath.Join(spool, f.name)
		if err := os.WriteFile(p, wal1, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, f.mtime, f.mtime); err != nil {
			t.Fatal(err)
		}
	}
	r, c := spoolReceiver(t, spool)
	r.queueSpool(c)
	after := time.Now()
	// Within a second: a file system may keep coarser times.
	near := func(at, want time.Time) bool { return at.Sub(want).Abs() < time.Second }
	if got := r.Status().QueuedSince; !near(got, hourAgo) {
		t.Errorf("QueuedSince %s, want the oldest file's modification time %s", got, hourAgo)
	}
	want := map[string]func(time.Time) bool{
		"000000010000000000000005.partial": func(at time.Time) bool { return near(at, halfHourAgo) },
		"00000002.history":                 func(at time.Time) bool { return !at.Before(now) && !at.After(after) },
		"000000020000000000000005":         func(at time.Time) bool { return near(at, hourAgo) },
	}
	if len(r.queue.tasks) != len(want) {
		t.Fatalf("queued %+v, want %d files", r.queue.tasks, len(want))
	}
	for i, task := range r.queue.tasks {
		if ok := want[task.name]; ok == nil || !ok(r.queue.queued[i]) {
			t.Errorf("%s queued at %s (now %s)", task.name, r.queue.queued[i], now)
		}
	}
}

// spoolReceiver returns a receiver of slot "s" over the spool directory
// spool, uploading to a sink, and what readSpool reads there: what a
// receiver that starts finds left by an earlier run.
func spoolReceiver(t *testing.T, spool string) (*Receiver, spoolContents) {
	t.Helper()
	r, err := New(Options{Slot: "s", SpoolDir: spool, Uploader: newSink(t)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := readSpool(spool)
	if err != nil {
		t.Fatal(err)
	}
	return r, c
}
