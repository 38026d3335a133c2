package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestCheck runs hoard check against a cluster that archives through
// hoard wal-push: before the first backup (an info line), after one with
// --archive-switch (the switched segment reaches the archive), pointed at
// another cluster (FAILED: the system identifier differs), and with
// archive_command unset (--archive-switch times out with the hint).
func TestCheck(t *testing.T) {
	s := newSite(t, siteOptions{Encrypt: true})
	src := pgtest.Start(t, pgtest.Options{Debian: true, Conf: s.clusterConf()})
	s.use(src)
	// As the quick start says: the storage directory exists first.
	if err := os.Mkdir(s.storeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, s.storeDir)
	check := func(t *testing.T, args ...string) (string, int) {
		t.Helper()
		out, _, err := s.hoard(append([]string{"check"}, args...)...)
		t.Logf("hoard check %s:\n%s", strings.Join(args, " "), out)
		return out, exitCode(err)
	}

	t.Run("OKNoBackup", func(t *testing.T) {
		out, code := check(t)
		if code != 0 {
			t.Errorf("check: exit %d, want 0", code)
		}
		wantCheckLines(t, out, "ok       keys: key e2e-key encrypts and decrypts", "info     archive: no backup yet", "site e2e: nothing failed, 0 warnings")
	})

	s.mustHoard("basebackup", "--fast")
	b := s.listBackups()[0]
	t.Run("OKArchiveSwitch", func(t *testing.T) {
		out, code := check(t, "--archive-switch")
		if code != 0 {
			t.Errorf("check --archive-switch: exit %d, want 0", code)
		}
		wantCheckLines(t, out,
			"ok       postgresql node 0: archive_command runs hoard wal-push",
			"ok       postgresql node 0: same cluster as the newest backup "+b.Name,
			"ok       archive: newest backup "+b.Name,
			"ok       archive: WAL continues from "+b.StartWALSegment,
			"ok       archive switch: segment ",
			"site e2e: nothing failed")
	})

	t.Run("ErrOtherCluster", func(t *testing.T) {
		other := pgtest.Start(t, pgtest.Options{Debian: true})
		s.use(other)
		defer s.use(src)
		out, code := check(t)
		if code != 1 {
			t.Errorf("check of another cluster: exit %d, want 1", code)
		}
		wantCheckLines(t, out, "FAILED   postgresql node 0: system identifier ")
		if !strings.Contains(out, "the one of the newest backup "+b.Name+": this node is another cluster") {
			t.Errorf("the FAILED line does not say the node is another cluster:\n%s", out)
		}
	})

	t.Run("WarnOverdue", func(t *testing.T) {
		s.setSiteKey("basebackup_interval_hours", 0.0001) // 0.36 s
		defer s.setSiteKey("basebackup_interval_hours", nil)
		time.Sleep(time.Second)
		out, code := check(t)
		if code != 0 {
			t.Errorf("check of an overdue backup: exit %d, want 0 (a warning)", code)
		}
		wantCheckLines(t, out, "warning  archive: newest backup "+b.Name+" is ")
		if !strings.Contains(out, "more than basebackup_interval_hours") {
			t.Errorf("the warning does not name basebackup_interval_hours:\n%s", out)
		}
	})

	t.Run("ErrWALGap", func(t *testing.T) {
		switchAndWaitArchived(t, src)
		gap := switchAndWaitArchived(t, src)
		switchAndWaitArchived(t, src)
		obj := filepath.Join(s.storeDir, s.name, "xlog", gap)
		for _, f := range []string{obj, obj + ".metadata"} {
			if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
		}
		out, code := check(t)
		if code != 1 {
			t.Errorf("check with a WAL gap: exit %d, want 1", code)
		}
		wantCheckLines(t, out, "FAILED   archive: WAL after backup "+b.Name+" has gaps ("+gap+")")
	})

	t.Run("ErrArchiveSwitchTimeout", func(t *testing.T) {
		src.Exec(t, "alter system set archive_command = ''")
		src.Exec(t, "select pg_reload_conf()")
		out, code := check(t, "--archive-switch", "--archive-timeout", "3s")
		if code != 1 {
			t.Errorf("check --archive-switch without archive_command: exit %d, want 1", code)
		}
		wantCheckLines(t, out,
			"warning  postgresql node 0: archive_command is not set",
			"FAILED   archive switch: segment ")
		if !strings.Contains(out, "did not reach the archive within 3s") || !strings.Contains(out, "check archive_command") {
			t.Errorf("the archive switch line does not give the hint:\n%s", out)
		}
	})
}

// wantCheckLines fails unless out has a line starting with each of want.
func wantCheckLines(t *testing.T, out string, want ...string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	for _, w := range want {
		found := false
		for _, l := range lines {
			found = found || strings.HasPrefix(l, w)
		}
		if !found {
			t.Errorf("no line starting %q in:\n%s", w, out)
		}
	}
}
