package e2e

import (
	"os"
	"strings"
	"testing"

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

	t.Run("OKNoBackup", func(t *testing.T) {
		out, _, err := s.hoard("check")
		if err != nil {
			t.Errorf("check: %v", err)
		}
		wantCheckLines(t, out, "ok       keys: key e2e-key encrypts and decrypts", "info     archive: no backup yet", "site e2e: nothing failed, 0 warnings")
	})

	s.mustHoard("basebackup", "--fast")
	b := s.listBackups()[0]
	t.Run("OKArchiveSwitch", func(t *testing.T) {
		out, _, err := s.hoard("check", "--archive-switch")
		if err != nil {
			t.Errorf("check --archive-switch: %v", err)
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
		out, _, err := s.hoard("check")
		if code := exitCode(err); code != 1 {
			t.Errorf("check of another cluster: exit %d, want 1", code)
		}
		wantCheckLines(t, out, "FAILED   postgresql node 0: system identifier ")
		if !strings.Contains(out, "the one of the newest backup "+b.Name+": this node is another cluster") {
			t.Errorf("the FAILED line does not say the node is another cluster:\n%s", out)
		}
	})

	t.Run("ErrArchiveSwitchTimeout", func(t *testing.T) {
		src.Exec(t, "alter system set archive_command = ''")
		src.Exec(t, "select pg_reload_conf()")
		out, _, err := s.hoard("check", "--archive-switch", "--archive-timeout", "3s")
		if code := exitCode(err); code != 1 {
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
