package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestRecoveryRefusesMovedHistory: an encrypted site holds timelines 1, 2
// and 3 (each a restore of the archive's end, promoted, archiving into
// the site). Someone who can write the storage but holds no key copies
// 00000002.history (object and metadata) over 00000003.history: timeline
// 3 then seems to fork from timeline 1 where timeline 2 began, and none
// of timeline 3's WAL lies there. A recovery set up by hand with hoard
// wal-fetch as restore_command must not end at that fake fork and promote without
// timelines 2's and 3's rows: wal-fetch refuses the moved history file
// (exit 255), and PostgreSQL stops with an error naming it; hoard restore
// and hoard verify name it too.
func TestRecoveryRefusesMovedHistory(t *testing.T) {
	s := newSite(t, siteOptions{Encrypt: true})
	src, _ := s.startBackedUp(t)
	src.Exec(t, "insert into t values (2)")
	switchAndWaitArchived(t, src)
	src.Stop(t)

	// forkEnd restores the end of the archive, promotes it to the next
	// timeline, which archives into the site, adds row and stops it.
	forkEnd := func(row string) string {
		t.Helper()
		dir := filepath.Join(pgtest.TempDir(t), "fork"+row)
		s.mustHoard("restore", "--target-dir", dir)
		c := pgtest.StartDataDir(t, 15, dir, s.clusterConf())
		c.WaitRecoveryDone(t, 2*time.Minute)
		c.Exec(t, "insert into t values ("+row+")")
		rows := tableRows(t, c)
		switchAndWaitArchived(t, c)
		c.Stop(t)
		return rows
	}
	forkEnd("50")
	want := forkEnd("60")

	dir := filepath.Join(pgtest.TempDir(t), "data")
	s.mustHoard("restore", "--target-dir", dir)
	for _, suffix := range []string{"", ".metadata"} {
		from := filepath.Join(s.storeDir, s.name, "timeline", "00000002.history"+suffix)
		s.writeFile(filepath.Join(s.storeDir, s.name, "timeline", "00000003.history"+suffix), readFile(t, from))
	}
	// Recovery set up by hand: wal-fetch without --archived-through,
	// which hoard restore adds (and which stops recovery at the first
	// segment missing below the archive's end it found).
	conf := map[string]string{"archive_mode": "off"}
	conf["restore_command"] = s.restoreCommand()
	c, err := pgtest.TryStartDataDir(t, 15, dir, conf)
	defer func() {
		// hoard restore and verify name the moved object.
		_, errOut, rerr := s.hoard("restore", "--target-dir", filepath.Join(pgtest.TempDir(t), "again"))
		if rerr == nil || !strings.Contains(errOut, "timeline/00000003.history") || !strings.Contains(errOut, "not authenticated") {
			t.Errorf("hoard restore after the move: %v, want an error naming timeline/00000003.history as not authenticated:\n%s", rerr, errOut)
		}
		out, errOut, verr := s.hoard("verify")
		if verr == nil || !strings.Contains(out+errOut, "00000003.history") {
			t.Errorf("hoard verify after the move: %v, want a failure naming 00000003.history:\n%s%s", verr, out, errOut)
		}
	}()
	log := refusedRecovery(t, c, err, func(c *pgtest.Cluster) string { return tableRows(t, c) }, want)
	if log != "" && !strings.Contains(log, "00000003.history") {
		t.Errorf("recovery failed, but the log does not name 00000003.history:\n%s", log)
	}
}
