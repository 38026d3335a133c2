package daemon

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/storage"
)

// TestRun_NoBackupWhileSlotHeldElsewhere: a second daemon whose receiver
// is refused the replication slot (another daemon, with a spool of its
// own, streams from it: a sidecar beside a host daemon) takes no
// basebackup: its WAL capture never started, and a backup of its site
// without that WAL would not restore. Before, the backup loop took the
// receiver's resume position (set before START_REPLICATION) for a
// receiver that had held the slot, and backed up at once. Once the first
// daemon stops, the second takes the slot over, and then its backup.
func TestRun_NoBackupWhileSlotHeldElsewhere(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	c, first := backedUpCluster(t, storage.NewLocal(t.TempDir()))
	rd1 := runDaemon(t, Options{Sites: []Site{first}})
	rd1.waitFor("the first daemon's backup", func(s Status) bool { return s.Sites["test"].LastBackup != nil })

	st2 := storage.NewLocal(t.TempDir())
	second := streamingSiteTo(t, c.ConnString("postgres"), st2)
	second.SpoolDir = filepath.Join(t.TempDir(), "xlog_incoming")
	second.Schedule.Interval = 24 * time.Hour
	second.Backup = first.Backup
	rd2 := runDaemon(t, Options{Sites: []Site{second}})
	rd2.waitFor("the slot refused", func(s Status) bool {
		w := s.Sites["test"].WAL
		return w != nil && w.LastError != ""
	})
	time.Sleep(5 * time.Second)
	arch, _, err := second.OpenArchive(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if bs, err := arch.ListBackups(context.Background()); err != nil || len(bs) != 0 {
		t.Fatalf("the daemon refused the slot stored %d backups (%v); its log:\n%s", len(bs), err, rd2.logs.String())
	}

	rd1.stop()
	rd2.waitFor("the second daemon's backup, once it holds the slot", func(s Status) bool {
		w := s.Sites["test"].WAL
		return w != nil && w.Connected && s.Sites["test"].LastBackup != nil
	})
}
