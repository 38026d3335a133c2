package e2e

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestDaemonKilledThenPrimaryLost: hoard daemon streams a primary with
// wal_partial_upload_interval 0 (the default) and fsyncs a commit; the
// daemon is killed with SIGKILL, so nothing stores the segment in
// progress; then the primary's host is lost (SIGKILL, never started
// again) and the daemon starts again. Unable to connect, it stores the
// segment it finds in its spool as a .partial, and a restore to the end of
// the archive recovers every committed row.
func TestDaemonKilledThenPrimaryLost(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e: -short")
	}
	s := newMinIOStreamSite(t)
	src := s.startSource(pgtest.Options{})
	d := s.startDaemon()
	d.waitFirstBackup(s.name, 3*time.Minute, true)

	src.Exec(t, "create table rpo (id int, at timestamptz default clock_timestamp())")
	src.Exec(t, "insert into rpo (id) select generate_series(1, 100)")
	lsn := src.QueryString(t, "select pg_current_wal_lsn()::text")
	seg := src.QueryString(t, "select pg_walfile_name($1::pg_lsn)", lsn)
	d.waitFlushed(s.name, lsnOf(t, lsn), 2*time.Minute)
	want := rowsOfRPO(t, src)
	d.stop(syscall.SIGKILL, 10*time.Second)
	if s.stored(seg) || s.stored(seg+".partial") {
		t.Fatalf("%s stored before the crash (complete: %v): the test needs it only in the spool", seg, s.stored(seg))
	}
	src.Kill(t)

	d = s.startDaemon()
	d.waitFor(seg+".partial stored by the daemon started after the crash", 2*time.Minute, func() bool {
		return s.stored(seg + ".partial")
	})
	if !strings.Contains(d.out.String(), "server unreachable: storing the segment in progress an earlier run left in the spool as .partial") {
		t.Errorf("the daemon did not log why it stored %s.partial:\n%s", seg, tailLines(d.out.String(), 30))
	}
	if code := d.stop(syscall.SIGTERM, 90*time.Second); code != 0 {
		t.Fatalf("hoard daemon exited %d after SIGTERM, want 0\n%s", code, tailLines(d.out.String(), 30))
	}

	dir := filepath.Join(pgtest.TempDir(t), "data")
	restored := s.mustHoard("restore", "--target-dir", dir)
	if !strings.Contains(restored, seg+".partial") {
		t.Errorf("restore does not say the archive ends in %s.partial:\n%s", seg, restored)
	}
	c := pgtest.StartDataDir(t, src.Major, dir, noArchiving)
	c.WaitRecoveryDone(t, 3*time.Minute)
	if got := rowsOfRPO(t, c); got != want {
		t.Errorf("restored cluster has rows %s, the primary committed %s", got, want)
	}
}
