package archive

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/storage"
)

// TestPlanRetention_MovedFromCopied: after archive-copy from the old site,
// with moved_from naming it, both sites hold the same backups under the
// same names. Each counts once toward basebackup_count: with a count of 2
// and three backups, the site keeps its two newest and deletes its oldest
// (the old site's copies all stay, read-only), instead of counting the
// two copies of the newest as two backups and deleting the second newest
// too.
func TestPlanRetention_MovedFromCopied(t *testing.T) {
	ctx := context.Background()
	codec := retentionCodec(t)
	old := localArchive(t, t.TempDir(), "s", codec)
	old.Site = "old"
	for i, name := range []string{"2024-03-07_10-00_0", "2024-03-08_10-00_0", "2024-03-09_10-00_0"} {
		putBackup(t, old, name, segs(1, uint64(2+2*i), uint64(2+2*i))[0], 1, 0)
	}
	putWAL(t, old, segs(1, 2, 8)...)
	a := localArchive(t, t.TempDir(), "s", codec)
	a.Site = "new"
	a.MovedFrom = []*Archive{old}
	// archive-copy: every object under the same key, same bytes and
	// metadata.
	if err := old.Store.List(ctx, "", func(o storage.Object) error {
		rc, md, err := old.Store.Open(ctx, o.Key)
		if err != nil {
			return err
		}
		defer rc.Close()
		return a.Store.Put(ctx, o.Key, rc, md.Metadata)
	}); err != nil {
		t.Fatal(err)
	}
	// The site's own copy of the newest backup lost a chunk: the
	// known-good check must find it there, not pass it on the old
	// site's sound copy.
	if err := a.Store.Delete(ctx, a.Layout.ChunkKey(ChunkFilename("2024-03-09_10-00_0", 1))); err != nil {
		t.Fatal(err)
	}
	plan, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 2, MinCount: 2, Interval: 24 * time.Hour},
		time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	var deleted []string
	for _, d := range plan.Delete {
		deleted = append(deleted, d.Backup.Name+"@"+d.Site)
	}
	if want := []string{"2024-03-07_10-00_0@new"}; !slices.Equal(deleted, want) {
		t.Errorf("plan deletes %v, want %v", deleted, want)
	}
	if !strings.Contains(strings.Join(plan.Damaged, "\n"), "2024-03-09_10-00_0 (site new)") {
		t.Errorf("plan.Damaged = %q, want the site's own copy of 2024-03-09_10-00_0 named", plan.Damaged)
	}
	for _, k := range plan.Keep {
		if k.Site == "new" && k.Backup.Name == "2024-03-07_10-00_0" {
			t.Errorf("plan keeps %s of site new: %s", k.Backup.Name, k.Reason)
		}
	}
}
