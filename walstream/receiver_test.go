package walstream

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/wal"
)

func TestNew_ErrOptions(t *testing.T) {
	s := &sink{}
	for _, o := range []Options{
		{SpoolDir: "x", Uploader: s},
		{Slot: "s", Uploader: s},
		{Slot: "s", SpoolDir: "x"},
		{Slot: "s", SpoolDir: "x", Uploader: s, StatusInterval: -1},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}

// TestReceiver_Run streams pgbench's WAL from every major and checks each
// segment against the server's own file, and (on 15) with pg_waldump.
// Meanwhile it checks that the server never hears of a flush position
// beyond what the Receiver fsynced.
func TestReceiver_Run(t *testing.T) {
	for _, major := range pgtest.Versions() {
		t.Run(strconv.Itoa(major), func(t *testing.T) {
			t.Parallel()
			c := pgtest.Start(t, pgtest.Options{Major: major})
			segSize := segSizeOf(t, c)
			s := newSink(t)
			rr := start(t, c, t.TempDir(), s, Options{})
			first := rr.r.Status().Segment

			// Sample the server's view of our flush position while WAL
			// flows: it must never pass what the Receiver fsynced.
			conn := c.Connect(t, "postgres")
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var samples int
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
					var flush, restart string
					err := conn.QueryRow(context.Background(),
						`select coalesce((select flush_lsn::text from pg_stat_replication where flush_lsn is not null limit 1), '0/0'),
						        coalesce((select restart_lsn::text from pg_replication_slots where slot_name = 'hoard'), '0/0')`).Scan(&flush, &restart)
					if err != nil {
						t.Errorf("sample: %v", err)
						return
					}
					flushed := rr.r.Status().Flushed // read after the server's answer
					for _, v := range []string{flush, restart} {
						l, _ := pglogrepl.ParseLSN(v)
						if l > flushed {
							t.Errorf("server has %s as flushed, the Receiver fsynced up to %s", l, flushed)
						}
					}
					samples++
				}
			}()

			pgtest.Pgbench(t, c, "-i", "-s", "1")
			var last string
			for range 3 {
				last = switchWAL(t, c)
			}
			names := waltest.Names(t, first, last, segSize)
			waitUploaded(t, s, names...)
			close(stop)
			wg.Wait()
			if samples == 0 {
				t.Error("no flush position sampled")
			}
			if n := compareWithServer(t, c, s, names); n == 0 {
				t.Error("the server kept none of the streamed segments to compare with")
			}
			checkOrder(t, s.uploads())
			if len(names) < 3 {
				t.Errorf("only %d segments streamed", len(names))
			}
			if major == pgtest.DebianMajor {
				waldump(t, s.dir, names[0], names[len(names)-1])
			}
			rr.stop(t)
		})
	}
}

// waldump runs pg_waldump over the segments from first to last in dir.
func waldump(t *testing.T, dir, first, last string) {
	t.Helper()
	bin := pgtest.Tool(t, "pg_waldump")
	cmd := exec.Command(bin, "-p", dir, "--stats", first, last)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("pg_waldump %s %s: %v\n%s", first, last, err, out)
	}
}

// TestReceiver_Run_SmallSegments streams a cluster with 1 MiB segments.
func TestReceiver_Run_SmallSegments(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[0], WALSegmentSizeMB: 1})
	segSize := segSizeOf(t, c)
	if segSize != 1<<20 {
		t.Fatalf("segment size %d", segSize)
	}
	s := newSink(t)
	rr := start(t, c, t.TempDir(), s, Options{})
	first := rr.r.Status().Segment
	c.Exec(t, "create table big as select g, repeat('x', 200) as pad from generate_series(1, 20000) g")
	last := switchWAL(t, c)
	names := waltest.Names(t, first, last, segSize)
	if len(names) < 4 {
		t.Errorf("only %d segments for ~4 MiB of WAL", len(names))
	}
	waitUploaded(t, s, names...)
	checkStreamed(t, c, s, names)
	rr.stop(t)
}

// TestReceiver_Run_Resume stops a Receiver mid-segment, generates more
// WAL and starts a new one on the same spool: no gap, no segment uploaded
// twice. LostTail truncates the .partial first, as a crash losing its
// unflushed tail would: the segment is fetched again from the slot.
func TestReceiver_Run_Resume(t *testing.T) {
	for _, lostTail := range []bool{false, true} {
		name := "Graceful"
		if lostTail {
			name = "LostTail"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1})
			segSize := segSizeOf(t, c)
			spool := t.TempDir()
			s := newSink(t)
			rr := start(t, c, spool, s, Options{})
			first := rr.r.Status().Segment
			switchWAL(t, c)
			switchWAL(t, c)
			c.Exec(t, "insert into filler select generate_series(1, 500)")
			target := lsn(t, c, "select pg_current_wal_flush_lsn()")
			waitFor(t, "WAL received", func() bool { return rr.r.Status().Received >= target })
			rr.stop(t)
			final := rr.r.Status()

			// The final status reached the server: the slot is at the
			// flush position, and the spool holds the WAL up to it.
			// The walsender reads it asynchronously.
			waitFor(t, "slot at the final flush position", func() bool {
				restart := lsn(t, c, "select restart_lsn from pg_replication_slots where slot_name = 'hoard'")
				if restart > final.Flushed {
					t.Fatalf("slot restart_lsn %s after shutdown, Receiver flushed %s", restart, final.Flushed)
				}
				return restart == final.Flushed
			})
			partial := filepath.Join(spool, final.Segment+".partial")
			seg, err := wal.ParseSegmentName(final.Segment, segSize)
			if err != nil {
				t.Fatal(err)
			}
			n := int64(final.Flushed - seg.StartLSN(segSize))
			if n <= 0 {
				t.Fatalf("nothing flushed in %s", final.Segment)
			}
			got := readPrefix(t, partial, n)
			want := readPrefix(t, filepath.Join(c.DataDir, "pg_wal", final.Segment), n)
			if string(got) != string(want) {
				t.Errorf("flushed part of %s differs from the server's", partial)
			}
			if lostTail {
				if err := os.Truncate(partial, 100); err != nil {
					t.Fatal(err)
				}
			}

			c.Exec(t, "insert into filler select generate_series(1, 5000)")
			switchWAL(t, c)
			last := switchWAL(t, c)

			rr2 := start(t, c, spool, s, Options{})
			names := waltest.Names(t, first, last, segSize)
			waitUploaded(t, s, names...)
			rr2.stop(t)
			checkStreamed(t, c, s, names)
		})
	}
}

// TestReceiver_Run_UploadFailures makes the sink fail for a while: the
// receive loop goes on, and once uploads work again every segment arrives,
// in order.
func TestReceiver_Run_UploadFailures(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[0], WALSegmentSizeMB: 1})
	segSize := segSizeOf(t, c)
	s := newSink(t)
	s.failing.Store(true)
	rr := start(t, c, t.TempDir(), s, Options{})
	first := rr.r.Status().Segment
	var last string
	for range 3 {
		last = switchWAL(t, c)
	}
	target := lsn(t, c, "select pg_current_wal_flush_lsn()")
	waitFor(t, "WAL received while uploads fail", func() bool {
		st := rr.r.Status()
		return st.Received >= target && st.QueueDepth >= 3 && st.LastError != ""
	})
	if len(s.uploads()) != 0 {
		t.Fatal("uploads succeeded while failing")
	}
	waitFor(t, "retries", func() bool { return s.failures.Load() >= 3 })
	s.failing.Store(false)
	names := waltest.Names(t, first, last, segSize)
	waitUploaded(t, s, names...)
	checkOrder(t, s.uploads())
	compareWithServer(t, c, s, names)
	waitFor(t, "empty queue", func() bool { return rr.r.Status().QueueDepth == 0 })
	// Uploads work again: their error no longer holds.
	if st := rr.r.Status(); st.LastError != "" {
		t.Errorf("uploads work again, last error %q, want none", st.LastError)
	}
	if st := rr.r.Status(); st.Uploaded != pglogrepl.LSN(0) && st.Uploaded < target-target%pglogrepl.LSN(segSize) {
		t.Errorf("Uploaded %s, want at least the start of the segment of %s", st.Uploaded, target)
	}
	rr.stop(t)
}

// TestReceiver_Run_PartialUpload uploads the growing segment. The
// Receiver is slowed (each fsync of a segment waits lagDelay), so that it
// lags the server as under heavy load: when the statement returns, the
// Receiver may not have its WAL yet, and on PostgreSQL 14-16 that WAL
// completes the segment the Receiver is then on, whose .partial is never
// uploaded (the complete segment is). The segment whose .partial is
// awaited is the one being received once the statement's WAL is in.
func TestReceiver_Run_PartialUpload(t *testing.T) {
	const lagDelay = 300 * time.Millisecond
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[0], WALSegmentSizeMB: 1})
	s := newSink(t)
	slow := func(r *Receiver) {
		r.faults.sync = func(string) error { time.Sleep(lagDelay); return nil }
	}
	rr := startReceiver(t, c, t.TempDir(), s, Options{PartialUploadInterval: 100 * time.Millisecond}, nil, slow)
	c.Exec(t, "create table t as select generate_series(1, 1000) as i")
	target := lsn(t, c, "select pg_current_wal_flush_lsn()")
	waitFor(t, "WAL received", func() bool { return rr.r.Status().Received >= target })
	seg := rr.r.Status().Segment
	name := seg + ".partial"
	waitUploaded(t, s, name)
	got, err := os.ReadFile(filepath.Join(s.dir, name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wal.CheckSegment(name, got[:40], int64(len(got))); err != nil {
		t.Errorf("uploaded partial: %v", err)
	}
	end := len(strings.TrimRight(string(got), "\x00"))
	want := readPrefix(t, filepath.Join(c.DataDir, "pg_wal", seg), int64(end))
	if string(got[:end]) != string(want) {
		t.Errorf("uploaded partial differs from the server's segment")
	}
	rr.stop(t)
	for _, u := range s.uploads() {
		if u.name == name && !u.partial {
			t.Errorf("%s offered through Upload", name)
		}
	}
}

// TestReceiver_Run_ServerRestart restarts PostgreSQL under a streaming
// Receiver: the server ending the stream is a normal end, logged at Info
// (no error, no protocol violation), and the Receiver reconnects and
// streams on with no gap.
func TestReceiver_Run_ServerRestart(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1], WALSegmentSizeMB: 1})
	segSize := segSizeOf(t, c)
	s := newSink(t)
	var logs testio.SyncBuffer
	rr := startLogged(t, c, t.TempDir(), s, Options{}, &logs)
	first := rr.r.Status().Segment
	switchWAL(t, c)
	c.Exec(t, "insert into filler select generate_series(1, 500)")
	target := lsn(t, c, "select pg_current_wal_flush_lsn()")
	waitFor(t, "WAL received", func() bool { return rr.r.Status().Received >= target })

	c.Restart(t)
	waitFor(t, "streaming again", func() bool { return rr.r.Status().Connected })
	switchWAL(t, c)
	last := switchWAL(t, c)
	names := waltest.Names(t, first, last, segSize)
	waitUploaded(t, s, names...)
	rr.stop(t)
	checkStreamed(t, c, s, names)

	out := logs.String()
	if !strings.Contains(out, `"message":"server ended replication"`) {
		t.Errorf("no %q in the log", "server ended replication")
	}
	for _, bad := range []string{`"level":"error"`, "protocol violation"} {
		if strings.Contains(out, bad) {
			t.Errorf("the log has %s:\n%s", bad, out)
		}
	}
}
