package command

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// archive-copy refuses a target that is its source: the same storage
// (object_storage equal key for key) and the same site prefix.
func TestArchiveCopy_RefusesItself(t *testing.T) {
	dir := t.TempDir()
	write := func(name, prefix string) string {
		p := filepath.Join(dir, name)
		js := `{"backup_location": "` + dir + `", "backup_sites": {"s": {"object_storage": {"url": "mem://", "prefix": "` + prefix + `"}}}}`
		if err := os.WriteFile(p, []byte(js), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	src, same, other := write("src.json", "a"), write("same.json", "a"), write("other.json", "b")
	for _, tc := range []struct {
		to   string
		self bool
	}{{same, true}, {other, false}} {
		app := App("test")
		app.Writer, app.ErrWriter = io.Discard, io.Discard
		err := app.RunContext(context.Background(), OrderArgs(app, []string{"hoard", "--config", src, "archive-copy", "--to-config", tc.to}))
		if self := err != nil && strings.Contains(err.Error(), "the target is the source itself"); self != tc.self {
			t.Errorf("--to-config %s: err = %v, want refused as the source itself: %v", filepath.Base(tc.to), err, tc.self)
		}
		if tc.self && ExitCode(err) != ExitUsage {
			t.Errorf("--to-config %s: exit %d, want %d", filepath.Base(tc.to), ExitCode(err), ExitUsage)
		}
	}
}
