package archive

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/internal/testio"
)

// TestArchive_RetentionOddDelta: in local storage, a delta object
// retention deletes (only a deleted backup refers to it) is replaced by a
// FIFO, a directory holding a file or a socket, its .metadata sidecar
// kept. Retention stopped at it, every run, before the delta objects
// listed after it, and neither hoard retention --dry-run nor --json named
// it before applying. Now the plan names it in its notes (from the
// listing, nothing read), and applying leaves it (with its sidecar),
// deletes the other delta objects as planned, and fails naming it and
// saying to remove it by hand, as for a chunk (fe84fa7).
func TestArchive_RetentionOddDelta(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UTC()
	name := func(ago time.Duration) string { return now.Add(-ago).Format("2006-01-02_15-04") + "_0" }
	for _, odd := range testio.OddEntries {
		t.Run(odd.Name, func(t *testing.T) {
			dir := t.TempDir()
			a := localArchive(t, dir, "site", retentionCodec(t))
			objs := putDelta(t, a, digest('a'), digest('b'), digest('c'), digest('d'))
			ageKeys(a, objs, now.Add(-96*time.Hour))
			ageKeys(a, objs[2:3], now.Add(-47*time.Hour))
			putDeltaBackup(t, a, name(72*time.Hour), "000000010000000000000002", digest('a'), digest('b'))
			putDeltaBackup(t, a, name(48*time.Hour), "000000010000000000000004", digest('b'), digest('c'))
			putWAL(t, a, segs(1, 2, 5)...)
			oddKey := a.Layout.DeltaKey(digest('a'))
			oddPath := filepath.Join(dir, filepath.FromSlash(oddKey))
			testio.ReplaceFile(t, oddPath, odd.Make)

			plan, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 1}, now)
			if err != nil {
				t.Fatal(err)
			}
			notes := strings.Join(plan.Notes, "\n")
			if !strings.Contains(notes, oddPath) || !strings.Contains(notes, odd.What) {
				t.Errorf("plan notes %q do not name %s saying %q", plan.Notes, oddPath, odd.What)
			}
			res, err := a.ApplyRetention(ctx, plan, zerolog.Nop())
			if err == nil || !strings.Contains(err.Error(), oddPath) || !strings.Contains(err.Error(), odd.What) ||
				!strings.Contains(err.Error(), "remove it and its .metadata sidecar by hand") {
				t.Errorf("retention's error %v, want one naming %s and saying to remove it by hand", err, oddPath)
			}
			if res.Backups != 1 || res.Delta != 1 {
				t.Errorf("deleted %d backups and %d delta objects, want 1 and 1 (D)", res.Backups, res.Delta)
			}
			got := deltaKeysOf(t, a)
			want := []string{oddKey, a.Layout.DeltaKey(digest('b')), a.Layout.DeltaKey(digest('c'))}
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("delta objects left %q, want %q", got, want)
			}
			if _, err := os.Lstat(oddPath + ".metadata"); err != nil {
				t.Errorf("sidecar: %v, want it kept", err)
			}
		})
	}
}
