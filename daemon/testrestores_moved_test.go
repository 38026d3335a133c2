package daemon

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/storage"
)

// TestSupervisor_restoreTestOnceMovedFrom: the scheduled test restore
// tests what hoard restore would take now, which includes the backups of
// the site's moved_from sites (restore.Run lists them, the site's own
// copy of a name first: archive.Archive.FirstCopies), and the test
// restore itself (verify.RestoreTest) chooses among them too.
//
//   - MovedOnly: a site that moved and holds no backup of its own yet
//     runs the test of the old site's backup. Before, it waited ("no
//     basebackup yet") until the first new backup, with no test of the
//     backups a restore would use.
//   - Copied: both sites hold the same backup (archive-copy, both kept):
//     it is the newest, once, and the test passes (no backup passed
//     over).
//   - None: no backup in any site: skipped, as before.
func TestSupervisor_restoreTestOnceMovedFrom(t *testing.T) {
	moved := func(old *archive.Archive) *archive.Archive {
		old.Site = "old"
		return &archive.Archive{Store: storage.NewMem(), Codec: &archive.Codec{}, Site: "test", MovedFrom: []*archive.Archive{old}}
	}
	t.Run("MovedOnly", func(t *testing.T) {
		sup := newSupervisor(testDaemon(t), restoreTestSite(t.TempDir(), time.Hour, &fakeRestoreTests{}))
		r, skip := sup.restoreTestOnce(context.Background(), moved(archiveWithBackup(t)))
		if skip || r == nil || !r.passed() || r.Backup != "2024-05-01_0" {
			t.Fatalf("restoreTestOnce = %+v, skip %v; want the test of the moved_from site's 2024-05-01_0 passed", r, skip)
		}
	})
	t.Run("Copied", func(t *testing.T) {
		old := archiveWithBackup(t)
		nw := moved(old)
		archivetest.CopyAll(t, old.Store, nw.Store)
		sup := newSupervisor(testDaemon(t), restoreTestSite(t.TempDir(), time.Hour, &fakeRestoreTests{}))
		r, skip := sup.restoreTestOnce(context.Background(), nw)
		if skip || r == nil || !r.passed() {
			t.Fatalf("restoreTestOnce = %+v, skip %v; want passed", r, skip)
		}
	})
	t.Run("None", func(t *testing.T) {
		f := &fakeRestoreTests{}
		sup := newSupervisor(testDaemon(t), restoreTestSite(t.TempDir(), time.Hour, f))
		empty := &archive.Archive{Store: storage.NewMem(), Codec: &archive.Codec{}, Site: "old"}
		if r, skip := sup.restoreTestOnce(context.Background(), moved(empty)); !skip {
			t.Fatalf("restoreTestOnce with no backup in any site = %+v, want skipped", r)
		}
		if f.count() != 0 {
			t.Errorf("tests run = %d, want 0", f.count())
		}
		if r := sup.status().RestoreTest; r == nil || !strings.Contains(r.Waiting, "no basebackup") {
			t.Errorf("status's restore test = %+v, want it to say why no test runs", r)
		}
	})
}
