package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestUpgradedTimeline1_History: the shape a pg_upgrade into the same
// site leaves when the old cluster had failed over. The old cluster
// reaches timeline 2 (oldOnTimeline2: 00000002.history is stored bound
// to its system); then a cluster of a new system identifier on timeline 1
// (what pg_upgrade of PostgreSQL 15 gives; here a new initdb, not
// archiving: its timeline 1 segments would collide with the old one's)
// is the site's node. hoard check fails naming the old system's history
// file on timeline 2, the node's timeline 1 and system, and the prefix to
// set; wal-fetch of 00000002.history into the new cluster's pg_wal (what
// a standby's recovery to the latest timeline asks for) exits 255 saying
// the same, and delivers nothing. In a site without keys the same holds,
// by the system the history file's metadata claims (its writer's), and
// the refusal says that it is a claim.
func TestUpgradedTimeline1_History(t *testing.T) {
	for _, keys := range []bool{true, false} {
		t.Run(map[bool]string{true: "keys", false: "keyless"}[keys], func(t *testing.T) { testUpgradedTimeline1History(t, keys) })
	}
}

func testUpgradedTimeline1History(t *testing.T, keys bool) {
	a := newSite(t, siteOptions{Encrypt: keys})
	sysOld := a.oldOnTimeline2(t)

	nc := pgtest.Start(t, pgtest.Options{Major: 15, Conf: noArchiving})
	a.use(nc)
	sysNew, err := archive.ClusterSystemID(nc.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if tli, err := archive.ClusterTimeline(nc.DataDir); err != nil || tli != 1 || sysNew == sysOld {
		t.Fatalf("new cluster: timeline %d (%v), system %d (old %d); want timeline 1 and another system", tli, err, sysNew, sysOld)
	}
	errOut := a.wantUpgradeRefusals(t, nc, sysOld, sysNew)
	if claim := "by its metadata's claim (not authenticated: this site has no keys)"; !keys && !strings.Contains(errOut, claim) {
		t.Errorf("wal-fetch's refusal in a site without keys does not say %q:\n%s", claim, errOut)
	}
}

// wantUpgradeRefusals checks what nc, the site's node, a cluster of
// system sysNew on timeline 1, gets from s, which holds 00000002.history
// bound to sysOld: hoard check exits 1 with the line naming both systems
// and the prefix to set, and wal-fetch of 00000002.history into nc's
// pg_wal (what a standby's recovery to the latest timeline asks for)
// exits 255 saying the same, and delivers nothing. It returns wal-fetch's
// standard error.
func (s *site) wantUpgradeRefusals(t *testing.T, nc *pgtest.Cluster, sysOld, sysNew uint64) string {
	t.Helper()
	old10, new10 := strconv.FormatUint(sysOld, 10), strconv.FormatUint(sysNew, 10)

	out, errOut, err := s.hoard("check")
	t.Logf("hoard check:\n%s%s", out, errOut)
	if code := exitCode(err); code != 1 {
		t.Errorf("hoard check: exit %d, want 1", code)
	}
	wantCheckLines(t, out, "FAILED   postgresql node 0: the site holds timeline history files of database system "+old10+
		" on timeline 2, above timeline 1 of this cluster (system "+new10+")")
	if !strings.Contains(out, "backup_sites.<site>.prefix") {
		t.Errorf("hoard check does not name the prefix to set:\n%s", out)
	}

	dest := filepath.Join(nc.DataDir, "pg_wal", "RECOVERYHISTORY")
	_, errOut, err = s.hoard("wal-fetch", "00000002.history", dest)
	if code := exitCode(err); code != 255 {
		t.Errorf("wal-fetch 00000002.history for the new cluster: exit %d, want 255\n%s", code, errOut)
	}
	for _, w := range []string{"timeline/00000002.history", old10, new10, "after pg_upgrade", "backup_sites.<site>.prefix"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("wal-fetch's refusal does not say %s:\n%s", w, errOut)
		}
	}
	if _, err := os.Lstat(dest); !os.IsNotExist(err) {
		t.Errorf("wal-fetch refused 00000002.history but left %s: %v", dest, err)
	}
	return errOut
}
