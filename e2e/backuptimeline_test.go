package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRestoreBackupTimelineHistory: a cluster promoted once (a restore
// that recovered to the end of the archive) takes its backup on timeline
// 2, and retention has deleted the backup of timeline 1 (while one is
// there, the automatic choice reads 00000002.history to follow timeline 2
// from it, and refuses a damaged one). Restoring it, PostgreSQL asks restore_command for 00000002.history,
// its own timeline's, at startup and at promotion: damaged in the
// archive, wal-fetch refuses it (exit 255) and PostgreSQL stops with the
// directory written. So hoard restore refuses first, naming the file and
// writing nothing; with the file as stored, it restores and the restored
// cluster recovers timeline 2's rows.
func TestRestoreBackupTimelineHistory(t *testing.T) {
	s := newSite(t, siteOptions{})
	src, b1 := s.startBackedUp(t)
	switchAndWaitArchived(t, src)
	src.Stop(t)

	// Recovery to the end of the archive promotes to timeline 2, which
	// archives into the same site and takes its backup there.
	promotedDir := filepath.Join(pgtest.TempDir(t), "promoted")
	s.restoreChoosing(t, promotedDir, b1)
	promoted := pgtest.StartDataDir(t, 15, promotedDir, s.clusterConf())
	promoted.WaitRecoveryDone(t, 2*time.Minute)
	if tli := promoted.QueryString(t, "select timeline_id::text from pg_control_checkpoint()"); tli != "2" {
		t.Fatalf("restored cluster on timeline %s, want 2", tli)
	}
	s.use(promoted)
	promoted.Exec(t, "insert into t values (50)")
	s.mustHoard("basebackup", "--fast")
	backups := s.listBackups()
	b2 := backups[len(backups)-1].Name
	promoted.Exec(t, "insert into t values (51)")
	want := tableRows(t, promoted)
	switchAndWaitArchived(t, promoted)
	promoted.Stop(t)
	if err := storage.NewLocal(s.storeDir).Delete(context.Background(), archive.Layout{Prefix: s.name}.BackupKey(b1)); err != nil {
		t.Fatal(err)
	}

	hist := filepath.Join(s.storeDir, s.name, "timeline", "00000002.history")
	stored, err := os.ReadFile(hist)
	if err != nil {
		t.Fatal(err)
	}
	damaged := append([]byte{}, stored...)
	damaged[len(damaged)/2] ^= 0x55
	if err := os.WriteFile(hist, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, s.storeDir)
	dir := filepath.Join(pgtest.TempDir(t), "data")
	_, errOut, err := s.hoard("restore", "--target-dir", dir)
	if err == nil {
		t.Fatalf("restore of %s with its timeline's 00000002.history damaged succeeded: PostgreSQL asks for it and wal-fetch refuses it", b2)
	}
	for _, w := range []string{"00000002.history", "wal-fetch", b2} {
		if !strings.Contains(errOut, w) {
			t.Errorf("the refusal does not say %q:\n%s", w, errOut)
		}
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		t.Errorf("the refused restore wrote %d entries into %s", len(ents), dir)
	}

	if err := os.WriteFile(hist, stored, 0o600); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, s.storeDir)
	s.restoreChoosing(t, dir, b2)
	restored := pgtest.StartDataDir(t, 15, dir, noArchiving)
	restored.WaitRecoveryDone(t, 2*time.Minute)
	if got := tableRows(t, restored); got != want {
		t.Errorf("restored rows %q, want %q (the end of timeline 2)", got, want)
	}
}
