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

// TestList_MovedFromCopied: after archive-copy, with moved_from naming the
// old site and both kept, the site and the old site hold the same backups
// under the same names. hoard list shows both copies, and marks, in the
// table and in --json, each copy restore does not take (the site's own
// first); the chain of an incremental backup is the one restore follows:
// broken when the site's own copy of its parent is damaged, although the
// old site's is sound.
func TestList_MovedFromCopied(t *testing.T) {
	const full, inc, oldOnly = "2026-01-02_03-00_0", "2026-01-03_03-00_0", "2026-01-01_03-00_0"
	for _, tc := range []struct {
		name       string
		damageFull bool // the site's own copy of the full backup
	}{{"OK", false}, {"OwnParentDamaged", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			root := t.TempDir()
			oldDir, newDir := filepath.Join(root, "old"), filepath.Join(root, "new")
			oldA := archivetest.Local(t, oldDir, "old", &archive.Codec{})
			newA := archivetest.Local(t, newDir, "new", &archive.Codec{})
			start := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
			info := func(day int, parent string) *archive.BackupInfo {
				return &archive.BackupInfo{Format: archive.FormatBBv2, StartWALSegment: "000000010000000000000002",
					StartTime: start.Add(time.Duration(day) * 24 * time.Hour), Parent: parent, TotalSizeEnc: 1 << 20}
			}
			archivetest.PutBackupInfo(t, oldA, oldOnly, info(-1, ""))
			for _, a := range []*archive.Archive{oldA, newA} {
				archivetest.PutBackupInfo(t, a, full, info(0, ""))
				archivetest.PutBackupInfo(t, a, inc, info(1, full))
			}
			if tc.damageFull {
				md := info(0, "").ToMetadata()
				md[archive.MetaStartTime] = "not a time"
				body := []byte("control")
				if _, err := newA.Codec.Put(ctx, newA.Store, newA.Layout.BackupKey(full), bytes.NewReader(body), int64(len(body)), md); err != nil {
					t.Fatal(err)
				}
			}
			cfg := fmt.Sprintf(`{"backup_location": %q, "backup_sites": {
		"new": {"prefix": "new", "moved_from": ["old"], "object_storage": {"storage_type": "local", "directory": %q}},
		"old": {"prefix": "old", "active": false, "object_storage": {"storage_type": "local", "directory": %q}}}}`,
				filepath.Join(root, "state"), newDir, oldDir)
			cfgFile := filepath.Join(root, "hoard.json")
			if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			list := func(args ...string) string {
				t.Helper()
				var out, errOut bytes.Buffer
				app := App("test")
				app.Writer, app.ErrWriter = &out, &errOut
				if err := app.RunContext(ctx, append([]string{"hoard", "--config", cfgFile, "--site", "new", "list"}, args...)); err != nil {
					t.Fatalf("hoard list %v: %v\n%s", args, err, errOut.String())
				}
				return out.String()
			}

			var got []map[string]any
			if err := json.Unmarshal([]byte(list("--json")), &got); err != nil {
				t.Fatal(err)
			}
			notUsed := map[string]string{}
			for _, b := range got {
				id := fmt.Sprintf("%s@%s", b["name"], b["site"])
				if _, dup := notUsed[id]; dup {
					t.Errorf("%s listed twice", id)
				}
				s, _ := b["not_used"].(string)
				notUsed[id] = s
			}
			if len(got) != 5 {
				t.Errorf("listed %d backups, want 5 (both copies of two): %v", len(got), notUsed)
			}
			for id, want := range map[string]string{
				oldOnly + "@old": "", full + "@new": "", inc + "@new": "",
				full + "@old": "copy of " + full + " in site old, not used: restore takes the copy in site new, the one retention counts",
				inc + "@old":  "copy of " + inc + " in site old, not used: restore takes the copy in site new, the one retention counts",
			} {
				if got, ok := notUsed[id]; !ok || got != want {
					t.Errorf("%s: not_used = %q (listed %v), want %q", id, got, ok, want)
				}
			}

			table := list()
			rows := map[string]string{}
			for _, line := range strings.Split(table, "\n") {
				f := strings.Fields(line)
				if len(f) >= 2 && strings.HasPrefix(f[0], "2026-") {
					rows[f[0]+"@"+f[1]] = line
				}
			}
			for _, id := range []string{full + "@old", inc + "@old"} {
				if !strings.Contains(rows[id], "old (not used)") {
					t.Errorf("row of %s not marked (not used):\n%s", id, table)
				}
			}
			for _, id := range []string{oldOnly + "@old", full + "@new", inc + "@new"} {
				if strings.Contains(rows[id], "not used") {
					t.Errorf("row of %s marked not used:\n%s", id, table)
				}
			}
			if !strings.Contains(table, "(not used): a copy of a backup that an earlier site also holds under the same name") {
				t.Errorf("table does not explain (not used):\n%s", table)
			}
			// One chain line, the one restore follows.
			want := "chain of " + inc + ": 2 backups from full backup " + full
			if tc.damageFull {
				want = "chain of " + inc + ": BROKEN: backup " + inc + " is an incremental of backup " + full + ", which is not stored or is damaged"
			}
			if n := strings.Count(table, "chain of "+inc); n != 1 || !strings.Contains(table, want) {
				t.Errorf("%d chain lines of %s, want one: %q:\n%s", n, inc, want, table)
			}
		})
	}
}
