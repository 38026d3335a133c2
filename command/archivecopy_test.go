package command

import (
	"context"
	"fmt"
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

// archive-copy refuses a target whose objects are the source's under
// another spelling, or lie inside the source's (or hold them): the same
// local directory written with a trailing slash, part of the site prefix
// moved into the object_storage prefix, a directory joined with the prefix, a site
// prefix below the other. A target inside the source is listed with the
// source, so each run copied the last run's copy again, one level
// deeper; a source inside the target is mixed into the target site's
// keys. Sites beside each other ("a/b" and "a/bc") stay allowed.
func TestArchiveCopy_RefusesOverlap(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	other := filepath.Join(dir, "other")
	n := 0
	write := func(directory, storagePrefix, sitePrefix string) string {
		n++
		p := filepath.Join(dir, fmt.Sprintf("c%d.json", n))
		js := fmt.Sprintf(`{"backup_location": %q, "backup_sites": {"s": {"prefix": %q, "object_storage": {"storage_type": "local", "directory": %q, "prefix": %q}}}}`,
			dir, sitePrefix, directory, storagePrefix)
		if err := os.WriteFile(p, []byte(js), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The source: site s at a/b/ in store.
	src := write(store, "", "a/b")
	if err := os.MkdirAll(filepath.Join(store, "a", "b", "xlog"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		to      string
		refused bool
	}{
		{"TrailingSlash", write(store+"/", "", "a/b/"), true},
		{"StoragePrefix", write(store, "/a/", "b"), true},
		{"DirectoryJoined", write(filepath.Join(store, "a"), "", "b"), true},
		{"TargetInside", write(store, "", "a/b/c"), true},
		{"SourceInside", write(store, "", "a"), true},
		{"Beside", write(store, "", "a/bc"), false},
		{"OtherDirectory", write(other, "", "a/b"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := App("test")
			app.Writer, app.ErrWriter = io.Discard, io.Discard
			err := app.RunContext(context.Background(), OrderArgs(app, []string{"hoard", "--config", src, "archive-copy", "--to-config", tc.to, "--allow-root"}))
			refused := err != nil && strings.Contains(err.Error(), "overlap")
			if refused != tc.refused {
				t.Fatalf("err = %v, want refused for overlapping the source: %v", err, tc.refused)
			}
			if tc.refused && ExitCode(err) != ExitUsage {
				t.Errorf("exit %d, want %d", ExitCode(err), ExitUsage)
			}
			if !tc.refused && err != nil {
				t.Errorf("copy beside the source: %v", err)
			}
		})
	}
}
