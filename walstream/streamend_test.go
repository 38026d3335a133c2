package walstream

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/wal"
)

// TestReceiver_StoreAtStreamEnd streams Debian's PostgreSQL 15 (1 MiB
// segments) into a real archive with PartialUploadInterval 0 and stops
// the server cleanly: its walsender sends the WAL through the shutdown
// checkpoint, and ends the stream. The Receiver stores the fsynced part
// of the segment in progress as <segment>.partial at once: pg_waldump
// finds, in the stored object decoded, the shutdown checkpoint
// pg_controldata names. Then the same server starts again: streaming
// resumes in that segment, more rows, a segment switch: the complete
// segment is stored and its .partial object is gone.
func TestReceiver_StoreAtStreamEnd(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Debian: true, WALSegmentSizeMB: 1})
	d := durableOf(t, c, "")
	rr := d.start(Options{})
	c.Exec(t, "create table t (id int)")
	c.Exec(t, "insert into t values (1)")
	c.Stop(t)
	checkpoint := pgtest.ControlField(t, c.DataDir, "Latest checkpoint location")
	lsn, err := pglogrepl.ParseLSN(checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	seg := wal.SegmentOf(1, lsn, d.segSize).Name(d.segSize)
	waitFor(t, seg+".partial stored after the server's shutdown", func() bool { return d.stored(seg + wal.PartialSuffix) })
	rc, _, err := d.arch.Codec.Open(context.Background(), d.arch.Store, d.arch.Layout.WALKey(seg+wal.PartialSuffix))
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatalf("decode %s.partial: %v", seg, err)
	}
	if ok, out := pgtest.WaldumpShutdownCheckpoint(t, seg, data, int(d.segSize), checkpoint); !ok {
		t.Errorf("pg_waldump of the stored %s.partial (%d bytes) has no shutdown checkpoint at %s (pg_controldata's):\n%s", seg, len(data), checkpoint, out)
	}
	// Status.Stored follows once the Uploader returned.
	waitFor(t, "Status.Stored past the shutdown checkpoint at "+checkpoint, func() bool { return rr.r.Status().Stored > lsn })

	// The same server again: the segment is streamed again and completed,
	// which supersedes the .partial.
	c.Start(t)
	waitFor(t, "streaming again", func() bool { return rr.r.Status().Connected })
	c.Exec(t, "insert into t select generate_series(2, 1000)")
	if done := switchWAL(t, c); done != seg {
		t.Fatalf("the restarted server completed %s, want %s, where it stopped", done, seg)
	}
	// The Uploader stores the segment, then deletes its .partial: wait
	// until the Receiver says the upload returned (Status.Uploaded), not
	// only until the segment is stored, or the check races the delete.
	end := lsn + pglogrepl.LSN(d.segSize) - lsn%pglogrepl.LSN(d.segSize)
	waitFor(t, seg+" uploaded", func() bool { return rr.r.Status().Uploaded >= end })
	if !d.stored(seg) {
		t.Errorf("%s not stored, though the Receiver says it is uploaded", seg)
	}
	if d.stored(seg + wal.PartialSuffix) {
		t.Errorf("%s.partial still stored after the complete segment", seg)
	}
	rr.stop(t)
}

// TestReceiver_StoreAtStreamEndRetry: the storage fails as the server
// shuts down, so the stream end's copy of the segment in progress fails;
// it is tried again with backoff while the server stays down, and stored
// once the storage is back.
func TestReceiver_StoreAtStreamEndRetry(t *testing.T) {
	s, rr := stopWithStorageDown(t)
	st := rr.r.Status()
	waitFor(t, "two failed copies", func() bool { return s.failures.Load() >= 2 })
	s.failing.Store(false)
	waitUploaded(t, s, st.Segment+wal.PartialSuffix)
	checkStoredPartial(t, s, st.Segment, st.Flushed)
	rr.stop(t)
}

// stopWithStorageDown streams a server (1 MiB segments) into a sink,
// writes rows, makes the sink fail, and stops the server cleanly: its
// stream has ended when it returns.
func stopWithStorageDown(t *testing.T) (*sink, *running) {
	t.Helper()
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[0], WALSegmentSizeMB: 1})
	s := newSink(t)
	rr := start(t, c, t.TempDir(), s, Options{})
	c.Exec(t, "create table t as select generate_series(1, 1000) as i")
	s.failing.Store(true)
	c.Stop(t)
	waitFor(t, "the stream of the stopped server ended", func() bool { return !rr.r.Status().Connected })
	return s, rr
}

// checkStoredPartial checks that s holds seg's .partial with at least
// the WAL fsynced up to flushed (1 MiB segments).
func checkStoredPartial(t *testing.T, s *sink, seg string, flushed pglogrepl.LSN) {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(s.dir, seg+wal.PartialSuffix))
	if err != nil {
		t.Fatalf("%s.partial not stored: %v", seg, err)
	}
	if n := int(uint64(flushed) % (1 << 20)); len(got) < n {
		t.Errorf("stored %s.partial holds %d bytes, want the %d fsynced (up to %s)", seg, len(got), n, flushed)
	}
}

// TestReceiver_StoreAtStop: the Receiver's own stop (the daemon's
// SIGTERM, or a site restarted by a reload that may change its prefix)
// stores the fsynced part of the segment in progress as
// <segment>.partial before Run returns, so the WAL received under the
// Uploader of this Run is stored there, not by the next Run, which may
// store into another prefix. The spool's marker then says the .partial
// it leaves is stored (SpoolUnstored does not count it); so it does
// when a snapshot (PartialUploadInterval) stored all of it before the
// stop, and the stop had no copy of its own to store.
func TestReceiver_StoreAtStop(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"OK", Options{}},
		{"OKStoredBySnapshot", Options{PartialUploadInterval: 100 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[0], WALSegmentSizeMB: 1})
			s := newSink(t)
			spool := t.TempDir()
			rr := start(t, c, spool, s, tc.opts)
			c.Exec(t, "create table t as select generate_series(1, 1000) as i")
			lsn, err := pglogrepl.ParseLSN(c.QueryString(t, "select pg_current_wal_flush_lsn()::text"))
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the insert's WAL fsynced in the spool", func() bool { return rr.r.Status().Flushed >= lsn })
			seg := rr.r.Status().Segment
			if tc.opts.PartialUploadInterval != 0 {
				waitFor(t, "a snapshot holding the insert's WAL stored", func() bool {
					got, err := os.ReadFile(filepath.Join(s.dir, seg+wal.PartialSuffix))
					return err == nil && len(got) >= int(uint64(lsn)%(1<<20))
				})
			}
			rr.stop(t)
			// When Run returned, the segment in progress is stored.
			checkStoredPartial(t, s, seg, lsn)
			var warned error
			files, leftover, err := SpoolUnstored(spool, func(err error) { warned = err })
			if err != nil || len(files) != 0 || leftover != "" || warned != nil {
				t.Errorf("SpoolUnstored after the stop: %v %q %v (warned %v); want nothing: the marker shows %s.partial stored", files, leftover, err, warned, seg)
			}
		})
	}
}

// TestReceiver_StoreAtStopRetry: the storage fails as the server shuts
// down, and the Receiver is stopped (a reload that changes the prefix,
// right after the old server stopped) before the stream end's copy is
// stored. Run does not return before the copy is stored: it retries it
// with backoff, within DrainTimeout, and the storage comes back meanwhile.
func TestReceiver_StoreAtStopRetry(t *testing.T) {
	s, rr := stopWithStorageDown(t)
	waitFor(t, "a failed copy", func() bool { return s.failures.Load() >= 1 })
	st := rr.r.Status()
	rr.cancel()
	failed := s.failures.Load()
	waitFor(t, "another failed copy after the stop, or Run's return", func() bool {
		return s.failures.Load() > failed || len(rr.done) > 0
	})
	if len(rr.done) > 0 {
		t.Fatalf("Run returned at the stop with the stream end's copy of %s not stored", st.Segment)
	}
	s.failing.Store(false)
	rr.stop(t)
	// When Run returned, the stream end's copy is stored.
	checkStoredPartial(t, s, st.Segment, st.Flushed)
}

// TestReceiver_adoptStreamEnd: a Receiver adopts the copy the previous
// one left (Options.StreamEnd) as its stream end's copy, queued, only
// while the spool still holds that .partial with at least those bytes.
func TestReceiver_adoptStreamEnd(t *testing.T) {
	const name = "000000010000000000000006" + wal.PartialSuffix
	for _, tc := range []struct {
		name string
		end  StreamEnd
		file int // the spool file's size; -1 for none
		want bool
	}{
		{"OK", StreamEnd{Name: name, Length: 8192}, 1 << 20, true},
		{"OKWhole", StreamEnd{Name: name, Length: 1 << 20}, 1 << 20, true},
		{"ErrNone", StreamEnd{}, 1 << 20, false},
		{"ErrEmpty", StreamEnd{Name: name}, 1 << 20, false},
		{"ErrGone", StreamEnd{Name: name, Length: 8192}, -1, false},
		{"ErrShorter", StreamEnd{Name: name, Length: 8192}, 4096, false},
		{"ErrNotPartial", StreamEnd{Name: "000000010000000000000006", Length: 8192}, 1 << 20, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spool := t.TempDir()
			if tc.file >= 0 && tc.end.Name != "" {
				if err := os.WriteFile(filepath.Join(spool, tc.end.Name), make([]byte, tc.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			r, err := New(Options{Slot: "s", SpoolDir: spool, Uploader: newSink(t), StreamEnd: tc.end})
			if err != nil {
				t.Fatal(err)
			}
			r.adoptStreamEnd()
			want := StreamEnd{}
			if tc.want {
				want = tc.end
			}
			if got := r.PendingStreamEnd(); got != want {
				t.Errorf("PendingStreamEnd %+v after adopting %+v, want %+v", got, tc.end, want)
			}
			if queued := r.queue.hasSnapshot(); queued != tc.want {
				t.Errorf("copy queued %v, want %v", queued, tc.want)
			}
		})
	}
}

// TestReceiver_StoreAtStopSegmentBoundary: the Receiver is stopped
// right after a segment switch, with the stream at the start of the next
// segment (an idle server after archive_timeout, or a daemon stopped
// after pg_switch_wal), so there is no segment in progress to store, and
// the complete segment's upload is failing. Run does not return before
// that segment is stored: it retries it within DrainTimeout, as it
// retries a stream end's copy, and the storage comes back meanwhile.
func TestReceiver_StoreAtStopSegmentBoundary(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[0], WALSegmentSizeMB: 1})
	s := newSink(t)
	rr := start(t, c, t.TempDir(), s, Options{})
	s.failing.Store(true)
	seg := switchWAL(t, c)
	waitFor(t, "a failed upload of "+seg, func() bool { return s.failures.Load() >= 1 })
	rr.cancel()
	failed := s.failures.Load()
	waitFor(t, "another failed upload after the stop, or Run's return", func() bool {
		return s.failures.Load() > failed || len(rr.done) > 0
	})
	if len(rr.done) > 0 {
		t.Fatalf("Run returned at the stop with the complete segment %s not stored", seg)
	}
	s.failing.Store(false)
	rr.stop(t)
	// When Run returned, the complete segment is stored.
	if _, err := os.Stat(filepath.Join(s.dir, seg)); err != nil {
		t.Errorf("%s not stored when Run returned: %v", seg, err)
	}
}
