package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
)

// TestForeignSystem_History: clusters A and B back up into sites of one
// name sharing a key pair. A reaches timeline 2 (a restore of its
// archive's end, promoted); B's hoard signs a 00000003.history of B's
// that forks from timeline 1 at A's fork point. Someone who can write A's
// storage and read B's copies it (object and metadata) into A's site: it
// verifies with the shared key, and recovery that followed it to the
// latest timeline would switch to timeline 3 at the fork, find none of
// its WAL there, and promote without timeline 2's rows. A has no WAL on
// timeline 3, so wal-fetch treats it as absent (archive.IgnoreOtherHistory),
// with a warning naming the object and both system identifiers: recovery
// set up by hand with wal-fetch, and hoard restore, reach timeline 2's
// rows, and hoard verify passes. (Where the reader's system has WAL on the
// file's timeline, the file is refused: TestUpgradedTimeline1_History.)
func TestForeignSystem_History(t *testing.T) {
	a := newSite(t, siteOptions{Encrypt: true})
	srcA, c, fork := a.promotedFork(t)
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
	conf["restore_command"] = a.restoreCommand()
	rc := pgtest.StartDataDir(t, 15, dir, conf)
	if !waitRecoveryEnd(t, rc, 3*time.Minute) {
		t.Fatalf("recovery with B's history file in A's site did not end:\n%s", rc.Log())
	}
	if got := tableRows(t, rc); got != want {
		t.Errorf("recovery with B's history file in A's site: rows %q, want timeline 2's %q", got, want)
	}
	log := rc.Log()
	if !strings.Contains(log, "treated as absent") {
		t.Errorf("the recovery's log has no wal-fetch warning that B's history file is treated as absent:\n%s", log)
	}
	names("the recovery's log", log)
	rc.Stop(t)

	again := filepath.Join(pgtest.TempDir(t), "again")
	a.mustHoard("restore", "--target-dir", again)
	ac := pgtest.StartDataDir(t, 15, again, a.clusterConf())
	ac.WaitRecoveryDone(t, 2*time.Minute)
	if got := tableRows(t, ac); got != want {
		t.Errorf("hoard restore with B's history file in A's site: rows %q, want timeline 2's %q", got, want)
	}
	ac.Stop(t)
	a.mustHoard("verify")
}

// promotedFork starts a cluster archiving into s with table t, backs it up,
// archives row 2 and stops it, then restores the archive's end into a new
// directory, fork, and starts that archiving into s: recovery ends and it
// promotes to timeline 2, storing 00000002.history. It returns the stopped
// source and the running fork.
func (s *site) promotedFork(t *testing.T) (src, c *pgtest.Cluster, fork string) {
	t.Helper()
	src, _ = s.startBackedUp(t)
	src.Exec(t, "insert into t values (2)")
	switchAndWaitArchived(t, src)
	src.Stop(t)
	fork = filepath.Join(pgtest.TempDir(t), "fork")
	s.mustHoard("restore", "--target-dir", fork)
	c = pgtest.StartDataDir(t, 15, fork, s.clusterConf())
	c.WaitRecoveryDone(t, 2*time.Minute)
	return src, c, fork
}

// oldOnTimeline2 runs promotedFork in s, archives row 3 on timeline 2 and
// stops the fork: the site then holds 00000002.history bound to the old
// cluster's system identifier, which it returns.
func (s *site) oldOnTimeline2(t *testing.T) uint64 {
	t.Helper()
	_, oc, old := s.promotedFork(t)
	oc.Exec(t, "insert into t values (3)")
	switchAndWaitArchived(t, oc)
	oc.Stop(t)
	readFile(t, filepath.Join(s.storeDir, s.name, "timeline", "00000002.history"))
	sys, err := archive.ClusterSystemID(old)
	if err != nil {
		t.Fatal(err)
	}
	return sys
}

// TestOtherSystemSameTimeline_History: a cluster on timeline 2 (a restore
// of its archive's end, promoted: 00000002.history is stored bound to its
// system), then a new cluster (another system identifier) put on timeline
// 2 by pg_resetwal -l, past the old WAL, archives into the same site.
// Recovery of a backup of the new cluster asks wal-fetch for
// 00000002.history first; bound to the old system and not above the
// cluster's timeline, it is treated as absent (exit 1, a warning naming it
// and both systems), not refused (exit 255, which stopped the recovery):
// the restored cluster reaches the new cluster's rows. hoard verify --full
// notes the file, not as a problem (its other problems, the two systems'
// WAL on one timeline, are not this test's). pg_upgrade itself (of
// PostgreSQL 15) puts the new cluster on timeline 1: the old history files
// are then above it, and refused (docs/security.md). In a site without
// keys the same, by the system the history file's metadata claims.
func TestOtherSystemSameTimeline_History(t *testing.T) {
	testio.WithAndWithoutKeys(t, testOtherSystemSameTimeline)
}

func testOtherSystemSameTimeline(t *testing.T, keys bool) {
	a := newSite(t, siteOptions{Encrypt: keys})
	sysOld := a.oldOnTimeline2(t)

	nc := pgtest.Start(t, pgtest.Options{Major: 15, Conf: noArchiving})
	nc.Stop(t)
	reset := exec.Command(pgtest.Tool(t, "pg_resetwal"), "-l", "000000020000000000000020", nc.DataDir)
	pgtest.RunAs(reset)
	if out, err := reset.CombinedOutput(); err != nil {
		t.Fatalf("pg_resetwal: %v\n%s", err, out)
	}
	sysNew, err := archive.ClusterSystemID(nc.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if tli, err := archive.ClusterTimeline(nc.DataDir); err != nil || tli != 2 || sysNew == sysOld {
		t.Fatalf("new cluster: timeline %d (%v), system %d (old %d); want timeline 2 and another system", tli, err, sysNew, sysOld)
	}

	uc := pgtest.StartDataDir(t, 15, nc.DataDir, a.clusterConf())
	a.use(uc)
	uc.Exec(t, "create table t (id int primary key)")
	uc.Exec(t, "insert into t values (100)")
	a.mustHoard("basebackup", "--fast")
	uc.Exec(t, "insert into t values (101)")
	want := tableRows(t, uc)
	switchAndWaitArchived(t, uc)
	uc.Stop(t)

	dir := filepath.Join(pgtest.TempDir(t), "data")
	a.mustHoard("restore", "--target-dir", dir)
	rc, err := pgtest.TryStartDataDir(t, 15, dir, noArchiving)
	if err != nil {
		t.Fatalf("recovery of the upgraded cluster's backup: %v", err)
	}
	if promoted := waitRecoveryEnd(t, rc, 3*time.Minute); !promoted {
		t.Fatalf("recovery of the upgraded cluster's backup stopped:\n%s", tailLines(rc.Log(), 30))
	}
	if got := tableRows(t, rc); got != want {
		t.Errorf("restored upgraded cluster: rows %q, want %q", got, want)
	}
	log := rc.Log()
	for _, w := range []string{"timeline/00000002.history", strconv.FormatUint(sysOld, 10), strconv.FormatUint(sysNew, 10), "treated as absent"} {
		if !strings.Contains(log, w) {
			t.Errorf("recovery's log does not name %s in wal-fetch's warning:\n%s", w, tailLines(log, 30))
		}
	}
	rc.Stop(t)

	out, errOut, _ := a.hoard("verify", "--full")
	if !strings.Contains(out, "note: timeline history: "+a.name+"/timeline/00000002.history") ||
		strings.Contains(out, "archive: timeline history") {
		t.Errorf("hoard verify --full does not note the old system's history file, or names it as a problem:\n%s\n%s", out, errOut)
	}
}
