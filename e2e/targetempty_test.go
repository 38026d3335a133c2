package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestRestoreEmptyTarget: a recovery target flag given with an empty
// value (a script's --target-name "$POINT" with POINT unset) is refused
// with exit 2, naming the flag, before anything is written. Read as no
// target, it restored to the end of the archive and promoted there: every
// transaction after the point the operator meant was replayed, with exit 0.
func TestRestoreEmptyTarget(t *testing.T) {
	s := newSite(t, siteOptions{})
	src, _ := s.startBackedUp(t)
	src.Exec(t, "insert into t values (2)")
	switchAndWaitArchived(t, src)

	for _, flag := range []string{"target-time", "recovery-target-time", "target-xid", "target-name", "recovery-target-name",
		"target-lsn", "target-timeline", "target-action"} {
		t.Run(flag, func(t *testing.T) {
			dir := filepath.Join(pgtest.TempDir(t), "data")
			_, errOut, err := s.hoard("restore", "--target-dir", dir, "--"+flag+"=")
			if exitCode(err) != 2 || !strings.Contains(errOut, "--"+flag) {
				t.Errorf("restore --%s=: exit %d, want 2 and an error naming --%s\n%s", flag, exitCode(err), flag, errOut)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("restore --%s= left %s (stat: %v)", flag, dir, err)
			}
		})
	}
}
