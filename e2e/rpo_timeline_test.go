package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestDaemonPartialOldTimeline: after the loss of a quiet primary
// (loseQuietPrimary) the archive ends in timeline 1's .partial, holding
// rows 1 and 2. A point-in-time restore between the rows ends recovery
// inside that .partial and promotes to timeline 2, which archives into the
// same site through wal-push and commits row 3. The .partial of timeline
// 1 is now obsolete: wal-fetch of its segment's name must answer "not in
// the archive" (before the promotion it delivered the .partial), and a
// restore following the latest timeline must recover timeline 2's rows
// (1 and 3), never row 2 from timeline 1's copy.
func TestDaemonPartialOldTimeline(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: -short")
	}
	l := loseQuietPrimary(t)
	s, major, seg := l.s, l.major, l.seg
	if l.want != "1,2" {
		t.Fatalf("the primary committed rows %s, want 1,2", l.want)
	}
	segSize := int64(1 << 20)

	// The end of the archive: wal-fetch delivers the .partial, padded.
	fetched := filepath.Join(pgtest.TempDir(t), "fetched")
	s.mustHoard("wal-fetch", seg, fetched)
	if fi, err := os.Stat(fetched); err != nil || fi.Size() != segSize {
		t.Fatalf("wal-fetch %s at the end of the archive: %v, want a %d-byte file from its .partial", seg, err, segSize)
	}

	// Timeline 2: a restore to between the rows, archiving into the site.
	dir := filepath.Join(pgtest.TempDir(t), "data")
	s.mustHoard("restore", "--target-dir", dir, "--target-time", l.between)
	tl2 := pgtest.StartDataDir(t, major, dir, s.clusterConf())
	tl2.WaitRecoveryDone(t, 3*time.Minute)
	if got := rowsOfRPO(t, tl2); got != "1" {
		t.Fatalf("restored to %s: rows %s, want 1", l.between, got)
	}
	tl2.Exec(t, "insert into rpo (id) values (3)")
	last := switchAndWaitArchived(t, tl2)
	if !strings.HasPrefix(last, "00000002") || last[8:] < seg[8:] {
		t.Fatalf("timeline 2 archived %s, want a timeline 2 segment from %s on", last, seg[8:])
	}
	if !s.storedHistory("00000002.history") {
		t.Fatal("00000002.history not stored")
	}
	want := rowsOfRPO(t, tl2)
	tl2.Stop(t)
	if want != "1,3" {
		t.Fatalf("timeline 2 has rows %s, want 1,3", want)
	}
	if _, err := s.store.Stat(t.Context(), s.name+"/xlog/"+seg+".partial"); err != nil {
		t.Fatalf("timeline 1's %s.partial: %v (the test needs it kept)", seg, err)
	}

	// Timeline 1's .partial no longer stands in for its segment.
	gone := filepath.Join(pgtest.TempDir(t), "gone")
	_, errOut, err := s.hoard("wal-fetch", seg, gone)
	if code := exitCode(err); code != 1 {
		t.Errorf("wal-fetch %s after timeline 2: exit %d, want 1 (not in the archive)\n%s", seg, code, errOut)
	}
	if _, err := os.Stat(gone); !os.IsNotExist(err) {
		t.Errorf("wal-fetch %s after timeline 2 wrote %s (%v)", seg, gone, err)
	}
	rep := s.verifyReach()
	if rep.WALEnd == nil || rep.WALEnd.Partial || !strings.HasPrefix(rep.WALEnd.File, "00000002") {
		t.Errorf("verify --json wal_end %+v, want timeline 2's %s", rep.WALEnd, last)
	}

	// A restore following the latest timeline: timeline 2's rows.
	dir = filepath.Join(pgtest.TempDir(t), "data")
	out := s.mustHoard("restore", "--target-dir", dir)
	if strings.Contains(out, seg+".partial") {
		t.Errorf("restore names timeline 1's %s.partial:\n%s", seg, out)
	}
	c := pgtest.StartDataDir(t, major, dir, noArchiving)
	c.WaitRecoveryDone(t, 3*time.Minute)
	if got := rowsOfRPO(t, c); got != want {
		t.Errorf("restored cluster has rows %s, timeline 2 committed %s", got, want)
	}
	if got := c.QueryString(t, "select pg_walfile_name(pg_current_wal_lsn())"); !strings.HasPrefix(got, "00000003") {
		t.Errorf("restored cluster writes %s, want timeline 3 (after timeline 2)", got)
	}
}
