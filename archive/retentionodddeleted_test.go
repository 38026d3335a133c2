package archive

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/internal/testio"
)

// TestArchive_RetentionOddDeletedChunk: in local storage, a chunk of the
// oldest of three backups is replaced by a FIFO, a directory holding a
// file or a socket, its .metadata sidecar kept; the policy keeps one
// backup. The plan (hoard retention --dry-run, --json notes) named such
// entries of orphaned folders and delta objects, but not one in the
// chunk folder of a backup it deletes: the dry run promised a clean
// deletion and applying it failed naming the entry (fe84fa7). Now the
// plan's notes name it, from the listing of the chunk directory it
// already makes for orphaned folders, as applying then fails. Young:
// the backup's metadata does not authenticate and the folder was
// written in the last day, so applying leaves the whole folder to the
// orphan sweep (deleteBackup) and fails on nothing: the plan promises
// no failure.
func TestArchive_RetentionOddDeletedChunk(t *testing.T) {
	ctx := context.Background()
	const odd, mid, newest = "2024-03-05_10-00_0", "2024-03-07_10-00_0", "2024-03-09_10-00_0"
	now := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	for _, young := range []bool{false, true} {
		for _, e := range testio.OddEntries {
			name := e.Name
			if young {
				name = "Young" + name
			}
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				a := localArchive(t, dir, "site", retentionCodec(t))
				oddKeys := putBackup(t, a, odd, "000000010000000000000002", 2, 0)
				midKeys := putBackup(t, a, mid, "000000010000000000000004", 2, 0)
				putBackup(t, a, newest, "000000010000000000000006", 2, 0)
				if !young {
					ageKeys(a, oddKeys, time.Date(2024, 3, 5, 10, 10, 0, 0, time.UTC))
				} else {
					ageKeys(a, oddKeys, now.Add(-time.Hour))
				}
				ageKeys(a, midKeys, time.Date(2024, 3, 7, 10, 10, 0, 0, time.UTC))
				putWAL(t, a, segs(1, 1, 7)...)
				oddPath := filepath.Join(dir, filepath.FromSlash(oddKeys[0]))
				testio.ReplaceFile(t, oddPath, e.Make)

				plan, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 1}, now)
				if err != nil {
					t.Fatal(err)
				}
				var deleted []string
				for _, d := range plan.Delete {
					deleted = append(deleted, d.Backup.Name)
				}
				if got, want := strings.Join(deleted, " "), odd+" "+mid; got != want {
					t.Fatalf("plan deletes %s, want %s", got, want)
				}
				notes := strings.Join(plan.Notes, "\n")
				named := strings.Contains(notes, oddPath) && strings.Contains(notes, e.What) && strings.Contains(notes, "backup "+odd)
				_, applyErr := a.ApplyRetention(ctx, plan, zerolog.Nop())
				switch {
				case !young && !named:
					t.Errorf("plan notes %q do not name %s (%s) in the chunk folder of backup %s, which applying leaves: %v",
						plan.Notes, oddPath, e.What, odd, applyErr)
				case !young && (applyErr == nil || !strings.Contains(applyErr.Error(), oddPath)):
					t.Errorf("applying: %v, want an error naming %s", applyErr, oddPath)
				case young && strings.Contains(notes, oddPath):
					t.Errorf("plan notes %q name %s, but applying leaves the whole folder to the orphan sweep and fails on nothing", plan.Notes, oddPath)
				case young && applyErr != nil:
					t.Errorf("applying: %v, want success (the folder is left whole)", applyErr)
				}
			})
		}
	}
}
