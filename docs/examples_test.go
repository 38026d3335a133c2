package docs_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/config"
)

// jsonBlock matches a page's ```json code block.
var jsonBlock = regexp.MustCompile("(?s)```json\n(.*?)```")

// firstKey matches the key a configuration fragment starts with.
var firstKey = regexp.MustCompile(`^\s*"([a-z_]+)"\s*:`)

// TestPages_ConfigExamples checks that every configuration the pages show
// in a json block loads without an error or a warning (an unknown key is
// a warning): a whole file ({"backup_sites": ...}), or one key of it, a
// site's ("object_storage": {...}) or the top level's ("statsd": {...}),
// which is loaded inside a file of one site. So a key renamed or removed
// in the schema, or a value the validation now refuses, cannot stay in an
// example someone copies. A block that is an object whose first key is no
// top-level key (the daemon's /status answer) is not a configuration.
func TestPages_ConfigExamples(t *testing.T) {
	top, site := map[string]bool{}, map[string]bool{}
	for _, k := range config.Keys() {
		if rest, ok := strings.CutPrefix(k.Path, "backup_sites.<site>."); ok {
			site[strings.Split(rest, ".")[0]] = true
		} else {
			top[strings.Split(k.Path, ".")[0]] = true
		}
	}
	pages, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	pages = append(pages, "../README.md")
	examples := 0
	for _, page := range pages {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range jsonBlock.FindAllStringSubmatch(string(b), -1) {
			block := strings.TrimSpace(m[1])
			const wrap = `{"backup_location": "/var/lib/hoard", "backup_sites": {"default": {`
			var file string
			switch k := firstKey.FindStringSubmatch(block); {
			case strings.HasPrefix(block, "{"):
				if k := firstKey.FindStringSubmatch(block[1:]); k == nil || !top[k[1]] {
					continue // an answer of hoard's (/status), not a configuration
				}
				file = block
			case k == nil:
				continue
			case site[k[1]]:
				file = wrap + block + `}}}`
			case top[k[1]]:
				file = wrap + `}}, ` + block + `}`
			default:
				t.Errorf("%s: a json block starts with %q, which is no configuration key:\n%s", page, k[1], block)
				continue
			}
			examples++
			path := filepath.Join(t.TempDir(), "hoard.json")
			if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(path, func(string) string { return "" })
			if err != nil {
				t.Errorf("%s: the example does not load: %v\n%s", page, err, block)
				continue
			}
			for _, w := range cfg.Warnings {
				t.Errorf("%s: the example loads with a warning: %s\n%s", page, w, block)
			}
		}
	}
	if examples == 0 {
		t.Error("no configuration example found in the pages")
	}
}
