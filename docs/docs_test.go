package docs_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/config"
	"github.com/hoardbackup/hoard/daemon"
	"github.com/hoardbackup/hoard/docs"
	"github.com/hoardbackup/hoard/storage"
)

// TestGenerated fails while a generated page differs from what the code
// renders now: run `go generate ./docs`.
func TestGenerated(t *testing.T) {
	pages, err := docs.Pages()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range pages {
		got, err := os.ReadFile(name)
		if err != nil {
			t.Errorf("%v: run go generate ./docs", err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run go generate ./docs", name)
		}
	}
}

func TestConfiguration_EveryKey(t *testing.T) {
	b, err := os.ReadFile(docs.ConfigurationFile)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, k := range config.Keys() {
		if !strings.Contains(page, "`"+k.Path+"`") {
			t.Errorf("%s does not document %s", docs.ConfigurationFile, k.Path)
		}
	}
	for _, ev := range config.EnvVars {
		if !strings.Contains(page, "`"+ev.Name+"`") {
			t.Errorf("%s does not document %s", docs.ConfigurationFile, ev.Name)
		}
	}
	// The page says which HOARD_<TYPE>_* variables go with each type.
	for _, typ := range storage.Types {
		if !strings.Contains(page, "_*` for `"+typ+"`") {
			t.Errorf("%s does not say which variables are the %s storage's", docs.ConfigurationFile, typ)
		}
	}
}

func TestCommands_EveryCommand(t *testing.T) {
	b, err := os.ReadFile(docs.CommandsFile)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, p := range docs.CommandPaths() {
		heading := "\n## " + strings.Join(append([]string{"hoard"}, p...), " ") + "\n"
		if !strings.Contains(page, heading) {
			t.Errorf("%s lacks the heading %q", docs.CommandsFile, strings.TrimSpace(heading))
		}
	}
}

// mdLink matches the target of a Markdown link or image.
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestLinks checks that every relative link of the pages and the README
// names a file that exists.
func TestLinks(t *testing.T) {
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, filepath.Join("..", "README.md"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(stripCode(string(b)), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") || strings.HasPrefix(target, "#") {
				continue
			}
			target, _, _ = strings.Cut(target, "#")
			if _, err := os.Stat(filepath.Join(filepath.Dir(f), target)); err != nil {
				t.Errorf("%s: broken link %s", f, m[1])
			}
		}
	}
}

// stripCode drops fenced code blocks, whose brackets are not links.
func stripCode(s string) string {
	var b strings.Builder
	in := false
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			in = !in
			continue
		}
		if !in {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// TestArchitecture_Packages checks that architecture.md names every
// package of the module, so that a new package comes with its place in
// the picture and the import rules.
func TestArchitecture_Packages(t *testing.T) {
	page, err := os.ReadFile("architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := filepath.Glob("../*/*.go")
	if err != nil {
		t.Fatal(err)
	}
	more, err := filepath.Glob("../internal/*/*.go")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range append(dirs, more...) {
		dir := strings.TrimPrefix(filepath.ToSlash(filepath.Dir(f)), "../")
		if seen[dir] || dir == "docs" || dir == "deploy" {
			continue
		}
		seen[dir] = true
		if !strings.Contains(string(page), "`"+dir+"`") && !strings.Contains(string(page), "`"+dir+"/`") {
			t.Errorf("architecture.md does not name package %s/", dir)
		}
	}
	if len(seen) < 15 {
		t.Fatalf("found %d package folders, want the whole module: %v", len(seen), seen)
	}
}

// TestMonitoring_BindErrors: the messages monitoring.md shows for an
// HTTP address the daemon cannot bind are the daemon's own. Each example
// line, its port made one in use here, starts the error daemon.ServeHTTP
// returns; its text up to "..." is the message as printed. The privileged
// port's line is checked only when this user may not bind it.
func TestMonitoring_BindErrors(t *testing.T) {
	b, err := os.ReadFile("monitoring.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "If the address cannot be bound")
	if !ok {
		t.Fatal(`monitoring.md: no "If the address cannot be bound" paragraph`)
	}
	_, block, ok := strings.Cut(after, "```\n")
	block, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		t.Fatal("monitoring.md: no example block after the bind paragraph")
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	local, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(block), "\n")
	if len(lines) != 3 {
		t.Errorf("monitoring.md shows %d bind errors, want the 3 this test reproduces: %q", len(lines), lines)
	}
	inUse := regexp.MustCompile(`^http_port (\d+) on (\S+) is in use`)
	address := regexp.MustCompile(`^http_address (\S+) is not an address of this host`)
	privileged := regexp.MustCompile(`^http_port (\d+) on (\S+) needs privileges`)
	for _, line := range lines {
		want := strings.TrimSuffix(line, "...")
		var o daemon.HTTPOptions
		if m := inUse.FindStringSubmatch(line); m != nil {
			if m[2] != "127.0.0.1" {
				t.Errorf("monitoring.md: %q: the test takes a port in use on 127.0.0.1 only", line)
				continue
			}
			o.Address, o.Port = m[2], busy.Addr().(*net.TCPAddr).Port
			want = strings.Replace(want, "http_port "+m[1]+" ", "http_port "+strconv.Itoa(o.Port)+" ", 1)
		} else if m := address.FindStringSubmatch(line); m != nil {
			for _, a := range local {
				if n, ok := a.(*net.IPNet); ok && n.IP.String() == m[1] {
					t.Skipf("%s is an address of this host", m[1])
				}
			}
			o.Address = m[1]
		} else if m := privileged.FindStringSubmatch(line); m != nil {
			if ln, err := net.Listen("tcp4", net.JoinHostPort(m[2], m[1])); err == nil {
				ln.Close()
				t.Logf("%q not checked: this user may bind port %s", line, m[1])
				continue
			}
			o.Port, _ = strconv.Atoi(m[1])
		} else {
			t.Errorf("monitoring.md: %q is no bind error this test knows", line)
			continue
		}
		o.Logger = zerolog.Nop()
		o.Listening = func(net.Addr) { t.Errorf("%q: the daemon listens", line) }
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := daemon.ServeHTTP(ctx, o)
		cancel()
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("monitoring.md shows %q; the daemon says %v", want, err)
		}
	}
}
