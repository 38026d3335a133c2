package e2e

import (
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestPgUpgrade_StreamedPartialBelowOldTimeline: a site holding two
// systems, before and after a real pg_upgrade into it (Debian's
// PostgreSQL 15; upgradeInSameSite, without keys: the old cluster's
// 00000002.history claims its system), whose upgraded cluster, on
// timeline 1 below the old cluster's timeline 2, is streamed by hoard
// daemon storing the segment in progress every second
// (wal_partial_upload_interval). A row committed after the upgraded
// cluster's backup is only in that segment's .partial. hoard verify
// counts the .partial as the end of the backup's WAL (its reach, status
// ok) and as the site's WAL end; hoard list names it; and hoard restore
// (latest) restores the upgraded cluster's backup, whose recovery gets
// the .partial from wal-fetch and replays the row: the restored cluster
// has every row and the upgraded system (pg_control, the independent
// oracle). Before, verify's reach of that backup (a primary's, ending
// before the segment the .partial follows) stopped at the segment before
// the .partial in this site without keys (TestRun_UpgradedTailAfterEnd).
// The daemon's hole check at resume reports no hole: the old cluster's
// WAL on timeline 1 below the upgraded cluster's first segment is another
// system's (TestFindHole_OtherSystem).
// The unit tests of 1ec7126 and 82cba21 (TestFetchWAL_UpgradedTail,
// TestRecoveryTail_AfterUpgrade, TestRun_UpgradedTail) show the rest on
// WAL made by the tests, not by PostgreSQL and the daemon.
func TestPgUpgrade_StreamedPartialBelowOldTimeline(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: -short")
	}
	s := newLocalStreamSite(t)
	s.setSiteKey("wal_partial_upload_interval", 1)
	u := upgradeInSameSite(t, s.site)
	nc, sysNew := u.nc, u.sysNew

	d := s.startDaemon()
	d.waitFor("the daemon streaming the upgraded cluster", 2*time.Minute, func() bool {
		st, ok := d.status()
		w := st.Sites[s.name].WAL
		return ok && w != nil && w.Connected
	})
	// The daemon backs up the upgraded cluster at once: the site holds
	// no backup of its system.
	var backup string
	d.waitFor("the daemon's backup of the upgraded cluster", 3*time.Minute, func() bool {
		st, ok := d.status()
		if !ok || st.Sites[s.name].BackupRunning {
			return false
		}
		for _, b := range s.listBackups() {
			if b.SystemID == strconv.FormatUint(sysNew, 10) {
				backup = b.Name
			}
		}
		return backup != ""
	})

	before := lsnOf(t, nc.QueryString(t, "select pg_current_wal_lsn()::text"))
	nc.Exec(t, "insert into t values (12)")
	lsn := nc.QueryString(t, "select pg_current_wal_lsn()::text")
	seg := nc.QueryString(t, "select pg_walfile_name($1::pg_lsn)", lsn)
	// The .partial's data ends where the commit record does, before the
	// padding that aligns the next record (where pg_current_wal_lsn and
	// the daemon's stored position are).
	d.waitFor("row 12 in "+seg+".partial", 2*time.Minute, func() bool {
		st, ok := d.status()
		w := st.Sites[s.name].WAL
		return ok && w != nil && w.Stored != "" && lsnOf(t, w.Stored) >= lsnOf(t, lsn) && s.partialEnd(seg, 16<<20) > before
	})
	want := tableRows(t, nc)
	if code := d.stop(syscall.SIGTERM, 90*time.Second); code != 0 {
		t.Fatalf("hoard daemon exited %d after SIGTERM, want 0\n%s", code, tailLines(d.out.String(), 30))
	}
	// The old cluster left timeline 1 in a segment below the upgraded
	// cluster's first: its segments are another system's, not a hole
	// before where streaming resumed (the hole check reads first pages).
	if strings.Contains(d.out.String(), "wal hole") {
		t.Errorf("the daemon reported a wal hole across the pg_upgrade:\n%s", tailLines(d.out.String(), 30))
	}
	if s.stored(seg) || !s.storedHistory("00000002.history") {
		t.Fatalf("the test needs %s stored as a .partial only, below the old cluster's 00000002.history", seg)
	}
	partial := seg + ".partial"

	rep, out, err := s.verifyReachExit()
	if err != nil {
		t.Errorf("hoard verify: %v, want exit 0", err)
	}
	found := false
	for _, b := range rep.Backups {
		if b.Name != backup {
			continue
		}
		found = true
		if b.Status != "ok" || b.Reach != partial || lsnOf(t, b.ReachLSN) <= before {
			t.Errorf("verify: backup %s %s, reaches %s at %s; want ok, through %s past %s\n%s", b.Name, b.Status, b.Reach, b.ReachLSN, partial, before, out)
		}
	}
	if !found {
		t.Errorf("verify does not report backup %s:\n%s", backup, out)
	}
	if e := rep.WALEnd; e == nil || !e.Partial || e.File != partial || lsnOf(t, e.LSN) <= before {
		t.Errorf("verify: WAL end %+v, want %s past %s", e, partial, before)
	}
	if list := s.mustHoard("list"); !strings.Contains(list, "Stored WAL ends at LSN") || !strings.Contains(list, partial) {
		t.Errorf("hoard list does not name the upgraded cluster's %s as the WAL end:\n%s", partial, list)
	}

	dir := filepath.Join(pgtest.TempDir(t), "data")
	_, errOut, err := s.hoard("restore", "--target-dir", dir)
	if err != nil || !strings.Contains(errOut, "backup="+backup) {
		t.Fatalf("restore (latest): %v; want the upgraded cluster's backup %s\n%s", err, backup, errOut)
	}
	wantRestored(t, dir, "restore of the upgraded cluster through its .partial", want, sysNew)
}
