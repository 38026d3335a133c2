package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestRestoreTargetXIDSpecial: PostgreSQL reads recovery_target_xid's low
// 32 bits, and 0, 1 and 2 there are no transaction's (invalid, bootstrap,
// frozen: normal xids start at 3, transam.h), so recovery would never
// meet the target. A --target-xid whose low 32 bits are one of them (a
// full xid of epoch 1 such as 4294967296, or a typo) is refused with
// exit 2 before anything is written. 4294967296 was taken as a
// transaction after every backup's end: the newest backup was restored,
// with exit 0, for a recovery that could only fail at the archive's end.
func TestRestoreTargetXIDSpecial(t *testing.T) {
	s := newSite(t, siteOptions{})
	src, _ := s.startBackedUp(t)
	src.Exec(t, "insert into t values (2)")
	switchAndWaitArchived(t, src)

	for _, x := range []string{"1", "2", "4294967296", "4294967297", "4294967298"} {
		t.Run(x, func(t *testing.T) {
			dir := filepath.Join(pgtest.TempDir(t), "data")
			_, errOut, err := s.hoard("restore", "--target-dir", dir, "--target-xid", x)
			if exitCode(err) != 2 || !strings.Contains(errOut, "--target-xid") {
				t.Errorf("restore --target-xid %s: exit %d, want 2 and an error naming --target-xid\n%s", x, exitCode(err), errOut)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("restore --target-xid %s left %s (stat: %v)", x, dir, err)
			}
		})
	}
}
