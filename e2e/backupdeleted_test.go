package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/storage"
)

// TestVerify_NewestBackupDeleted: someone who can write the storage
// deletes the newest backup's main object, in a site with keys. hoard
// cannot bring it back, and restore without --basebackup restores the
// older backup (with every row: the WAL from its start is stored), but
// the deletion is not hidden where hoard can know of it: the backup
// history file PostgreSQL archived as the deleted backup ended starts
// after the older backup, and hoard verify notes it, naming the file and
// the newest listed backup, without failing; so does restore's summary.
func TestVerify_NewestBackupDeleted(t *testing.T) {
	s := newSite(t, siteOptions{Encrypt: true})
	src, older, newer := s.twoBackups(t)
	want := tableRows(t, src)
	src.Stop(t)
	if err := storage.NewLocal(s.storeDir).Delete(context.Background(), archive.Layout{Prefix: s.name}.BackupKey(newer)); err != nil {
		t.Fatal(err)
	}

	out := s.mustHoard("verify")
	var history string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "archive: note:") && strings.Contains(line, ".backup") {
			history = line
		}
	}
	if history == "" || !strings.Contains(history, "newest listed backup "+older) || strings.Contains(out, "PROBLEMS FOUND") {
		t.Errorf("hoard verify after %s was deleted does not note its backup history file naming %s:\n%s", newer, older, out)
	}

	out = s.restoreChosenHas(t, older, want, newer+" deleted")
	if !strings.Contains(out, "NOTE: ") || !strings.Contains(out, ".backup records a backup") || !strings.Contains(out, "newest listed backup "+older) {
		t.Errorf("hoard restore after %s was deleted does not note its backup history file:\n%s", newer, out)
	}
}
