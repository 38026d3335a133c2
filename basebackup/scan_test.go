package basebackup

import (
	"os"
	"path/filepath"
	"testing"
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
	if err := sc.scan([]*root{{dir: link, prefix: "pgdata/", main: true}}); err != nil {
		t.Fatalf("scan: %v", err)
	}
	if len(sc.entries) != 1 || sc.entries[0].rel != "PG_VERSION" {
		t.Errorf("scan = %+v, want PG_VERSION", sc.entries)
	}
}
