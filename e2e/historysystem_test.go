package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestForeignSystem_History: clusters A and B back up into sites of one
// name sharing a key pair. A reaches timeline 2 (a restore of its
// archive's end, promoted); B's hoard signs a 00000003.history of B's
// that forks from timeline 1 at A's fork point. Someone who can write A's
// storage and read B's copies it (object and metadata) into A's site: it
// verifies with the shared key, and recovery to the latest timeline would
// switch to timeline 3 at the fork, find none of its WAL there, and
// promote without timeline 2's rows. wal-fetch (PostgreSQL's recovery set
// up by hand), hoard restore and hoard verify refuse it, naming the
// object and both system identifiers; once it is gone, a restore across
// A's own timeline switch reaches timeline 2's rows.
func TestForeignSystem_History(t *testing.T) {
	a := newSite(t, siteOptions{Encrypt: true})
	srcA, _ := a.startBackedUp(t)
	srcA.Exec(t, "insert into t values (2)")
	switchAndWaitArchived(t, srcA)
	srcA.Stop(t)

	fork := filepath.Join(pgtest.TempDir(t), "fork")
	a.mustHoard("restore", "--target-dir", fork)
	c := pgtest.StartDataDir(t, 15, fork, a.clusterConf())
	c.WaitRecoveryDone(t, 2*time.Minute)
	c.Exec(t, "insert into t values (50)")
	want := tableRows(t, c)
	switchAndWaitArchived(t, c)
	c.Stop(t)
	history := string(readFile(t, filepath.Join(fork, "pg_wal", "00000002.history")))
	forkLine, _, _ := strings.Cut(history, "\n")

	b, srcB := a.sharingKeys(t)
	forged := filepath.Join(srcB.DataDir, "pg_wal", "00000003.history")
	if err := os.WriteFile(forged, []byte(forkLine+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.mustHoard("wal-push", forged)
	sysA, err := archive.ClusterSystemID(srcA.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	sysB, err := archive.ClusterSystemID(srcB.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	srcB.Stop(t)
	ids := []string{strconv.FormatUint(sysA, 10), strconv.FormatUint(sysB, 10)}

	dir := filepath.Join(pgtest.TempDir(t), "data")
	a.mustHoard("restore", "--target-dir", dir)
	planted := filepath.Join(a.storeDir, a.name, "timeline", "00000003.history")
	for _, suffix := range []string{"", ".metadata"} {
		a.writeFile(planted+suffix, readFile(t, filepath.Join(b.storeDir, b.name, "timeline", "00000003.history"+suffix)))
	}
	names := func(what, text string) {
		t.Helper()
		for _, w := range append([]string{"timeline/00000003.history"}, ids...) {
			if !strings.Contains(text, w) {
				t.Errorf("%s does not name %s:\n%s", what, w, text)
			}
		}
	}
	conf := map[string]string{"archive_mode": "off"}
	conf["restore_command"] = fmt.Sprintf("'%s' --config '%s' wal-fetch %%f %%p", hoardBin, a.config)
	rc, err := pgtest.TryStartDataDir(t, 15, dir, conf)
	log := refusedRecovery(t, rc, err, func(c *pgtest.Cluster) string { return tableRows(t, c) }, want)
	names("the recovery's log", log)

	_, errOut, rerr := a.hoard("restore", "--target-dir", filepath.Join(pgtest.TempDir(t), "refused"))
	if rerr == nil {
		t.Errorf("hoard restore with B's history file in A's site succeeded")
	}
	names("hoard restore's error", errOut)
	out, errOut, verr := a.hoard("verify")
	if verr == nil {
		t.Errorf("hoard verify with B's history file in A's site passed:\n%s", out)
	}
	names("hoard verify's report", out+errOut)

	for _, suffix := range []string{"", ".metadata"} {
		if err := os.Remove(planted + suffix); err != nil {
			t.Fatal(err)
		}
	}
	again := filepath.Join(pgtest.TempDir(t), "again")
	a.mustHoard("restore", "--target-dir", again)
	ac := pgtest.StartDataDir(t, 15, again, a.clusterConf())
	ac.WaitRecoveryDone(t, 2*time.Minute)
	if got := tableRows(t, ac); got != want {
		t.Errorf("restore across A's timeline switch: rows %q, want %q", got, want)
	}
	ac.Stop(t)
}
