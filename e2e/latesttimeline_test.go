package e2e

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestRestoreLatestTimelineAfterPITR: two backups on timeline 1, then a
// point-in-time restore to a moment between them, promoted, takes over
// the site on timeline 2. The newer backup lies on the abandoned timeline
// 1 (it ended after the fork): hoard restore with no backup named and no
// target must choose the older one, which timeline 2 descends from, and
// recover timeline 2's rows.
func TestRestoreLatestTimelineAfterPITR(t *testing.T) {
	s := newSite(t, siteOptions{})
	src, b1 := s.startBackedUp(t)
	src.Exec(t, "insert into t values (2)")
	target := clusterTime(t, src)
	src.Exec(t, "insert into t values (3)")
	s.mustHoard("basebackup", "--fast")
	if n := len(s.listBackups()); n != 2 {
		t.Fatalf("%d backups, want 2", n)
	}
	switchAndWaitArchived(t, src)
	src.Stop(t)

	// The point-in-time restore: recovery stops at the target, promotes
	// to timeline 2 and archives into the same site.
	pitrDir := filepath.Join(pgtest.TempDir(t), "pitr")
	s.restoreChoosing(t, pitrDir, b1, "--target-time", target)
	pitr := pgtest.StartDataDir(t, 15, pitrDir, s.clusterConf())
	pitr.WaitRecoveryDone(t, 2*time.Minute)
	if tli := pitr.QueryString(t, "select timeline_id::text from pg_control_checkpoint()"); tli != "2" {
		t.Fatalf("restored cluster on timeline %s, want 2", tli)
	}
	pitr.Exec(t, "insert into t values (50)")
	want := tableRows(t, pitr)
	s.use(pitr)
	switchAndWaitArchived(t, pitr)

	// b1 is the newest backup timeline 2 descends from.
	dir := filepath.Join(pgtest.TempDir(t), "data")
	s.restoreChoosing(t, dir, b1)
	restored := pgtest.StartDataDir(t, 15, dir, noArchiving)
	restored.WaitRecoveryDone(t, 2*time.Minute)
	if got := tableRows(t, restored); got != want {
		t.Errorf("restored rows %q, want %q (the end of timeline 2)", got, want)
	}
}
