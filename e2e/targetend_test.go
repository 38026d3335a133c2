package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestRestoreTargetEnd: what PostgreSQL does at a recovery target, and
// where it never reaches one, on each major under test (one source cluster
// each), and that restore's summary says so.
//
//   - --target-xid of a subtransaction (a row's xmin after a SAVEPOINT):
//     recovery matches only top-level commits and aborts, so it would
//     replay the whole archive and stop with FATAL: restore refuses it
//     (exit 2) before writing anything, naming the top-level xid, which
//     restores.
//   - --target-time an hour ahead of the clock: restored (the archive may
//     still grow), with a warning in the summary; not for a standby. The
//     archive ends first: recovery stops with "FATAL: recovery ended
//     before configured recovery target was reached" without promoting
//     (on 13 pg_ctl -w may report the server started first); the
//     summary's way out, the target set to the empty string and the
//     server started again, promotes at the end of the archive.
//   - --standby with a target: PostgreSQL applies recovery_target_action
//     in standby mode too. With pause (hoard's default for a standby) it
//     waits in recovery at the target and promotes once resumed; with
//     promote it promotes there. So a standby with a target stops being a
//     standby at it, and restore checks what promotion asks for. With
//     shutdown it shuts down there, and at each later start.
func TestRestoreTargetEnd(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, major int) {
		s := newSite(t, siteOptions{})
		src := pgtest.Start(t, pgtest.Options{Major: major, Conf: s.clusterConf()})
		s.use(src)
		src.Exec(t, "create table t (id int primary key)")
		src.Exec(t, "insert into t values (1)")
		s.mustHoard("basebackup", "--fast")
		src.Exec(t, "insert into t values (2)")
		lsn := src.QueryString(t, "select pg_current_wal_insert_lsn()::text")
		atLSN := tableRows(t, src)

		ctx := context.Background()
		conn := src.Connect(t, "postgres")
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var sub uint64
		for _, q := range []string{"insert into t values (3)", "savepoint a"} {
			if _, err := tx.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.QueryRow(ctx, "insert into t values (4) returning xmin::text::bigint").Scan(&sub); err != nil {
			t.Fatal(err)
		}
		var top uint64
		if err := tx.QueryRow(ctx, "select pg_current_xact_id()::text::bigint").Scan(&top); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		atTop := tableRows(t, src)
		src.Exec(t, "insert into t values (5)")
		atEnd := tableRows(t, src)
		switchAndWaitArchived(t, src)

		restore := func(args ...string) (dir, out string) {
			t.Helper()
			dir = filepath.Join(pgtest.TempDir(t), "data")
			out = s.mustHoard(append([]string{"restore", "--target-dir", dir}, args...)...)
			return dir, out
		}
		t.Run("SubtransactionXID", func(t *testing.T) {
			x := strconv.FormatUint(sub, 10)
			dir := filepath.Join(pgtest.TempDir(t), "data")
			_, errOut, err := s.hoard("restore", "--target-dir", dir, "--target-xid", x)
			want := "--target-xid " + strconv.FormatUint(top, 10)
			if exitCode(err) != 2 || !strings.Contains(errOut, "subtransaction of transaction") || !strings.Contains(errOut, want) {
				t.Fatalf("restore --target-xid %s (a subtransaction of %d): exit %d, want 2 naming %q\n%s", x, top, exitCode(err), want, errOut)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("refused restore left %s (stat: %v)", dir, err)
			}
			dir, _ = restore("--target-xid", strconv.FormatUint(top, 10))
			c := pgtest.StartDataDir(t, major, dir, noArchiving)
			c.WaitRecoveryDone(t, 3*time.Minute)
			if got := tableRows(t, c); got != atTop {
				t.Errorf("restored to the top-level xid %d: rows %q, want %q", top, got, atTop)
			}
		})
		t.Run("FutureTime", func(t *testing.T) {
			// An operator's clock ahead, or a wrong zone: a legitimate
			// target for an archive still growing, so not refused, but
			// a primary's recovery ends at the end of the archive first.
			future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
			dir, out := restore("--target-time", future)
			for _, w := range []string{"TARGET IN THE FUTURE", "after this host's clock", "--standby"} {
				if !strings.Contains(out, w) {
					t.Errorf("summary of restore --target-time %s (an hour ahead) does not say %q:\n%s", future, w, out)
				}
			}
			for _, w := range []string{"FATAL: recovery ended", "recovery_target_time = ''"} {
				if !strings.Contains(out, w) {
					t.Errorf("summary of restore --target-time %s does not say %q:\n%s", future, w, out)
				}
			}
			// The archive ends first: PostgreSQL stops with FATAL, and
			// the summary's way out promotes at the end of the archive.
			c, err := pgtest.TryStartDataDir(t, major, dir, noArchiving)
			if c == nil {
				t.Fatalf("start: %v", err)
			}
			deadline := time.Now().Add(2 * time.Minute)
			for c.Running() && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			log := c.Log()
			if c.Running() || !strings.Contains(log, "FATAL:  recovery ended before configured recovery target was reached") || strings.Contains(log, "selected new timeline ID") {
				t.Fatalf("recovery to time %s: running %v, want stopped with FATAL and not promoted\n%s", future, c.Running(), tailLines(log, 30))
			}
			conf := filepath.Join(dir, "postgresql.auto.conf")
			b, err := os.ReadFile(conf)
			if err != nil {
				t.Fatal(err)
			}
			re := regexp.MustCompile(`(?m)^recovery_target_time = '[^']*'$`)
			if !re.Match(b) {
				t.Fatalf("no recovery_target_time in %s:\n%s", conf, b)
			}
			if err := os.WriteFile(conf, re.ReplaceAll(b, []byte("recovery_target_time = ''")), 0o600); err != nil {
				t.Fatal(err)
			}
			c.Start(t)
			c.WaitRecoveryDone(t, 3*time.Minute)
			if got := tableRows(t, c); got != atEnd {
				t.Errorf("started again without the target: rows %q, want %q (the end of the archive)", got, atEnd)
			}
			c.Stop(t)
			_, out = restore("--target-time", future, "--standby")
			if strings.Contains(out, "TARGET IN THE FUTURE") {
				t.Errorf("summary of restore --standby --target-time %s warns, though a standby waits for the time:\n%s", future, out)
			}
		})
		t.Run("StandbyPause", func(t *testing.T) {
			dir, out := restore("--standby", "--target-lsn", lsn)
			if !strings.Contains(out, "pg_wal_replay_resume() or pg_ctl promote then promotes it") {
				t.Errorf("summary of restore --standby --target-lsn does not say that resuming promotes:\n%s", out)
			}
			c := pgtest.StartDataDir(t, major, dir, noArchiving)
			c.WaitTrue(t, 3*time.Minute, "select pg_is_wal_replay_paused()")
			if got := tableRows(t, c); got != atLSN {
				t.Errorf("paused at LSN %s: rows %q, want %q", lsn, got, atLSN)
			}
			c.Exec(t, "select pg_wal_replay_resume()")
			c.WaitRecoveryDone(t, 3*time.Minute)
			if got := tableRows(t, c); got != atLSN {
				t.Errorf("resumed at LSN %s: rows %q, want %q", lsn, got, atLSN)
			}
		})
		t.Run("StandbyShutdown", func(t *testing.T) {
			dir, out := restore("--standby", "--target-lsn", lsn, "--target-action", "shutdown")
			if !strings.Contains(out, "shuts down there again") {
				t.Errorf("summary of restore --standby --target-action shutdown does not say a start shuts down again:\n%s", out)
			}
			for i := 1; i <= 2; i++ {
				c, err := pgtest.TryStartDataDir(t, major, dir, noArchiving)
				if c == nil {
					t.Fatalf("start %d: %v", i, err)
				}
				deadline := time.Now().Add(2 * time.Minute)
				for c.Running() && time.Now().Before(deadline) {
					time.Sleep(100 * time.Millisecond)
				}
				// Each start logs to its own file.
				if n := strings.Count(c.Log(), "shutdown at recovery target"); c.Running() || n != 1 {
					t.Fatalf("start %d: running %v, %d shutdowns at the target in its log, want stopped and 1\n%s", i, c.Running(), n, tailLines(c.Log(), 20))
				}
			}
		})
		t.Run("StandbyPromote", func(t *testing.T) {
			dir, out := restore("--standby", "--target-lsn", lsn, "--target-action", "promote")
			if !strings.Contains(out, "a standby too") {
				t.Errorf("summary of restore --standby --target-action promote does not say it promotes:\n%s", out)
			}
			// Promoted with the source's archive_mode = on, it would
			// archive its new timeline into the source's site.
			if !strings.Contains(out, "Archiving is on (archive_mode = on") {
				t.Errorf("summary of restore --standby --target-action promote does not say the promoted copy archives:\n%s", out)
			}
			c := pgtest.StartDataDir(t, major, dir, noArchiving)
			c.WaitRecoveryDone(t, 3*time.Minute)
			if got := tableRows(t, c); got != atLSN {
				t.Errorf("promoted at LSN %s: rows %q, want %q", lsn, got, atLSN)
			}
		})
	})
}
