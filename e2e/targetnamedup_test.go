package e2e

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestRestoreTargetNameTwice: a restore point name made twice (a deploy
// script's 'before-deploy', every day) with no backup between the two.
// hoard finds the newest point in the archived WAL and chooses the backup
// that ended before it, but PostgreSQL stops at the first point of that
// name it replays, the older one: the restore stopped a point early, with
// exit 0. It is refused (exit 2), naming both points, with --basebackup
// too (naming the backup does not choose the point); a named backup that
// started after the newest point is refused (recovery would reach none);
// and the restore the hint gives for the newest stops there.
func TestRestoreTargetNameTwice(t *testing.T) {
	s := newSite(t, siteOptions{})
	src, backup := s.startBackedUp(t)
	src.Exec(t, "insert into t values (2)")
	first := src.QueryString(t, "select pg_create_restore_point('before-deploy')::text")
	src.Exec(t, "insert into t values (3)")
	src.SwitchWAL(t) // the second point in a later segment
	newest := src.QueryString(t, "select pg_create_restore_point('before-deploy')::text")
	want := tableRows(t, src)
	src.Exec(t, "insert into t values (4)")
	switchAndWaitArchived(t, src)

	dir := filepath.Join(pgtest.TempDir(t), "data")
	_, errOut, err := s.hoard("restore", "--target-dir", dir, "--target-name", "before-deploy")
	if exitCode(err) != 2 || !strings.Contains(errOut, "made more than once") || !strings.Contains(errOut, first) || !strings.Contains(errOut, newest) {
		t.Fatalf("restore --target-name before-deploy, made at %s and %s: exit %d, want 2 naming both\n%s", first, newest, exitCode(err), errOut)
	}
	// Naming the backup chooses the backup, not the point: PostgreSQL
	// stops at the first one all the same.
	_, errOut, err = s.hoard("restore", "--target-dir", dir, "--target-name", "before-deploy", "--basebackup", backup)
	if exitCode(err) != 2 || !strings.Contains(errOut, "made more than once") || !strings.Contains(errOut, first) || !strings.Contains(errOut, newest) {
		t.Fatalf("restore --basebackup %s --target-name before-deploy, made at %s and %s: exit %d, want 2 naming both\n%s", backup, first, newest, exitCode(err), errOut)
	}
	// A backup named with --basebackup that started after the newest
	// point: recovery from it replays no point of the name.
	s.mustHoard("basebackup", "--fast")
	var later string
	for _, b := range s.listBackups() {
		if b.Name != backup {
			later = b.Name
		}
	}
	_, errOut2, err := s.hoard("restore", "--target-dir", dir, "--target-name", "before-deploy", "--basebackup", later)
	if exitCode(err) != 2 || !strings.Contains(errOut2, "before backup "+later+" started") {
		t.Fatalf("restore --basebackup %s (started after the newest point) --target-name before-deploy: exit %d, want 2 saying the point is before it\n%s", later, exitCode(err), errOut2)
	}
	m := regexp.MustCompile(`--target-lsn (\S+) --target-inclusive=false`).FindStringSubmatch(errOut)
	if m == nil || m[1] != newest {
		t.Fatalf("no hint with --target-lsn %s:\n%s", newest, errOut)
	}
	s.mustHoard("restore", "--target-dir", dir, "--target-lsn", m[1], "--target-inclusive=false")
	c := pgtest.StartDataDir(t, 15, dir, noArchiving)
	c.WaitRecoveryDone(t, 3*time.Minute)
	if got := tableRows(t, c); got != want {
		t.Errorf("restored to the hint's LSN: rows %q, want %q (the source's at the newest point)", got, want)
	}
}
