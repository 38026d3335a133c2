package command

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadConfig_File: a configuration file hoard cannot use (missing,
// not readable by the user hoard runs as, a directory, empty) is a usage
// error (exit 2) that names the file (its absolute path, and how it was
// given: --config or HOARD_CONFIG), says what is wrong with it and what to
// do, and says where hoard looks for one (--config, HOARD_CONFIG,
// PGHOARD_CONFIG; no default path).
func TestLoadConfig_File(t *testing.T) {
	dir := t.TempDir()
	// Every user may look into dir (and the test's directory above it):
	// only a file's own mode refuses.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	missing := filepath.Join(dir, "missing.json")
	unreadable := filepath.Join(dir, "unreadable.json")
	if err := os.WriteFile(unreadable, []byte(`{}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(unreadable, 0); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.json")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	blank := filepath.Join(dir, "blank.json")
	if err := os.WriteFile(blank, []byte(" \n\t\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	where := []string{"--config", "HOARD_CONFIG", "PGHOARD_CONFIG", "no default"}
	for _, tc := range []struct {
		name string
		args []string
		env  string // HOARD_CONFIG
		want []string
	}{
		{"ErrMissing", []string{"--config", missing, "list"}, "",
			append([]string{"configuration file " + missing, "--config", "does not exist"}, where...)},
		{"ErrMissingEnv", []string{"list"}, missing,
			append([]string{"configuration file " + missing, "HOARD_CONFIG=" + missing, "does not exist"}, where...)},
		{"ErrMissingRelative", []string{"--config", "missing.json", "list"}, "",
			append([]string{"configuration file " + missing, "--config missing.json, relative to the working directory " + dir,
				"does not exist"}, where...)},
		{"ErrNotDirectory", []string{"--config", filepath.Join(empty, "hoard.json"), "list"}, "",
			append([]string{"configuration file " + filepath.Join(empty, "hoard.json"), "does not exist", "is a file"}, where...)},
		{"ErrUnreadable", []string{"--config", unreadable, "list"}, "",
			[]string{"configuration file " + unreadable, "permission denied", "cannot read it", "chmod", "chown"}},
		{"ErrDirectory", []string{"--config", dir, "list"}, "",
			[]string{"configuration file " + dir, "is a directory", "give the path of the JSON file"}},
		{"ErrEmpty", []string{"--config", empty, "list"}, "",
			[]string{"configuration file " + empty, "is empty", "docs/configuration.md"}},
		{"ErrBlank", []string{"--config", blank, "list"}, "",
			[]string{"configuration file " + blank, "is empty", "docs/configuration.md"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("HOARD_CONFIG", tc.env)
			t.Chdir(dir)
			var code int
			var msg string
			_ = unprivileged(t, func() error {
				code, msg = runErr(t, tc.args...)
				return nil
			})
			if code != ExitUsage {
				t.Errorf("exit %d, want %d (%s)", code, ExitUsage, msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q:\n%s", w, msg)
				}
			}
		})
	}
}

// archive-copy's --to-config that names a file hoard cannot use (missing,
// empty) is a usage error naming the file as --to-config gave it, saying
// the target's configuration comes from that file alone, not where
// --config's comes from nor that HOARD_* variables could replace it.
func TestArchiveCopy_ErrToConfigFile(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.json")
	js := `{"backup_location": "` + dir + `", "backup_sites": {"s": {"object_storage": {"url": "mem://", "prefix": "a"}}}}`
	if err := os.WriteFile(src, []byte(js), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.json")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.json")
	for _, tc := range []struct {
		to   string
		want string
	}{{missing, "does not exist"}, {empty, "is empty"}} {
		code, msg := runErr(t, "--config", src, "archive-copy", "--to-config", tc.to)
		if code != ExitUsage {
			t.Errorf("--to-config %s: exit %d, want %d (%s)", tc.to, code, ExitUsage, msg)
		}
		for _, w := range []string{"configuration file " + tc.to + " (--to-config " + tc.to + ")", tc.want} {
			if !strings.Contains(msg, w) {
				t.Errorf("message lacks %q:\n%s", w, msg)
			}
		}
		if strings.Contains(msg, "HOARD_CONFIG") || strings.Contains(msg, "give no file") {
			t.Errorf("message speaks of --config's sources:\n%s", msg)
		}
	}
}
