package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestRestoreOddHistory: in the site's local store, a FIFO stands under
// timeline/00000002.history (with a .metadata sidecar), where a cluster
// archiving on timeline 1 has none: something someone who can write the
// storage directory, or a damaged file system, leaves. PostgreSQL's probe
// for recovery_target_timeline latest asks restore_command for
// 00000002.history, and hoard wal-fetch answers it with the store's error
// (exit 255), never "not archived" (exit 1): PostgreSQL must not take a
// damaged history file for an absent one. The restore's history listing
// passed over it, so hoard restore wrote the data directory and
// PostgreSQL then stopped at startup. hoard restore must refuse first,
// naming the object as stored damaged, writing nothing.
func TestRestoreOddHistory(t *testing.T) {
	s := newSite(t, siteOptions{})
	src, _ := s.startBackedUp(t)
	src.Exec(t, "insert into t values (2)")
	want := tableRows(t, src)
	seg := switchAndWaitArchived(t, src)
	src.Stop(t)

	tdir := filepath.Join(s.storeDir, s.name, "timeline")
	if err := os.MkdirAll(tdir, 0o700); err != nil {
		t.Fatal(err)
	}
	hist := filepath.Join(tdir, "00000002.history")
	if err := syscall.Mkfifo(hist, 0o600); err != nil {
		t.Fatal(err)
	}
	s.writeFile(hist+".metadata", readFile(t, filepath.Join(s.storeDir, s.name, "xlog", seg+".metadata")))
	pgtest.Chown(t, s.storeDir)

	fetched := filepath.Join(pgtest.TempDir(t), "RECOVERYHISTORY")
	_, errOut, err := s.hoard("wal-fetch", "00000002.history", fetched)
	if code := exitCode(err); code != 255 || !strings.Contains(errOut, "is a FIFO") {
		t.Errorf("wal-fetch of the FIFO'd 00000002.history: exit %d, want 255 (1 is PostgreSQL's \"not archived\") naming the FIFO:\n%s", code, errOut)
	}

	dir := filepath.Join(pgtest.TempDir(t), "data")
	_, errOut, err = s.hoard("restore", "--target-dir", dir)
	if err == nil {
		c, serr := pgtest.TryStartDataDir(t, 15, dir, noArchiving)
		log := refusedRecovery(t, c, serr, func(c *pgtest.Cluster) string { return tableRows(t, c) }, want)
		t.Fatalf("hoard restore succeeded with timeline/00000002.history a FIFO; PostgreSQL then (\"\": promoted with every row):\n%s", tailLines(log, 15))
	}
	for _, w := range []string{s.name + "/timeline/00000002.history is stored damaged", "is a FIFO", "wal-fetch"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("the refusal does not say %q:\n%s", w, errOut)
		}
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		t.Errorf("the refused restore wrote %d entries into %s", len(ents), dir)
	}
}
