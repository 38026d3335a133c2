package e2e

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
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
// 00000002.history treats it as absent (exit 1), warning the same, as
// the new cluster has no WAL on timeline 2 or later; with a backup of the
// new cluster there, restore's automatic choice restores it, not the old
// cluster's backup (wantNoSwitchToOld), and so does restore --basebackup
// of it (wantPromotes): PostgreSQL promotes to timeline 2 with the new
// cluster's rows and system. Then the docs' fix: a new
// backup_sites.<site>.prefix and a basebackup there; check and wal-fetch
// are clean there, and a restore from it brings back the new cluster's
// rows, while a configuration file of the old prefix (the site not
// active) restores the old cluster's backup named with --basebackup.
func TestPgUpgrade_SameSite(t *testing.T) {
	a := newSite(t, siteOptions{Encrypt: true})
	u := upgradeInSameSite(t, a)
	nc, sysOld, sysNew := u.nc, u.sysOld, u.sysNew

	a.wantUpgradeRefusals(t, nc, sysOld, sysNew)
	oldBackup, newBackup := u.wantNoSwitchToOld(t, a, "")
	a.wantPromotes(t, u, newBackup)

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
	wantRestored(t, dir, "restore of the upgraded cluster from the new prefix", want, sysNew)

	oldDir := filepath.Join(pgtest.TempDir(t), "old")
	oldSite.mustHoard("restore", "--target-dir", oldDir, "--basebackup", oldBackup)
	wantRestored(t, oldDir, "restore of the old cluster from the old prefix", oldRows, sysOld)
}

// TestPgUpgrade_SameSiteKeyless is TestPgUpgrade_SameSite's upgrade in a
// site without keys, whose history files are bound to no system. The old
// cluster's 00000002.history claims its system (its metadata, as hoard
// records it): as there, the file is absent to the upgraded cluster's
// recovery, and restore's automatic choice and restore --basebackup of
// the upgraded cluster's backup restore it and PostgreSQL promotes. With
// the claim stripped (an older hoard's file), its hint for the upgraded
// cluster holds: recovery kept on timeline 1 (--target-timeline 1)
// restores the upgraded cluster's rows and system.
func TestPgUpgrade_SameSiteKeyless(t *testing.T) {
	for _, claimed := range []bool{true, false} {
		t.Run(map[bool]string{true: "claimed", false: "unclaimed"}[claimed], func(t *testing.T) { testPgUpgradeSameSiteKeyless(t, claimed) })
	}
}

func testPgUpgradeSameSiteKeyless(t *testing.T, claimed bool) {
	a := newSite(t, siteOptions{})
	u := upgradeInSameSite(t, a)
	if claimed {
		_, newBackup := u.wantNoSwitchToOld(t, a, "")
		a.wantPromotes(t, u, newBackup)
		return
	}
	key := archive.Layout{Prefix: a.name}.WALKey("00000002.history")
	archivetest.PlantCopy(t, storage.NewLocal(a.storeDir), key, key, func(md storage.Metadata) { delete(md, archive.MetaSystemID) })
	pgtest.Chown(t, a.storeDir)
	u.wantNoSwitchToOld(t, a, "--target-timeline 1")

	want := tableRows(t, u.nc)
	dir := filepath.Join(pgtest.TempDir(t), "data")
	a.mustHoard("restore", "--target-dir", dir, "--target-timeline", "1")
	wantRestored(t, dir, "restore on timeline 1", want, u.sysNew)
}

// wantPromotes checks that restore --basebackup newBackup, the upgraded
// cluster's in the old prefix, restores it: PostgreSQL promotes past the
// old cluster's 00000002.history, absent to it as the site holds no WAL
// of the upgraded system on timeline 2 or later, to timeline 2, with the
// upgraded cluster's rows and system. Before, restore refused it (exit 1),
// as wal-fetch refused the file and PostgreSQL stopped with FATAL when it
// promoted. hoard verify --full notes the file on the newest backup, not
// as a problem.
func (s *site) wantPromotes(t *testing.T, u upgraded, newBackup string) {
	t.Helper()
	dir := filepath.Join(pgtest.TempDir(t), "named")
	_, errOut, err := s.hoard("restore", "--target-dir", dir, "--basebackup", newBackup)
	if err != nil {
		t.Fatalf("restore --basebackup %s, the upgraded cluster's, in the old prefix: %v\n%s", newBackup, err, errOut)
	}
	wantRestored(t, dir, "restore of the upgraded cluster's backup in the old prefix", tableRows(t, u.nc), u.sysNew)
	if tli, err := archive.ClusterTimeline(dir); err != nil || tli != 2 {
		t.Errorf("restored upgraded cluster after its promotion: timeline %d (%v), want 2", tli, err)
	}
	// verify --full follows the same rule: a note on the newest backup,
	// not a problem (before: "archive: timeline history ... refused").
	out, errOut, _ := s.hoard("verify", "--full")
	if !strings.Contains(out, "note: timeline history: "+s.name+"/timeline/00000002.history") ||
		strings.Contains(out, "archive: timeline history") {
		t.Errorf("hoard verify --full does not note the old system's history file, or names it as a problem:\n%s\n%s", out, errOut)
	}
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

// oldRows are the old cluster's rows when it was upgraded; oldRowsAtTime
// those at upgraded.beforeUpgrade.
const (
	oldRows       = "4: 1,2,3,4"
	oldRowsAtTime = "3: 1,2,3"
)

// upgraded is a site after upgradeInSameSite.
type upgraded struct {
	old, nc        *pgtest.Cluster
	sysOld, sysNew uint64
	// beforeUpgrade is a --target-time after the old cluster's row 3
	// and before its row 4 (oldRowsAtTime), both on its timeline 2.
	beforeUpgrade string
}

// upgradeInSameSite backs up a cluster into site a, promotes it in place
// to timeline 2 (its 00000002.history stored, bound to its system in a
// site with keys), runs Debian's pg_upgrade 15 to 15 of it, and starts
// the upgraded cluster (a new system identifier, timeline 1, the old
// rows, oldRows) archiving into the same prefix, with one more row (10)
// archived.
func upgradeInSameSite(t *testing.T, a *site) upgraded {
	t.Helper()
	old := pgtest.Start(t, pgtest.Options{Debian: true, Conf: a.clusterConf()})
	a.use(old)
	old.Exec(t, "create table t (id int primary key)")
	old.Exec(t, "insert into t values (1)")
	a.mustHoard("basebackup", "--fast")
	old.Exec(t, "insert into t values (2)")
	switchAndWaitArchived(t, old)
	a.promoteInPlace(t, old, a.restoreCommand())
	old.Exec(t, "insert into t values (3)")
	at := clusterTime(t, old)
	old.Exec(t, "insert into t values (4)") // a commit after the target, for recovery to stop at
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
	if got := tableRows(t, nc); got != oldRows {
		t.Fatalf("upgraded cluster: rows %q, want %q", got, oldRows)
	}
	nc.Exec(t, "insert into t values (10)")
	switchAndWaitArchived(t, nc) // its timeline 1 WAL continues past the old cluster's
	return upgraded{old: old, nc: nc, sysOld: sysOld, sysNew: sysNew, beforeUpgrade: at}
}

// wantNoSwitchToOld takes a backup of the upgraded cluster into the old
// prefix and checks that restore's automatic choice does not restore the
// old cluster: to the latest timeline, with unrecoverable "" (the old
// cluster's 00000002.history bound to or claiming its system, absent to
// the upgraded cluster's recovery), it restores the upgraded cluster's
// backup, whose rows and system come back; otherwise it exits 1 writing
// nothing, naming both systems, pg_upgrade, the old cluster's backup to
// name, and unrecoverable (what it says of the upgraded cluster's backups
// here). To a time before the upgrade it restores the old cluster at
// that time (only its backups reach it). Before, the latest restore
// exited 0 and brought back the old cluster's rows and system. It returns
// the old cluster's backup and the upgraded cluster's.
func (u upgraded) wantNoSwitchToOld(t *testing.T, a *site, unrecoverable string) (oldBackup, newBackup string) {
	t.Helper()
	a.mustHoard("basebackup", "--fast")
	for _, b := range a.listBackups() {
		switch b.SystemID {
		case strconv.FormatUint(u.sysOld, 10):
			oldBackup = b.Name
		case strconv.FormatUint(u.sysNew, 10):
			newBackup = b.Name
		}
	}
	if oldBackup == "" || newBackup == "" {
		t.Fatalf("backups: old cluster's %q, upgraded cluster's %q; want one of each", oldBackup, newBackup)
	}

	dir := filepath.Join(pgtest.TempDir(t), "latest")
	if unrecoverable == "" {
		_, errOut, err := a.hoard("restore", "--target-dir", dir)
		if err != nil || !strings.Contains(errOut, "backup="+newBackup) {
			t.Fatalf("restore (latest) after pg_upgrade into the same site: %v; want the upgraded cluster's backup %s\n%s", err, newBackup, errOut)
		}
		wantRestored(t, dir, "restore (latest) of the upgraded cluster in the old prefix", tableRows(t, u.nc), u.sysNew)
	} else {
		u.wantLatestRefused(t, a, dir, oldBackup, newBackup, unrecoverable)
	}

	dir = filepath.Join(pgtest.TempDir(t), "before-upgrade")
	_, errOut, err := a.hoard("restore", "--target-dir", dir, "--target-time", u.beforeUpgrade)
	if err != nil {
		t.Fatalf("restore to a time before the upgrade: %v\n%s", err, errOut)
	}
	if !strings.Contains(errOut, "backup="+oldBackup) || !strings.Contains(errOut, "restoring one of another system") {
		t.Errorf("restore to a time before the upgrade: want the old cluster's backup %s, with the warning:\n%s", oldBackup, errOut)
	}
	wantRestored(t, dir, "restore to a time before the upgrade", oldRowsAtTime, u.sysOld)
	return oldBackup, newBackup
}

// wantLatestRefused checks that restore's automatic choice to the latest
// timeline into dir exits 1 writing nothing, naming both systems,
// pg_upgrade, the old cluster's backup to name, and unrecoverable.
func (u upgraded) wantLatestRefused(t *testing.T, a *site, dir, oldBackup, newBackup, unrecoverable string) {
	t.Helper()
	out, errOut, err := a.hoard("restore", "--target-dir", dir)
	if code := exitCode(err); code != 1 {
		t.Errorf("restore (latest) after pg_upgrade into the same site: exit %d, want 1\n%s", code, out)
	}
	for _, w := range []string{"would restore backup " + oldBackup, strconv.FormatUint(u.sysOld, 10), "the newest backup, " + newBackup,
		strconv.FormatUint(u.sysNew, 10), "pg_upgrade", "--basebackup " + oldBackup, unrecoverable, "backup_sites.<site>.prefix"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("restore's refusal does not say %q:\n%s", w, errOut)
		}
	}
	if names := testio.DirNames(t, filepath.Dir(dir)); len(names) != 0 {
		t.Errorf("refused restore left %v", names)
	}
}

// wantRestored starts PostgreSQL 15 on dir, a restored data directory,
// waits for its recovery to end and checks its rows and system identifier
// against the cluster it should be (the independent oracle), then stops it.
func wantRestored(t *testing.T, dir, what, rows string, system uint64) {
	t.Helper()
	c := pgtest.StartDataDir(t, 15, dir, noArchiving)
	c.WaitRecoveryDone(t, 3*time.Minute)
	if got := tableRows(t, c); got != rows {
		t.Errorf("%s: rows %q, want %q", what, got, rows)
	}
	if sys, err := archive.ClusterSystemID(dir); err != nil || sys != system {
		t.Errorf("%s: system %d (%v), want %d", what, sys, err, system)
	}
	c.Stop(t)
}
