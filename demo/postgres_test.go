package demo

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeBin writes initdb, pg_ctl and a postgres whose --version prints
// version into a new directory.
func fakeBin(t *testing.T, version string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"initdb", "pg_ctl"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script := "#!/bin/sh\necho 'postgres (PostgreSQL) " + version + "'\n"
	if err := os.WriteFile(filepath.Join(dir, "postgres"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestFindPGBin_OK(t *testing.T) {
	dir := fakeBin(t, "16.4 (Debian 16.4-1.pgdg120+2)")
	b, err := FindPGBin(dir, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if b.Dir != dir || b.Version != "16.4" || b.Major != 16 || b.From != "--pg-bin" {
		t.Errorf("FindPGBin = %+v", b)
	}
}

func TestFindPGBin_ErrMissing(t *testing.T) {
	dir := t.TempDir()
	_, err := FindPGBin(dir, t.TempDir())
	if !errors.Is(err, ErrNoPostgreSQL) {
		t.Fatalf("FindPGBin of an empty directory: %v", err)
	}
	// The message names what is missing and where it was looked for.
	for _, want := range []string{"initdb", dir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestFindPGBin_ErrTooOld(t *testing.T) {
	_, err := FindPGBin(fakeBin(t, "12.20"), t.TempDir())
	if !errors.Is(err, ErrNoPostgreSQL) || !strings.Contains(err.Error(), "13 or later") {
		t.Errorf("FindPGBin of PostgreSQL 12: %v", err)
	}
}
