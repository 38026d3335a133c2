package e2e

import (
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

// TestPgUpgrade_SameSite runs a real pg_upgrade (Debian's PostgreSQL 15,
// 15 to 15) of a cluster archived by hoard that had reached timeline 2,
// and keeps the upgraded cluster in the same site: what docs/backup-restore.md
// "After pg_upgrade" says happens, and its fix, done as written. The old
// cluster is backed up, recovers its own archive in place and promotes to
// timeline 2 (00000002.history stored, bound to its system), and is
// upgraded. The new cluster (a new system identifier, timeline 1, the old
// rows) archives into the old prefix: hoard check exits 1 with the line
// naming both systems and the prefix to set, wal-fetch of
// 00000002.history exits 255 saying the same. Then the docs' fix: a new
// backup_sites.<site>.prefix and a basebackup there; check and wal-fetch
// are clean there, and a restore from it brings back the new cluster's
// rows, while a configuration file of the old prefix (the site not
// active) restores the old cluster.
func TestPgUpgrade_SameSite(t *testing.T) {
	a := newSite(t, siteOptions{Encrypt: true})
	old := pgtest.Start(t, pgtest.Options{Debian: true, Conf: a.clusterConf()})
	a.use(old)
	old.Exec(t, "create table t (id int primary key)")
	old.Exec(t, "insert into t values (1)")
	a.mustHoard("basebackup", "--fast")
	old.Exec(t, "insert into t values (2)")
	switchAndWaitArchived(t, old)
	a.promoteInPlace(t, old, a.restoreCommand())
	old.Exec(t, "insert into t values (3)")
	switchAndWaitArchived(t, old)
	old.Stop(t)
	readFile(t, filepath.Join(a.storeDir, a.name, "timeline", "00000002.history"))
	sysOld, err := archive.ClusterSystemID(old.DataDir)
	if err != nil {
		t.Fatal(err)
	}

	nc := pgtest.Start(t, pgtest.Options{Debian: true, Conf: noArchiving})
	nc.Stop(t)
	pgUpgrade(t, old, nc)
	sysNew, err := archive.ClusterSystemID(nc.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if tli, err := archive.ClusterTimeline(nc.DataDir); err != nil || tli != 1 || sysNew == sysOld {
		t.Fatalf("upgraded cluster: timeline %d (%v), system %d (old %d); want timeline 1 and another system", tli, err, sysNew, sysOld)
	}
	pgtest.AppendConf(t, nc.DataDir, a.clusterConf())
	nc.Start(t)
	a.use(nc)
	if got, want := tableRows(t, nc), "3: 1,2,3"; got != want {
		t.Fatalf("upgraded cluster: rows %q, want %q", got, want)
	}
	nc.Exec(t, "insert into t values (10)")
	switchAndWaitArchived(t, nc) // its timeline 1 WAL continues past the old cluster's

	a.wantUpgradeRefusals(t, nc, sysOld, sysNew)

	// The upgraded cluster's own first failover (recovery of its pg_wal
	// alone, promoted): archive_command cannot store its 00000002.history
	// under the old cluster's, and says why.
	a.promoteInPlace(t, nc, "false")
	nc.WaitTrue(t, 2*time.Minute, "select coalesce(last_failed_wal = '00000002.history', false) from pg_stat_archiver")
	for _, w := range []string{"another cluster's history file holds", strconv.FormatUint(sysOld, 10),
		strconv.FormatUint(sysNew, 10), "pg_upgrade", "backup_sites.<site>.prefix"} {
		if !strings.Contains(nc.Log(), w) {
			t.Errorf("wal-push's refusal of the upgraded cluster's 00000002.history does not say %s:\n%s", w, tailLines(nc.Log(), 20))
		}
	}

	// The fix, as docs/backup-restore.md says: a configuration file of
	// its own for the old prefix, the site not active, to restore the old
	// cluster; a new prefix and a backup there. archive_command's next try
	// stores the history file in the new prefix.
	oldSite := *a
	oldSite.config = filepath.Join(a.dir, "old-cluster.json")
	cfg, site := a.readConfig()
	site["prefix"], site["active"] = a.name, false
	a.writeConfig(oldSite.config, cfg)
	a.setSiteKey("prefix", a.name+"-upgraded")
	// Not a second site in the same file: a command without --site (as
	// archive_command's) then fails.
	both := *a
	both.config = filepath.Join(a.dir, "both.json")
	cfg, _ = a.readConfig()
	cfg["backup_sites"].(map[string]any)[a.name+"-old"] = site
	a.writeConfig(both.config, cfg)
	_, errOut, err := both.hoard("wal-push", filepath.Join(nc.DataDir, "pg_wal", "00000002.history"))
	if exitCode(err) != 2 || !strings.Contains(errOut, "pass --site") {
		t.Errorf("wal-push without --site, two sites in the file: %v, want exit 2 and the hint\n%s", err, errOut)
	}
	a.mustHoard("basebackup", "--fast")
	nc.Exec(t, "insert into t values (11)")
	want := tableRows(t, nc)
	switchAndWaitArchived(t, nc)
	out, errOut, err := a.hoard("check")
	if err != nil || strings.Contains(out, "FAILED") {
		t.Errorf("hoard check in the new prefix: %v\n%s%s", err, out, errOut)
	}
	wantCheckLines(t, out, "ok       postgresql node 0: no timeline history file of another database system above timeline 2")
	dest := filepath.Join(nc.DataDir, "pg_wal", "RECOVERYHISTORY")
	a.mustHoard("wal-fetch", "00000002.history", dest)
	if got, want := string(readFile(t, dest)), string(readFile(t, filepath.Join(nc.DataDir, "pg_wal", "00000002.history"))); got != want {
		t.Errorf("wal-fetch 00000002.history in the new prefix: %q, want the upgraded cluster's %q", got, want)
	}

	dir := filepath.Join(pgtest.TempDir(t), "data")
	a.mustHoard("restore", "--target-dir", dir)
	rc := pgtest.StartDataDir(t, 15, dir, noArchiving)
	rc.WaitRecoveryDone(t, 3*time.Minute)
	if got := tableRows(t, rc); got != want {
		t.Errorf("restore of the upgraded cluster from the new prefix: rows %q, want %q", got, want)
	}
	if sys, err := archive.ClusterSystemID(dir); err != nil || sys != sysNew {
		t.Errorf("restored cluster: system %d (%v), want the upgraded cluster's %d", sys, err, sysNew)
	}
	rc.Stop(t)

	oldDir := filepath.Join(pgtest.TempDir(t), "old")
	oldSite.mustHoard("restore", "--target-dir", oldDir)
	oc := pgtest.StartDataDir(t, 15, oldDir, noArchiving)
	oc.WaitRecoveryDone(t, 3*time.Minute)
	if got, want := tableRows(t, oc), "3: 1,2,3"; got != want {
		t.Errorf("restore of the old cluster from the old prefix: rows %q, want %q", got, want)
	}
	if sys, err := archive.ClusterSystemID(oldDir); err != nil || sys != sysOld {
		t.Errorf("restored old cluster: system %d (%v), want the old cluster's %d", sys, err, sysOld)
	}
	oc.Stop(t)
}

// promoteInPlace stops c, an archiving node of s, and starts it again in
// archive recovery (recovery.signal) with restoreCommand: at the end of
// its WAL it promotes to its next timeline and marks that timeline's
// history file ready to archive (PostgreSQL archives it before any
// segment), as a restored and promoted copy would, with c's own binaries
// and data directory.
func (s *site) promoteInPlace(t *testing.T, c *pgtest.Cluster, restoreCommand string) {
	t.Helper()
	c.Stop(t)
	pgtest.AppendConf(t, c.DataDir, map[string]string{"restore_command": restoreCommand})
	s.writeFile(filepath.Join(c.DataDir, "recovery.signal"), nil)
	c.Start(t)
	c.WaitRecoveryDone(t, 3*time.Minute)
}

// pgUpgrade runs Debian's pg_upgrade of the stopped cluster old into the
// stopped, freshly initialised cluster nc, as the server's user in a
// directory of its own (pg_upgrade writes its logs and sockets there).
func pgUpgrade(t *testing.T, old, nc *pgtest.Cluster) {
	t.Helper()
	dir := pgtest.TempDir(t)
	cmd := exec.Command(pgtest.Tool(t, "pg_upgrade"),
		"-b", old.BinDir, "-B", nc.BinDir, "-d", old.DataDir, "-D", nc.DataDir,
		"-p", strconv.Itoa(testio.FreePort(t)), "-P", strconv.Itoa(testio.FreePort(t)), "-s", dir, "-U", "postgres")
	cmd.Dir = dir
	cmd.Env = minimalEnv()
	pgtest.RunAs(cmd)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("pg_upgrade (%v):\n%s", time.Since(start).Round(time.Millisecond), tailLines(string(out), 15))
	if err != nil {
		t.Fatalf("pg_upgrade: %v\n%s", err, out)
	}
}
