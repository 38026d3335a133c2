package basebackup

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// openIn returns the files this process holds open in dir (spools are
// unlinked: only their descriptors say they are still there).
func openIn(t *testing.T, dir string) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	var open []string
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, dir+"/") {
			open = append(open, target)
		}
	}
	return open
}

// TestRun_ControlSpooled checks, over BASE_BACKUP and local-tar, that the
// spools of a backup's control object (basebackup_incoming) are gone,
// files and descriptors, once a backup is stored or has failed at its
// control object, and that a backup whose spool cannot be created fails,
// naming the directory, and leaves no object.
func TestRun_ControlSpooled(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[0]})
	c.Exec(t, "create table t as select generate_series(1, 1000) as i")
	for _, mode := range []struct {
		name string
		mode Mode
	}{{"BaseBackup", ModeStream}, {"LocalTar", ModeLocal}} {
		t.Run(mode.name, func(t *testing.T) {
			gone := func(dir, after string) {
				t.Helper()
				left, err := os.ReadDir(dir)
				if err != nil {
					t.Fatal(err)
				}
				if len(left) != 0 {
					t.Errorf("after %s: files left in the spool directory: %v", after, left)
				}
				if open := openIn(t, dir); len(open) != 0 {
					t.Errorf("after %s: spools still open: %v", after, open)
				}
			}
			dir := filepath.Join(t.TempDir(), "basebackup_incoming")
			a := localArchive(t)
			if _, err := Run(testContext(t), Options{ConnString: c.ConnString("postgres"), Archive: a, Mode: mode.mode, PGData: c.DataDir,
				Fast: true, NoWait: true, ChunkSize: 1 << 20, TempDir: dir}); err != nil {
				t.Fatalf("Run: %v", err)
			}
			gone(dir, "a stored backup")

			a = localArchive(t)
			real := a.Store
			a.Store = &lostControlStore{Store: real}
			_, err := Run(testContext(t), Options{ConnString: c.ConnString("postgres"), Archive: a, Mode: mode.mode, PGData: c.DataDir,
				Fast: true, NoWait: true, ChunkSize: 1 << 20, TempDir: dir})
			if !errors.Is(err, errLostResponse) {
				t.Fatalf("Run = %v, want the control object's error", err)
			}
			gone(dir, "a failed backup")

			// A file where the directory should be.
			notDir := filepath.Join(t.TempDir(), "file")
			if err := os.WriteFile(notDir, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			a = localArchive(t)
			_, err = Run(testContext(t), Options{ConnString: c.ConnString("postgres"), Archive: a, Mode: mode.mode, PGData: c.DataDir,
				Fast: true, NoWait: true, ChunkSize: 1 << 20, TempDir: notDir})
			if err == nil || !strings.Contains(err.Error(), "spooled in "+notDir) {
				t.Fatalf("Run with a spool directory that is a file = %v, want an error naming it", err)
			}
			noObjectsLeft(t, a.Store, "a backup that could not spool its control object")
		})
	}
}
