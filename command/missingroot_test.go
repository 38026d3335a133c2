package command

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// localSiteConfig writes, in a fresh directory, a configuration whose one
// site stores under its subdirectory store, and returns the file and that
// directory; HOARD_CONFIG and friends are unset for the test.
func localSiteConfig(t *testing.T, store string) (cfg, dir string) {
	t.Helper()
	for _, k := range []string{"HOARD_CONFIG", "PGHOARD_CONFIG", "HOARD_SITE"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	dir = t.TempDir()
	cfg = filepath.Join(dir, "hoard.json")
	body := `{"backup_location": "` + dir + `", "backup_sites": {"default": {"object_storage": {"storage_type": "local", "directory": "` + filepath.Join(dir, store) + `"}}}}`
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg, dir
}

// runLogged runs the app with args and returns its error message, exit
// code and log.
func runLogged(args ...string) (msg string, code int, log string) {
	app := App("test")
	var errOut bytes.Buffer
	app.Writer, app.ErrWriter = io.Discard, &errOut
	app.Before = func(c *cli.Context) error { // the log to errOut, not os.Stderr
		l, err := newLogger(&errOut, "info", c.String("log-format"), false)
		c.App.Metadata = map[string]any{"logger": l}
		return err
	}
	if err := app.RunContext(context.Background(), OrderArgs(app, append([]string{"hoard"}, args...))); err != nil {
		return ErrorMessage(err), ExitCode(err), errOut.String()
	}
	return "", ExitOK, errOut.String()
}

// TestMissingRoot: restore, list and verify of a site whose local
// directory does not exist (a typo in the configuration) name that
// directory and the key to check, where restore said only "no
// basebackups"; a directory that exists but holds no backup keeps
// restore's hint to list the backups.
func TestMissingRoot(t *testing.T) {
	t.Run("ErrRestoreMissing", func(t *testing.T) {
		cfg, dir := localSiteConfig(t, "bakcups")
		msg, code, _ := runLogged("--config", cfg, "restore", "--target-dir", filepath.Join(dir, "pgdata"))
		want := "the local storage directory " + filepath.Join(dir, "bakcups") + " does not exist: check object_storage.directory"
		if code != ExitUsage || !strings.Contains(msg, want) {
			t.Errorf("restore = exit %d, %q; want exit %d naming %q", code, msg, ExitUsage, want)
		}
	})
	t.Run("ErrRestoreEmpty", func(t *testing.T) {
		cfg, dir := localSiteConfig(t, "backups")
		if err := os.Mkdir(filepath.Join(dir, "backups"), 0o700); err != nil {
			t.Fatal(err)
		}
		msg, code, _ := runLogged("--config", cfg, "restore", "--target-dir", filepath.Join(dir, "pgdata"))
		if code != ExitUsage || !strings.Contains(msg, "see the backups with hoard list") || strings.Contains(msg, "does not exist") {
			t.Errorf("restore = exit %d, %q; want exit %d with the hoard list hint", code, msg, ExitUsage)
		}
	})
	for _, cmd := range []string{"list", "verify"} {
		t.Run(cmd, func(t *testing.T) {
			cfg, dir := localSiteConfig(t, "bakcups")
			if _, _, log := runLogged("--config", cfg, cmd); !strings.Contains(log, filepath.Join(dir, "bakcups")+" does not exist") {
				t.Errorf("hoard %s logged %q, want a warning naming the directory", cmd, log)
			}
		})
	}
}
