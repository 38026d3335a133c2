package e2e

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestRestoreTargetTimeline: one site holds timeline 1 (the source, which
// goes on writing) and timeline 2 (a copy restored from the first backup
// and promoted), each with a backup. A time target on timeline 1, after
// both backups ended, must choose timeline 1's backup (the newer backup is
// on timeline 2, which timeline 1 does not descend from) and recover the
// source's rows at that time.
func TestRestoreTargetTimeline(t *testing.T) {
	s := newSite(t, siteOptions{})
	src, b1 := s.startBackedUp(t)
	src.Exec(t, "insert into t values (2)")
	switchAndWaitArchived(t, src)

	// Timeline 2: a copy of the first backup, promoted at the end of the
	// archive, archiving into the same site, with a backup of its own.
	forkDir := filepath.Join(pgtest.TempDir(t), "fork")
	s.mustHoard("restore", "--target-dir", forkDir)
	fork := pgtest.StartDataDir(t, 15, forkDir, s.clusterConf())
	fork.WaitRecoveryDone(t, 2*time.Minute)
	fork.Exec(t, "insert into t values (50)")
	s.use(fork)
	s.mustHoard("basebackup", "--fast")
	fork.Exec(t, "insert into t values (51)")
	switchAndWaitArchived(t, fork)
	s.use(src)
	bs := s.listBackups()
	if len(bs) != 2 {
		t.Fatalf("%d backups, want 2", len(bs))
	}

	// Timeline 1 goes on: the target lies between two of its commits.
	src.Exec(t, "insert into t values (3)")
	target := clusterTime(t, src)
	want := tableRows(t, src)
	src.Exec(t, "insert into t values (4)")
	switchAndWaitArchived(t, src)

	// b1 is timeline 1's backup.
	dir := filepath.Join(pgtest.TempDir(t), "data")
	s.restoreChoosing(t, dir, b1, "--target-time", target, "--target-timeline", "1")
	restored := pgtest.StartDataDir(t, 15, dir, noArchiving)
	restored.WaitRecoveryDone(t, 3*time.Minute)
	if got := tableRows(t, restored); got != want {
		t.Errorf("restored rows %q, want %q (timeline 1 at %s)", got, want, target)
	}
}
