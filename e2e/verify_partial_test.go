package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestVerifyRestore_PartialNewest: after a clean stop the daemon stores
// the segment in progress as its .partial, the newest WAL of the archive.
// hoard verify --restore then replays through it, and its replay check
// passes, naming the .partial. Before, the check took the .partial's name
// for a segment's, could not parse it, and failed the test restore
// ("recovery ended at X, before the newest archived segment ....partial")
// although recovery had replayed all of the archive: found by running
// verifying.md's command after daemon.md's SIGTERM. The daemon's
// scheduled test restores run the same check.
func TestVerifyRestore_PartialNewest(t *testing.T) {
	s := newMinIOStreamSite(t)
	src := s.startSource(pgtest.Options{})
	d := s.startDaemon()
	d.waitFirstBackup(s.name, 3*time.Minute, true)
	src.Exec(t, "create table after_backup as select generate_series(1, 1000) g")
	// The daemon stores at its stop what it has flushed: wait until that
	// holds the table, so the segment in progress is not empty.
	lsn := src.QueryString(t, "select pg_current_wal_lsn()")
	d.waitFor("the daemon flushed "+lsn, time.Minute, func() bool {
		return src.QueryString(t, "select coalesce(bool_and(flush_lsn >= '"+lsn+"'), false)::text from pg_stat_replication") == "true"
	})
	if code := d.stop(syscall.SIGTERM, 2*time.Minute); code != 0 {
		t.Fatalf("daemon exit %d after SIGTERM, want 0\n%s", code, tailLines(d.out.String(), 30))
	}
	wal := s.storedWAL()
	newest := ""
	for _, n := range wal {
		if newest == "" || n[:24] > newest[:24] || n[:24] == newest[:24] && strings.HasSuffix(n, ".partial") {
			newest = n
		}
	}
	if !strings.HasSuffix(newest, ".partial") {
		t.Fatalf("newest stored WAL %q after the daemon's stop, want a .partial (stored: %v)", newest, wal)
	}
	out, errOut, err := s.hoard("verify", "--restore")
	if err != nil || !strings.Contains(out, "restore test PASSED") {
		t.Fatalf("verify --restore: %v\n%s\n%s", err, out, tailLines(errOut, 20))
	}
	if want := "in the newest archived segment " + newest; !strings.Contains(out, want) {
		t.Errorf("verify --restore does not say %q:\n%s", want, out)
	}
}
