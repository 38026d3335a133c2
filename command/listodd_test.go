package command

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/testio"
)

// fileTree returns every path below dir (but lock files) with its type,
// one "path type" a line.
func fileTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	if err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Name() != ".hoard-create-lock" {
			out = append(out, p+" "+d.Type().String())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// oddBackupSite makes a site of three backups in local storage, replaces
// the middle one's main object (2026-01-02_04-00_0) by plant's entry,
// keeping its .metadata sidecar, and returns the test's temp directory,
// the storage directory, and a func that runs hoard on the site, failing
// the test if it does not return in 60 s.
func oddBackupSite(t *testing.T, plant func(p string) error) (root, store string, run func(args ...string) (string, error)) {
	t.Helper()
	ctx := context.Background()
	root = t.TempDir()
	store = filepath.Join(root, "store")
	a := archivetest.Local(t, store, "s", &archive.Codec{})
	putHourlyBackups(t, a, 3)
	cfg := fmt.Sprintf(`{"backup_location": %q, "backup_sites": {"s": {"prefix": "s", "basebackup_count": 1, `+
		`"object_storage": {"storage_type": "local", "directory": %q}}}}`, filepath.Join(root, "state"), store)
	cfgFile := filepath.Join(root, "hoard.json")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	odd := filepath.Join(store, filepath.FromSlash(a.Layout.BackupKey("2026-01-02_04-00_0")))
	testio.ReplaceFile(t, odd, plant)
	run = func(args ...string) (string, error) {
		t.Helper()
		var out, errOut bytes.Buffer
		app := App("test")
		app.Writer, app.ErrWriter = &out, &errOut
		done := make(chan error, 1)
		go func() { done <- app.RunContext(ctx, append([]string{"hoard", "--config", cfgFile}, args...)) }()
		select {
		case err := <-done:
			return out.String(), err
		case <-time.After(60 * time.Second):
			t.Fatalf("hoard %s did not return in 60 s", strings.Join(args, " "))
			return "", nil
		}
	}
	return root, store, run
}

// TestList_OddBackupObject: in a site of three backups in local storage,
// the middle one's main object is replaced, its .metadata sidecar kept,
// by something no read can return: a FIFO, a directory (holding a file)
// or a socket. Someone who can write the
// storage directory did it, or a failing disk, or a mistake by hand.
// hoard list lists the other two and shows that one as UNREADABLE, naming
// what is there, and exits 1; hoard verify, restore and retention fail
// naming it, and retention deletes nothing; nothing waits for a FIFO's
// writer. Before, the listing left such a backup out in silence: hoard
// list showed two backups and exited 0, and so did verify.
func TestList_OddBackupObject(t *testing.T) {
	for _, tc := range testio.OddEntries {
		t.Run(tc.Name, func(t *testing.T) {
			root, store, run := oddBackupSite(t, tc.Make)
			table, err := run("list")
			if err == nil || ExitCode(err) != ExitFailure || !strings.Contains(err.Error(), tc.What) {
				t.Errorf("hoard list: %v (exit %d), want exit 1 with an error saying %q", err, ExitCode(err), tc.What)
			}
			for _, want := range []string{"2026-01-02_03-00_0", "2026-01-02_05-00_0", "2026-01-02_04-00_0  s     UNREADABLE: ", tc.What} {
				if !strings.Contains(table, want) {
					t.Errorf("hoard list:\n%s\nwant %q", table, want)
				}
			}
			out, err := run("verify")
			if err == nil || !strings.Contains(out+err.Error(), "2026-01-02_04-00_0") || !strings.Contains(out+err.Error(), tc.What) {
				t.Errorf("hoard verify: %v\n%s\nwant an error naming the backup and saying %q", err, out, tc.What)
			}
			if _, err := run("restore", "--target-dir", filepath.Join(root, "restored")); err == nil ||
				!strings.Contains(err.Error(), "2026-01-02_04-00_0") || !strings.Contains(err.Error(), tc.What) {
				t.Errorf("hoard restore: %v, want an error naming the backup and saying %q", err, tc.What)
			}
			before := fileTree(t, store)
			if _, err := run("retention"); err == nil || !strings.Contains(err.Error(), "2026-01-02_04-00_0") {
				t.Errorf("hoard retention: %v, want an error naming the backup", err)
			}
			if after := fileTree(t, store); strings.Join(after, "\n") != strings.Join(before, "\n") {
				t.Errorf("hoard retention changed the store:\nbefore %q\nafter  %q", before, after)
			}
		})
	}
}

// TestList_SidecarAloneBackup: in a site of three backups in local
// storage, the middle one's main object is gone and its .metadata sidecar
// is left: what PGHoard's delete leaves when it is stopped between
// removing the two, so a site PGHoard once served may hold one. As in
// PGHoard's listing, it names no backup: hoard list shows the other two
// and exits 0, and retention plans on them without stopping on it (the
// local store's listing tells log of the sidecar instead).
func TestList_SidecarAloneBackup(t *testing.T) {
	_, _, run := oddBackupSite(t, func(string) error { return nil })
	table, err := run("list")
	if err != nil {
		t.Errorf("hoard list: %v, want it to succeed", err)
	}
	for _, want := range []string{"2026-01-02_03-00_0", "2026-01-02_05-00_0"} {
		if !strings.Contains(table, want) {
			t.Errorf("hoard list:\n%s\nwant %q", table, want)
		}
	}
	if strings.Contains(table, "2026-01-02_04-00_0") {
		t.Errorf("hoard list:\n%s\nlists the backup whose object is gone", table)
	}
	if _, err := run("retention"); err != nil && strings.Contains(err.Error(), "2026-01-02_04-00_0") {
		t.Errorf("hoard retention: %v, want it not to stop on the sidecar without its object", err)
	}
}

// putHourlyBackups stores n backups in a as listings see them (no restore
// could read them), an hour apart from 2026-01-02_03-00_0 on, each
// starting in segment 000000010000000000000002.
func putHourlyBackups(t *testing.T, a *archive.Archive, n int) {
	t.Helper()
	start := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	for i := range n {
		at := start.Add(time.Duration(i) * time.Hour)
		archivetest.PutBackupInfo(t, a, at.Format("2006-01-02_15-04")+"_0",
			&archive.BackupInfo{Format: archive.FormatBBv2, StartWALSegment: "000000010000000000000002", StartTime: at})
	}
}
