package docs_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
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

	log := filepath.Join(t.TempDir(), "quickstart.log")
	cmd := exec.Command("bash", "scripts/quickstart-check.sh")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "PG_BIN="+pgBin, "QUICKSTART_LOG="+log)
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("quickstart-check.sh: %v", err)
	}

	// quickstart.md's example of hoard check's output is what check
	// printed in the quick start just run: each line of it (but "...")
	// has the shape of a line printed, paths and numbers aside.
	got, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	printed := map[string]bool{}
	for _, l := range strings.Split(string(got), "\n") {
		printed[checkLineShape(l)] = true
	}
	for _, l := range quickstartCheckExample(t) {
		if l != "..." && !printed[checkLineShape(l)] {
			t.Errorf("quickstart.md shows hoard check printing %q; it printed no such line:\n%s", l, got)
		}
	}
}

// quickstartCheckExample returns the lines of quickstart.md's example of
// hoard check's output: the unlabelled block after the command.
func quickstartCheckExample(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("quickstart.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "check --archive-switch\n```\n")
	_, block, ok2 := strings.Cut(after, "```\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 || !strings.HasPrefix(block, "ok ") {
		t.Fatal("quickstart.md: no example of hoard check's output after check --archive-switch")
	}
	return strings.Split(strings.TrimSpace(block), "\n")
}

var (
	shapePath   = regexp.MustCompile(`/[^\s:,]+`)
	shapeNumber = regexp.MustCompile(`[0-9a-fA-F]*[0-9][0-9a-fA-F]*`)
)

// checkLineShape is a line of hoard check's output with what differs
// from one cluster and machine to another (paths, numbers, hex ids and
// segment names, versions) made alike.
func checkLineShape(l string) string {
	return shapeNumber.ReplaceAllString(shapePath.ReplaceAllString(strings.TrimSpace(l), "PATH"), "N")
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
