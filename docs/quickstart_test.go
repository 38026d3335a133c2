package docs_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hoardbackup/hoard/internal/testio"
)

// TestQuickstart runs the README's quick start
// (scripts/quickstart-check.sh) with a freshly built hoard first on PATH:
// the commands as written, but for /var/lib/hoard, the restored
// cluster's port 5433 and the default http_port, which the check replaces
// with a temporary directory and free ports, so that it runs beside a
// hoard installed on this machine, its daemon and other clusters.
func TestQuickstart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds hoard and runs PostgreSQL")
	}
	pgBin := os.Getenv("PG_BIN")
	if pgBin == "" {
		pgBin = "/usr/lib/postgresql/15/bin"
	}
	missing := ""
	switch {
	case os.Geteuid() != 0:
		missing = "root (the quick start runs as postgres)"
	case !exists(filepath.Join(pgBin, "initdb")):
		missing = "PostgreSQL binaries in " + pgBin
	case !exists("/var/run/postgresql"):
		missing = "/var/run/postgresql"
	}
	if _, err := exec.LookPath("runuser"); err != nil && missing == "" {
		missing = "runuser"
	}
	if missing != "" {
		testio.Unavailable(t, "quick start check needs %s", missing)
	}

	// The postgres user runs the binary: a directory it can enter, not
	// t.TempDir's private one.
	bin, err := os.MkdirTemp("", "hoard-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(bin) })
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "hoard"), ".")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	cmd := exec.Command("bash", "scripts/quickstart-check.sh")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "PG_BIN="+pgBin)
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("quickstart-check.sh: %v", err)
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
