package command

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
)

// TestList_UnreadableBackup: in a site of three backups in local
// storage, the middle one's main object (or its metadata sidecar) is a
// file hoard's user may not read (permission denied: a copy made by
// another user, a wrong umask). hoard list still lists the other two,
// shows that one as UNREADABLE with the storage's reason (--json:
// "unreadable"), and exits 1 with the error, as hoard verify stops on
// it. Before, hoard list printed nothing but the error: one unreadable
// object hid every backup of the site.
func TestList_UnreadableBackup(t *testing.T) {
	for _, which := range []string{"object", "sidecar"} {
		t.Run(which, func(t *testing.T) {
			ctx := context.Background()
			root := t.TempDir()
			store := filepath.Join(root, "store")
			a := archivetest.Local(t, store, "s", &archive.Codec{})
			putHourlyBackups(t, a, 3)
			cfg := fmt.Sprintf(`{"backup_location": %q, "backup_sites": {"s": {"prefix": "s", "object_storage": {"storage_type": "local", "directory": %q}}}}`,
				filepath.Join(root, "state"), store)
			cfgFile := filepath.Join(root, "hoard.json")
			if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			// Everything readable by every user, but the one file.
			if err := filepath.WalkDir(filepath.Dir(root), func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				mode := fs.FileMode(0o644)
				if d.IsDir() {
					mode = 0o755
				}
				return os.Chmod(p, mode)
			}); err != nil {
				t.Fatal(err)
			}
			unreadable := filepath.Join(store, filepath.FromSlash(a.Layout.BackupKey("2026-01-02_04-00_0")))
			if which == "sidecar" {
				unreadable += ".metadata"
			}
			if err := os.Chmod(unreadable, 0); err != nil {
				t.Fatal(err)
			}
			list := func(args ...string) (string, error) {
				t.Helper()
				var out, errOut bytes.Buffer
				app := App("test")
				app.Writer, app.ErrWriter = &out, &errOut
				err := unprivileged(t, func() error {
					return app.RunContext(ctx, append([]string{"hoard", "--config", cfgFile, "list"}, args...))
				})
				return out.String(), err
			}
			table, err := list()
			if err == nil || ExitCode(err) != ExitFailure || !strings.Contains(err.Error(), "permission denied") {
				t.Errorf("hoard list: %v (exit %d), want exit 1 with the storage's error", err, ExitCode(err))
			}
			for _, want := range []string{"2026-01-02_03-00_0", "2026-01-02_05-00_0", "2026-01-02_04-00_0  s     UNREADABLE: "} {
				if !strings.Contains(table, want) {
					t.Errorf("hoard list:\n%s\nwant %q", table, want)
				}
			}
			if !strings.Contains(table, "permission denied") || strings.Contains(table, "DAMAGED") {
				t.Errorf("hoard list:\n%s\nwant the unreadable backup's reason, and no backup called damaged", table)
			}
			js, err := list("--json")
			if err == nil || ExitCode(err) != ExitFailure {
				t.Errorf("hoard list --json: %v (exit %d), want exit 1", err, ExitCode(err))
			}
			var got []map[string]any
			if err := json.Unmarshal([]byte(js), &got); err != nil {
				t.Fatalf("hoard list --json: %v\n%s", err, js)
			}
			var names []string
			for _, b := range got {
				names = append(names, fmt.Sprint(b["name"]))
				why, _ := b["unreadable"].(string)
				if (b["name"] == "2026-01-02_04-00_0") != strings.Contains(why, "permission denied") || b["damaged"] != nil {
					t.Errorf("hoard list --json: %v: unreadable %q, damaged %v", b["name"], why, b["damaged"])
				}
			}
			if got, want := strings.Join(names, " "), "2026-01-02_03-00_0 2026-01-02_05-00_0 2026-01-02_04-00_0"; got != want {
				t.Errorf("hoard list --json lists %s, want %s", got, want)
			}
		})
	}
}

// unprivileged runs f as a user that the permission bits of files apply
// to: as it is when the tests do not run as root; else on a thread whose
// file system uid is nobody's (setfsuid: root's file capabilities are
// dropped for that thread only, which ends with f). f's own file reads
// must happen on that thread: hoard list's listing and reads of the
// backups' metadata do.
func unprivileged(t *testing.T, f func() error) error {
	t.Helper()
	if os.Geteuid() != 0 {
		return f()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Setfsuid(65534); err != nil {
			errc <- err
			return
		}
		errc <- f()
	}()
	return <-errc
}
