package docs_test

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"os/user"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/demo"
	"github.com/hoardbackup/hoard/internal/testio"
)

// TestReadmeDemo runs the README's "Try it" command literally (the ```sh
// block under "## Try it", from the repository's root, as a newcomer
// would) and checks what the tour promises: it succeeds, the restored
// cluster holds exactly the rows of the point in time (the demo compares
// them and fails otherwise), the archive verifies, and nothing is left
// behind.
func TestReadmeDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs PostgreSQL")
	}
	missing := ""
	if _, err := demo.FindPGBin("", testio.CacheDir()); err != nil {
		missing = err.Error()
	} else if _, err := user.Lookup("postgres"); err != nil && os.Geteuid() == 0 {
		missing = "user postgres (the demo runs PostgreSQL as postgres when root)"
	}
	if missing != "" {
		testio.Unavailable(t, "the demo needs %s", missing)
	}

	block := readmeBlock(t, "## Try it")
	if strings.TrimSpace(block) != "go run . demo" {
		t.Logf("README's Try it block changed; running it as written:\n%s", block)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-c", block)
	cmd.Dir = ".."
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	began := time.Now()
	err := cmd.Run()
	t.Logf("%s (%s):\n%s", block, time.Since(began).Round(time.Second), out.String())
	if err != nil {
		t.Fatalf("the README's demo failed: %v", err)
	}
	for _, want := range []string{
		"Every order written before the point is back, and none written after it.",
		"OK: every backup is restorable",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the demo did not say %q", want)
		}
	}
	m := regexp.MustCompile(`Removed (\S+)\.`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatal("the demo did not say which directory it removed")
	}
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Errorf("%s is still there (%v)", m[1], err)
		os.RemoveAll(m[1])
	}
}

// readmeBlock returns the first ```sh block under heading in README.md.
func readmeBlock(t *testing.T, heading string) string {
	t.Helper()
	f, err := os.Open("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var section, in bool
	var b strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			if in {
				t.Fatalf("README: unterminated block under %s", heading)
			}
			section = line == heading
		case section && !in && line == "```sh":
			in = true
		case in && line == "```":
			return b.String()
		case in:
			b.WriteString(line + "\n")
		}
	}
	t.Fatalf("README.md has no ```sh block under %q", heading)
	return ""
}
