package command

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hoard object put never replaces a stored object: a second put to the
// key of an archived WAL segment is refused, naming the key, with a
// non-zero exit, and the segment is left as it was.
func TestObjectPut_ErrExists(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "hoard.json")
	store := filepath.Join(dir, "store")
	err := os.WriteFile(cfg, []byte(fmt.Sprintf(`{"backup_location": %q, "backup_sites": {"s": {
		"object_storage": {"storage_type": "local", "directory": %q}}}}`, filepath.Join(dir, "state"), store)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	first, second := filepath.Join(dir, "first"), filepath.Join(dir, "second")
	if err := os.WriteFile(first, []byte("the archived segment"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(second, []byte("other bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	const key = "s/xlog/000000010000000000000001"
	if code, msg := runErr(t, "object", "put", "--allow-root", "--config", cfg, first, key); code != 0 {
		t.Fatalf("first object put: exit %d: %s", code, msg)
	}
	obj := filepath.Join(store, filepath.FromSlash(key))
	before, err := os.ReadFile(obj)
	if err != nil {
		t.Fatal(err)
	}
	code, msg := runErr(t, "object", "put", "--allow-root", "--config", cfg, second, key)
	if code != ExitFailure || !strings.Contains(msg, key) || !strings.Contains(msg, "never replaced") {
		t.Errorf("object put over a stored object: exit %d, %q; want exit %d naming %s as never replaced", code, msg, ExitFailure, key)
	}
	if after, err := os.ReadFile(obj); err != nil || string(after) != string(before) {
		t.Errorf("the stored object changed (%v): %d bytes, were %d", err, len(after), len(before))
	}
	out := filepath.Join(dir, "out")
	if code, msg := runErr(t, "object", "get", "--config", cfg, key, "-o", out); code != 0 {
		t.Fatalf("object get: exit %d: %s", code, msg)
	}
	if got, _ := os.ReadFile(out); string(got) != "the archived segment" {
		t.Errorf("object get after the refused put: %q", got)
	}
}
