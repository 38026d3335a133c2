package walstream

import (
	"bytes"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// TestReceiver_Run_LeftoverOtherHistory: the server the daemon is
// pointed at never streams the spool's timeline: the spool is from a
// primary on timeline 2 (itself promoted), which was replaced by a copy
// of the cluster taken earlier, on timeline 1, and promoted on its own.
// That copy knew of timeline 2 (its history file, as a shared archive
// gives it) but did not follow it (recovery_target_timeline 'current'),
// so it took timeline 3, whose history holds timeline 1 alone: it forked
// before timeline 2 began. A Receiver (a child process) streams timeline
// 2, a commit and a record after it fsynced in the spool's .partial, and
// is killed with SIGKILL; the timeline 2 server is stopped for good. A
// new Run pointed at the timeline 3 server returns ErrOtherHistory,
// having stored the spool's .partial up to its last valid record
// (pg_waldump on 15 finds the commit in the stored copy), and every
// object stored before is still there with the same stored bytes. With
// the spool's files removed, as daemon.md tells the operator, the next
// Run streams timeline 3 from its slot: its history file and a segment
// are stored as the server has them, and again every object stored
// before, the .partial of timeline 2 included, keeps its stored bytes.
// That run starts on timeline 1 (its slot's segment holds the switch
// to timeline 3) and offers that timeline's last segment as a .partial,
// which the copy ended earlier than the timeline 2 server did: the
// archive's .partial of it, from the timeline 2 server, holds more of
// the same WAL and is not replaced (the test fails if the run offers
// none: nothing tested then).
func TestReceiver_Run_LeftoverOtherHistory(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, major int) {
		c := pgtest.Start(t, pgtest.Options{Major: major, WALSegmentSizeMB: 1})
		c.Exec(t, "create table rows (id bigint, pad text)")
		c.Exec(t, "insert into rows select g, repeat('x', 900) from generate_series(1, 100) g")
		// The copy: the cluster as a clean stop leaves it.
		c.Stop(t)
		fork := filepath.Join(pgtest.TempDir(t), "fork")
		if out, err := exec.Command("cp", "-a", c.DataDir, fork).CombinedOutput(); err != nil {
			t.Fatalf("copy the data directory: %v\n%s", err, out)
		}
		c.Start(t)
		c.NewTimeline(t)
		g := crashLeftoverOf(t, c, 2)
		c.Stop(t)

		history2, err := os.ReadFile(filepath.Join(c.DataDir, "pg_wal", "00000002.history"))
		if err != nil {
			t.Fatal(err)
		}
		for name, b := range map[string][]byte{"pg_wal/00000002.history": history2, "standby.signal": nil} {
			if err := os.WriteFile(filepath.Join(fork, name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		other := pgtest.StartDataDir(t, major, fork, map[string]string{"recovery_target_timeline": "current"})
		other.Promote(t)
		other.WaitRecoveryDone(t, testTimeout)
		history3, err := os.ReadFile(filepath.Join(fork, "pg_wal", "00000003.history"))
		if err != nil {
			t.Fatalf("the copy did not take timeline 3: %v", err)
		}
		h, err := wal.ParseHistory(3, history3)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, ok := h.Switch(2); ok {
			t.Fatalf("timeline 3's history %q has timeline 2: nothing to test", history3)
		}

		before := g.contents()
		g.runFails(other, ErrOtherHistory)
		g.checkKept(before)

		// The operator removes the spool's files; the next Run streams
		// timeline 3.
		before = g.contents()
		var ended []string // timeline 1's .partial, from the first server
		for name := range before {
			if wal.IsPartialName(name) && wal.SegmentTimeline(name) == 1 {
				ended = append(ended, name)
			}
		}
		calls := len(g.d.up.uploads())
		if err := os.RemoveAll(g.d.spool); err != nil {
			t.Fatal(err)
		}
		rr := startReceiver(t, other, g.d.spool, g.d.up, Options{}, nil, nil)
		other.Exec(t, "insert into rows select g, repeat('x', 900) from generate_series(1, 100) g")
		seg := switchWAL(t, other)
		if !strings.HasPrefix(seg, "00000003") {
			t.Fatalf("the server completed %s, not a segment of timeline 3", seg)
		}
		waitFor(t, seg+" and 00000003.history stored", func() bool {
			return g.d.stored(seg) && g.d.stored("00000003.history")
		})
		rr.stop(t)
		t.Logf("uploads of the run on timeline 3: %+v", g.d.up.uploads()[calls:])
		offered := false
		for _, u := range g.d.up.uploads()[calls:] {
			offered = offered || u.partial && slices.Contains(ended, u.name)
		}
		if !offered {
			t.Fatalf("the run on timeline 3 offered no .partial of timeline 1 that the archive held (%v): nothing to test", ended)
		}
		for name, want := range map[string][]byte{"00000003.history": history3, seg: nil} {
			if want == nil {
				if want, err = os.ReadFile(filepath.Join(fork, "pg_wal", name)); err != nil {
					t.Fatal(err)
				}
			}
			if got := g.fetch(name); !bytes.Equal(got, want) {
				t.Errorf("the stored %s (%d bytes) is not the server's (%d bytes)", name, len(got), len(want))
			}
		}
		g.checkKept(before)
	})
}

// contents returns the WAL, .partial and history objects of the archive,
// as stored (compressed), by name.
func (g *serverGone) contents() map[string][]byte {
	t := g.t
	t.Helper()
	objects := make(map[string][]byte)
	for _, dir := range []string{archive.XLogDir, archive.TimelineDir} {
		prefix := g.d.arch.Layout.Dir(dir)
		err := g.d.arch.Store.List(t.Context(), prefix, func(o storage.Object) error {
			name := strings.TrimPrefix(o.Key, prefix)
			if wal.IsSegmentName(name) || wal.IsPartialName(name) || wal.IsHistoryFile(name) {
				objects[name] = nil
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for name := range objects {
		key := g.d.arch.Layout.WALKey(name)
		rc, _, err := g.d.arch.Store.Open(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("read %s: %v", key, err)
		}
		objects[name] = b
	}
	return objects
}

// checkKept checks that every object of before, contents' result, is
// still stored with the same bytes.
func (g *serverGone) checkKept(before map[string][]byte) {
	t := g.t
	t.Helper()
	if len(before) == 0 {
		t.Fatal("nothing stored to keep")
	}
	after := g.contents()
	t.Logf("kept: %v", slices.Sorted(maps.Keys(before)))
	for name, b := range before {
		if got, ok := after[name]; !ok || !bytes.Equal(got, b) {
			t.Errorf("%s: stored %d bytes, now %d (present %v): lost or overwritten", name, len(b), len(got), ok)
		}
	}
}
