package command

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
)

// TestVerify_MovedFrom: hoard verify of a site that moved from another
// checks the backups stored in the old site too, as restore and list
// count them: the table has a SITE column, each backup's problems name
// its site, --json gives each backup's site, and a broken backup of the
// old site fails verify (exit 1). verify checked the site's own backups
// only.
func TestVerify_MovedFrom(t *testing.T) {
	root := t.TempDir()
	start := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	oldDir, newDir := filepath.Join(root, "old"), filepath.Join(root, "new")
	// Control objects no restore can read: broken, each in its site.
	for _, s := range []struct {
		dir, prefix, name string
		at                time.Time
	}{{oldDir, "old", "2026-01-02_03-00_0", start}, {newDir, "new", "2026-01-03_03-00_0", start.Add(24 * time.Hour)}} {
		archivetest.PutBackupInfo(t, archivetest.Local(t, s.dir, s.prefix, &archive.Codec{}), s.name,
			&archive.BackupInfo{Format: archive.FormatBBv2, StartWALSegment: "000000010000000000000002", StartTime: s.at})
	}
	cfg := fmt.Sprintf(`{"backup_location": %q, "backup_sites": {
		"new": {"prefix": "new", "moved_from": ["old"], "object_storage": {"storage_type": "local", "directory": %q}},
		"old": {"prefix": "old", "active": false, "object_storage": {"storage_type": "local", "directory": %q}}}}`,
		filepath.Join(root, "state"), newDir, oldDir)
	cfgFile := filepath.Join(root, "hoard.json")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		app := App("test")
		app.Writer, app.ErrWriter = &out, &errOut
		err := app.RunContext(context.Background(), append([]string{"hoard", "--config", cfgFile, "--site", "new", "verify"}, args...))
		return out.String(), err
	}
	out, err := run("--json")
	if ExitCode(err) != ExitFailure {
		t.Errorf("verify --json: %v, want exit %d", err, ExitFailure)
	}
	var rep struct {
		Backups []struct{ Name, Site, Status string }
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var got []string
	for _, b := range rep.Backups {
		got = append(got, b.Name+"@"+b.Site+":"+b.Status)
	}
	if want := "2026-01-02_03-00_0@old:broken 2026-01-03_03-00_0@new:broken"; strings.Join(got, " ") != want {
		t.Errorf("verify --json reports %v, want %s", got, want)
	}
	out, err = run()
	if ExitCode(err) != ExitFailure {
		t.Errorf("verify: %v, want exit %d", err, ExitFailure)
	}
	for _, want := range []string{"BACKUP              SITE  STATUS", "2026-01-02_03-00_0  old   broken",
		"  2026-01-02_03-00_0 (site old): ", "old/basebackup/2026-01-02_03-00_0"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify printed no %q:\n%s", want, out)
		}
	}
}
