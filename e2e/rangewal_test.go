package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestRestore_RangeWALFetchedOnce: hoard restore downloads and checks the
// WAL from the backup's start to its end while it writes the data
// directory, and keeps it in pg_wal/hoard-prefetch (restore_prefetch
// 3). PostgreSQL, started on the directory with hoard wal-fetch as its
// restore_command, then recovers every row, and the storage (counted at
// a proxy in front of it) served the backup's start segment to the
// restore and not again to wal-fetch, while it served the segments after
// the range to wal-fetch.
func TestRestore_RangeWALFetchedOnce(t *testing.T) {
	s, src, proxy := newPrefetchSite(t)
	src.Exec(t, "insert into t select generate_series(1, 100)")
	s.mustHoard("basebackup", "--fast")
	for i := 1; i <= 3; i++ {
		src.Exec(t, fmt.Sprintf("insert into t select generate_series(%d, %d)", i*100+1, (i+1)*100))
		switchAndWaitArchived(t, src)
	}
	want := tableRows(t, src)

	// The GETs of each WAL object, by phase: the restore, then
	// recovery.
	g := countWALGets(proxy)
	dir := filepath.Join(pgtest.TempDir(t), "data")
	start := restoreKeepingStart(t, s, dir, "1 kept")
	if restored := g.take()[start]; restored == 0 {
		t.Errorf("the restore did not download %s, the backup's start segment", start)
	}
	c := pgtest.StartDataDir(t, 15, dir, noArchiving)
	c.WaitRecoveryDone(t, 3*time.Minute)
	if got := tableRows(t, c); got != want {
		t.Errorf("restored rows %s, want %s", got, want)
	}
	if !strings.Contains(c.Log(), `restored log file "`+start+`" from archive`) {
		t.Errorf("recovery did not take %s through restore_command:\n%s", start, c.Log())
	}
	gets := g.take()
	if n := gets[start]; n != 0 {
		t.Errorf("recovery's wal-fetch downloaded %s (%d GETs), which the restore had checked and kept: %v", start, n, gets)
	}
	if len(gets) == 0 {
		t.Errorf("recovery downloaded no WAL: the count sees nothing")
	}
}
