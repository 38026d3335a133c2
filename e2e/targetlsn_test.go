package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestRestoreTargetLSNMalformed: a --target-lsn that PostgreSQL's pg_lsn
// refuses (as its recovery_target_lsn does: both read it with
// pg_lsn_in_internal) is refused by hoard restore with exit 2, naming the
// flag, before it chooses a backup or writes anything. hoard writes the
// LSN it parsed, not the operator's text, into postgresql.auto.conf, so a
// form it read differently would stop recovery where the operator did
// not ask, silently: a stray character cut the LSN short there, and a
// high half of nine digits lost its top digit (1<hi>/<lo> was read as
// <hi>/<lo>, the LSN below, which this archive reaches: the restore
// succeeded).
func TestRestoreTargetLSNMalformed(t *testing.T) {
	s := newSite(t, siteOptions{})
	src, _ := s.startBackedUp(t)
	src.Exec(t, "insert into t values (2)")
	lsn := src.QueryString(t, "select pg_current_wal_lsn()::text")
	src.Exec(t, "insert into t values (3)")
	switchAndWaitArchived(t, src)

	l, err := pglogrepl.ParseLSN(lsn)
	if err != nil {
		t.Fatal(err)
	}
	hi, lo := uint32(l>>32), uint32(l)
	for _, bad := range []string{
		lsn + "G",                       // trailing junk
		lsn + "/0",                      // a third part
		fmt.Sprintf("1%08X/%X", hi, lo), // nine digits: the high half overflows
		fmt.Sprintf("%X/0%08X", hi, lo), // nine digits in the low half
		strings.Replace(lsn, "/", "/O", 1),
		fmt.Sprintf("%X/%X", hi, lo>>4) + "O" + fmt.Sprintf("%X", lo&0xF), // a letter O for a zero
		"0x" + lsn,
		fmt.Sprintf("%X / %X", hi, lo),
		fmt.Sprintf("%X/ %X", hi, lo),
		fmt.Sprintf("+%X/%X", hi, lo),
		fmt.Sprintf("%X", lo),
	} {
		t.Run(bad, func(t *testing.T) {
			// PostgreSQL's own reading: none of these is an LSN.
			conn := src.Connect(t, "postgres")
			var v string
			if err := conn.QueryRow(context.Background(), "select $1::text::pg_lsn::text", bad).Scan(&v); err == nil {
				t.Fatalf("PostgreSQL reads %q as pg_lsn %s: not a malformed LSN", bad, v)
			}
			dir := filepath.Join(pgtest.TempDir(t), "data")
			_, errOut, err := s.hoard("restore", "--target-dir", dir, "--target-lsn", bad)
			if exitCode(err) != 2 || !strings.Contains(errOut, "--target-lsn") {
				t.Errorf("restore --target-lsn %q: exit %d, want 2 and an error naming --target-lsn\n%s", bad, exitCode(err), errOut)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("restore --target-lsn %q left %s (stat: %v)", bad, dir, err)
			}
		})
	}
}
