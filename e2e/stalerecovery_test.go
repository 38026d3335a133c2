package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestRestore_StaleRecoverySettings: a cluster restored once to a target
// keeps that restore's recovery settings in its postgresql.auto.conf
// (PostgreSQL never removes them), and the first ALTER SYSTEM rewrites the
// file without hoard's markers around them; its backups carry them. A
// restore of such a backup must recover to what its own flags ask for:
// to the end of the archive, not to the stale recovery_target =
// 'immediate' (which would promote at the backup's end, silently without
// every transaction after it); to --target-xid inclusive by default, not
// with the stale recovery_target_inclusive = off; a standby pauses at its
// target, not the stale recovery_target_action = 'promote'; and a standby
// without a target, whose primary_conninfo (with a password) comes from
// --primary-conninfo-file, HOARD_PRIMARY_CONNINFO_FILE or
// HOARD_PRIMARY_CONNINFO, has it in postgresql.auto.conf, never shows the
// password, replays the archive and streams from the primary.
func TestRestore_StaleRecoverySettings(t *testing.T) {
	pgtest.ForEachVersion(t, testRestoreStaleRecoverySettings)
}

func testRestoreStaleRecoverySettings(t *testing.T, major int) {
	s := newSite(t, siteOptions{})
	src := pgtest.Start(t, pgtest.Options{Major: major, Conf: s.clusterConf()})
	s.use(src)
	// What a restore with --target-immediate leaves once ALTER SYSTEM
	// has rewritten postgresql.auto.conf: a primary ignores them.
	for _, set := range []string{
		"recovery_target = 'immediate'",
		"recovery_target_action = 'promote'",
		"recovery_target_inclusive = off",
	} {
		src.Exec(t, "alter system set "+set)
	}
	src.Exec(t, "create table t (id int primary key)")
	src.Exec(t, "insert into t values (1)")
	s.mustHoard("basebackup", "--fast")
	src.Exec(t, "insert into t values (2)")
	xid := src.QueryString(t, "with ins as (insert into t values (3)) select txid_current()::text")
	withXID := tableRows(t, src)
	lsn := src.QueryString(t, "select pg_current_wal_lsn()::text")
	src.Exec(t, "insert into t values (4)")
	all := tableRows(t, src)
	switchAndWaitArchived(t, src)

	restore := func(t *testing.T, args ...string) string {
		t.Helper()
		dir := filepath.Join(pgtest.TempDir(t), "data")
		s.mustHoard(append([]string{"restore", "--target-dir", dir}, args...)...)
		return dir
	}
	t.Run("End", func(t *testing.T) {
		c := pgtest.StartDataDir(t, major, restore(t), noArchiving)
		c.WaitRecoveryDone(t, 3*time.Minute)
		if got := tableRows(t, c); got != all {
			t.Errorf("restored to the end of the archive: rows %q, want %q (recovery stopped at the stale target)", got, all)
		}
		c.Stop(t)
	})
	t.Run("XIDInclusive", func(t *testing.T) {
		c := pgtest.StartDataDir(t, major, restore(t, "--target-xid", xid), noArchiving)
		c.WaitRecoveryDone(t, 3*time.Minute)
		if got := tableRows(t, c); got != withXID {
			t.Errorf("restored to xid %s: rows %q, want %q (its transaction included)", xid, got, withXID)
		}
		c.Stop(t)
	})
	t.Run("StandbyPauses", func(t *testing.T) {
		c := pgtest.StartDataDir(t, major, restore(t, "--standby", "--target-lsn", lsn), noArchiving)
		if got := waitRecoveryStop(t, c, 3*time.Minute); got != "pause" {
			t.Fatalf("standby restored to LSN %s: recovery ended in %s at the target, want pause", lsn, got)
		}
		if got := tableRows(t, c); got != withXID {
			t.Errorf("standby restored to LSN %s: rows %q, want %q", lsn, got, withXID)
		}
		c.Stop(t)
	})
	t.Run("StandbyStreams", func(t *testing.T) {
		// A standby without a target, its primary_conninfo (holding a
		// password) from a file, the variable naming a file, or the
		// variable itself: postgresql.auto.conf holds it as written, the
		// output never shows the password, and the standby restored from
		// the file replays the archive to its end (not to the stale
		// recovery_target = 'immediate') and then streams from src.
		const password = "e2e-s3cret-pw"
		conninfo := src.ConnString("postgres") + " application_name=hoard_e2e_standby password=" + password
		file := filepath.Join(s.dir, "conninfo")
		s.writeFile(file, []byte(conninfo+"\n"))
		var dirs []string
		for _, way := range []struct {
			env  string
			args []string
		}{
			{"", []string{"--primary-conninfo-file", file}},
			{"HOARD_PRIMARY_CONNINFO_FILE=" + file, nil},
			{"HOARD_PRIMARY_CONNINFO=" + conninfo, nil},
		} {
			dir := filepath.Join(pgtest.TempDir(t), "data")
			args := append([]string{"restore", "--target-dir", dir, "--standby"}, way.args...)
			cmd := s.command(args...)
			if way.env != "" {
				cmd.Env = append(cmd.Env, way.env)
			}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("hoard %s (%s): %v\n%s", strings.Join(args, " "), way.env, err, stderr.String())
			}
			if out := stdout.String() + stderr.String(); strings.Contains(out, password) {
				t.Errorf("hoard %s (%s): the output shows the password:\n%s", strings.Join(args, " "), way.env, out)
			}
			auto, err := os.ReadFile(filepath.Join(dir, "postgresql.auto.conf"))
			if err != nil {
				t.Fatal(err)
			}
			if want := "primary_conninfo = '" + conninfo + "'"; !strings.Contains(string(auto), want) {
				t.Errorf("hoard %s (%s): postgresql.auto.conf has no %s:\n%s", strings.Join(args, " "), way.env, want, auto)
			}
			dirs = append(dirs, dir)
		}
		c := pgtest.StartDataDir(t, major, dirs[0], noArchiving)
		c.WaitTrue(t, 3*time.Minute, "select exists (select from pg_stat_wal_receiver where status = 'streaming')")
		src.WaitTrue(t, time.Minute, "select exists (select from pg_stat_replication where application_name = 'hoard_e2e_standby')")
		src.Exec(t, "insert into t values (5)")
		waitReplayed(t, src, c)
		if got, want := tableRows(t, c), tableRows(t, src); got != want {
			t.Errorf("standby streaming from src: rows %q, want %q", got, want)
		}
		c.Stop(t)
	})
}

// waitRecoveryStop waits until c's log says recovery paused, promoted or
// shut down at its target, and returns which: "pause", "promote" or
// "shutdown".
func waitRecoveryStop(t *testing.T, c *pgtest.Cluster, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		log := c.Log()
		switch {
		case strings.Contains(log, "pausing at the end of recovery"):
			return "pause"
		case strings.Contains(log, "selected new timeline ID"):
			return "promote"
		case strings.Contains(log, "shutdown at recovery target"):
			return "shutdown"
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("recovery neither paused, promoted nor shut down within %v:\n%s", timeout, tailLines(c.Log(), 40))
	return ""
}

// TestRestore_StaleApplyDelay: a backup of a delayed standby carries its
// recovery_min_apply_delay, which PostgreSQL honours in any archive
// recovery, not only a standby's: a restore of it as a primary to the end
// of the archive would hold back each commit until it is that old, and
// promote only then. Restored as a primary, it replays and promotes at
// once.
func TestRestore_StaleApplyDelay(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, major int) {
		s := newSite(t, siteOptions{})
		src := pgtest.Start(t, pgtest.Options{Major: major, Conf: s.clusterConf()})
		s.use(src)
		src.Exec(t, "alter system set recovery_min_apply_delay = '1h'")
		src.Exec(t, "create table t (id int primary key)")
		src.Exec(t, "insert into t values (1)")
		s.mustHoard("basebackup", "--fast")
		src.Exec(t, "insert into t values (2)")
		all := tableRows(t, src)
		switchAndWaitArchived(t, src)

		dir := filepath.Join(pgtest.TempDir(t), "data")
		s.mustHoard("restore", "--target-dir", dir)
		c := pgtest.StartDataDir(t, major, dir, noArchiving)
		c.WaitRecoveryDone(t, 3*time.Minute)
		if got := tableRows(t, c); got != all {
			t.Errorf("restored to the end of the archive: rows %q, want %q", got, all)
		}
		c.Stop(t)
	})
}
