package e2e

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestRestoreTargetXIDOpenAtBackupEnd: a transaction that took its xid
// before the only backup and committed after it, while a later transaction
// committed before the backup ended, lies below the backup's end snapshot
// xmax. The automatic choice refuses the backup (the transaction may have
// committed before the end); named with --basebackup, the restore proceeds
// with a warning and PostgreSQL stops right after the transaction's commit:
// the restored rows are the source's rows at that commit.
func TestRestoreTargetXIDOpenAtBackupEnd(t *testing.T) {
	s := newSite(t, siteOptions{})
	src := s.startWithTable(t)

	ctx := context.Background()
	open := src.Connect(t, "postgres")
	tx, err := open.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "insert into t values (100)"); err != nil {
		t.Fatal(err)
	}
	var xid uint64
	if err := tx.QueryRow(ctx, "select txid_current()").Scan(&xid); err != nil {
		t.Fatal(err)
	}
	src.Exec(t, "insert into t values (2)") // completes after xid: xmax passes it
	s.mustHoard("basebackup", "--fast")
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	want := tableRows(t, src)
	src.Exec(t, "insert into t values (3)")
	switchAndWaitArchived(t, src)
	name := s.listBackups()[0].Name

	dir := pgtest.TempDir(t) + "/data"
	x := strconv.FormatUint(xid, 10)
	_, errOut, err := s.hoard("restore", "--target-dir", dir, "--target-xid", x)
	if exitCode(err) != 2 || !strings.Contains(errOut, "may have committed before it ended") {
		t.Fatalf("automatic choice for xid %s: exit %d\n%s", x, exitCode(err), errOut)
	}
	_, errOut, err = s.hoard("restore", "--target-dir", dir, "--target-xid", x, "--basebackup", name)
	if err != nil {
		t.Fatalf("restore --basebackup %s --target-xid %s: %v\n%s", name, x, err, errOut)
	}
	if !strings.Contains(errOut, "may have committed before this backup ended") {
		t.Errorf("no warning about the xid:\n%s", errOut)
	}
	restored := pgtest.StartDataDir(t, 15, dir, noArchiving)
	restored.WaitRecoveryDone(t, 3*time.Minute)
	if got := tableRows(t, restored); got != want {
		t.Errorf("restored rows %q, want %q (the source's at the commit of xid %s)", got, want, x)
	}
}
