package restore

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWALFetchCommand(t *testing.T) {
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	got, err := WALFetchCommand("", "default")
	if err != nil || got != ShellQuote(exe)+" --site default wal-fetch %f %p" {
		t.Errorf("env-only: %q, %v", got, err)
	}
	dir := t.TempDir()
	t.Chdir(dir)
	got, err = WALFetchCommand("my hoard.json", "s1")
	want := ShellQuote(exe) + " --config '" + filepath.Join(dir, "my hoard.json") + "' --site s1 wal-fetch %f %p"
	if err != nil || got != want {
		t.Errorf("with config: %q, want %q (%v)", got, want, err)
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/bin/hoard": "/usr/bin/hoard",
		"/a b/hoard":     "'/a b/hoard'",
		"it's":           `'it'\''s'`,
	} {
		if got := ShellQuote(in); got != want {
			t.Errorf("ShellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
