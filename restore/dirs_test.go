package restore

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestCheckEmptyDir(t *testing.T) {
	root := t.TempDir()
	mk := func(name string, files ...string) string {
		d := filepath.Join(root, name)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if err := os.MkdirAll(filepath.Join(d, f), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	for _, d := range []string{filepath.Join(root, "absent"), mk("empty"), mk("mount", "lost+found")} {
		if err := checkEmptyDir(d); err != nil {
			t.Errorf("checkEmptyDir(%s) = %v", d, err)
		}
	}
	for _, d := range []string{mk("full", "base"), mk("mountfull", "lost+found", "PG_VERSION")} {
		if err := checkEmptyDir(d); !errors.Is(err, ErrTargetNotEmpty) {
			t.Errorf("checkEmptyDir(%s) = %v, want ErrTargetNotEmpty", d, err)
		}
	}
}

func TestPrepareDir(t *testing.T) {
	d := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(filepath.Join(d, "lost+found"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "old"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := prepareDir(d, true); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(d)
	if len(ents) != 1 || ents[0].Name() != "lost+found" {
		t.Errorf("after wipe: %v, want only lost+found", ents)
	}
	if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("mode = %v, %v; want 0700", fi.Mode(), err)
	}
}
