package basebackup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestScanner_Scan_SymlinkedRoot lists a data directory named through a
// symbolic link (pg_data_directory /var/lib/pgsql/data linked to another
// disk), as PostgreSQL itself follows it.
func TestScanner_Scan_SymlinkedRoot(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "PG_VERSION"), []byte("15\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "data")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	sc := &scanner{}
	roots := []*root{{dir: link, prefix: "pgdata/", main: true}}
	if err := sc.scan(roots); err != nil {
		t.Fatalf("scan: %v", err)
	}
	defer closeRoots(roots)
	if len(sc.entries) != 1 || sc.entries[0].rel != "PG_VERSION" {
		t.Fatalf("scan = %+v, want PG_VERSION", sc.entries)
	}
	// Read beneath the root's link too.
	data, err := readEmbedded(&sc.entries[0])
	if err != nil || string(data) != "15\n" {
		t.Errorf("read PG_VERSION = %q, %v; want 15", data, err)
	}
}

// TestScanner_Scan_ErrDirSwapped replaces base/5 with a symbolic link to
// a directory outside the data directory after the scan found it a
// directory and before it lists it: the scan fails naming it, instead of
// listing (and the backup then storing) the other directory's files.
func TestScanner_Scan_ErrDirSwapped(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "base", "5"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "base", "5", "f"), []byte("a"), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := secretDir(t, "secret")
	swapped := filepath.Join(dir, "base", "5")
	sc := &scanner{beforeDir: func(r *root, rel string) {
		if rel != "base/5" {
			return
		}
		if err := os.Rename(swapped, filepath.Join(dir, "moved")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(secret, swapped); err != nil {
			t.Fatal(err)
		}
	}}
	roots := []*root{{dir: dir, prefix: "pgdata/", main: true}}
	err := sc.scan(roots)
	closeRoots(roots)
	for _, e := range sc.entries {
		if strings.Contains(e.rel, "secret") {
			t.Errorf("the scan listed %s, in the link's target", e.rel)
		}
	}
	if err == nil || !strings.Contains(err.Error(), swapped) || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("scan = %v, want an error naming %s and the link", err, swapped)
	}
}

// TestScanner_Scan_ErrRootFifo lists a tablespace location that is a
// named pipe (its pg_tblspc link may name anything): the scan fails at
// once instead of waiting for a writer.
func TestScanner_Scan_ErrRootFifo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spc")
	fifo(t, path)
	done := make(chan error, 1)
	roots := []*root{{dir: path, prefix: "tablespaces/spc/", only: "PG_18_1"}}
	go func() { done <- (&scanner{}).scan(roots) }()
	select {
	case err := <-done:
		closeRoots(roots)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("scan = %v, want an error naming %s", err, path)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("scan still blocked after 10s")
	}
}
