package basebackup

import (
	"errors"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRun_IncrementalParentMovedFrom: after a partial archive-copy into
// a new site whose moved_from names the old one, the new site's newest
// backup is an incremental backup I whose parent F only the old site
// holds (real PostgreSQL 17, local storage). Restore follows I's chain
// through the old site (archive.Archive.FirstCopies), so the chain is
// sound (verify's TestRun_IncrementalThreeLevelsMovedFrom restores such
// a chain end to end); an incremental backup in the new site is still not taken on it
// (the daemon keeps its chains inside the site whose retention covers
// them), but the refusal says so: it wraps ErrNoParent and
// ErrParentMovedFrom, not ErrBrokenParent (no broken parent counted, no
// HoardIncrementalBrokenParent), naming F and the old site.
//
//   - Moved: F sound in the old site: refused as moved, not broken;
//   - MovedBroken: a chunk of F deleted in the old site: refused as
//     broken, as before, naming the chunk;
//   - Missing: F's main object deleted from the old site as well: refused
//     as broken, as before.
//
// Before, each case was refused as broken ("not stored or is damaged").
func TestRun_IncrementalParentMovedFrom(t *testing.T) {
	cl := pgtest.Start(t, pgtest.Options{Major: 17, Conf: map[string]string{"summarize_wal": "on"}})
	pgtest.Pgbench(t, cl, "-i", "-s", "1")
	ctx := testContext(t)
	// moved returns the old site holding F and I (on F), and a new site
	// (moved_from: old) holding I alone.
	moved := func(t *testing.T) (old, nw *archive.Archive, f, i *archive.BackupInfo) {
		t.Helper()
		old = localArchive(t)
		old.Site = "old"
		var err error
		if f, err = streamBackup(ctx, t, cl, old, false); err != nil {
			t.Fatal(err)
		}
		if i, err = streamBackup(ctx, t, cl, old, true); err != nil {
			t.Fatal(err)
		}
		if i.Parent != f.Name {
			t.Fatalf("incremental backup's parent %q, want %s", i.Parent, f.Name)
		}
		nw = localArchive(t)
		nw.Site, nw.MovedFrom = "new", []*archive.Archive{old}
		var keys []string
		if err := old.Store.List(ctx, "", func(o storage.Object) error {
			if strings.Contains(o.Key, i.Name) {
				keys = append(keys, o.Key)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		archivetest.CopyTo(t, old.Store, nw.Store, keys...)
		return old, nw, f, i
	}
	refused := func(t *testing.T, a *archive.Archive) error {
		t.Helper()
		before, err := a.ListBackups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		inc, refusal := streamBackup(ctx, t, cl, a, true)
		if refusal == nil {
			t.Fatalf("incremental backup %s stored on parent %s, in the new site whose chain continues into a moved_from site", inc.Name, inc.Parent)
		}
		if !errors.Is(refusal, ErrNoParent) {
			t.Fatalf("got %v, want ErrNoParent", refusal)
		}
		after, err := a.ListBackups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(after) != len(before) {
			t.Errorf("%d backups listed after the refused one, want %d", len(after), len(before))
		}
		return refusal
	}
	t.Run("Moved", func(t *testing.T) {
		_, nw, f, i := moved(t)
		err := refused(t, nw)
		if errors.Is(err, ErrBrokenParent) || !errors.Is(err, ErrParentMovedFrom) {
			t.Fatalf("got %v, want ErrParentMovedFrom, not ErrBrokenParent", err)
		}
		for _, s := range []string{f.Name, i.Name, "moved_from site old", "full backup"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not say %q", err, s)
			}
		}
	})
	t.Run("MovedBroken", func(t *testing.T) {
		old, nw, f, _ := moved(t)
		var chunk string
		if err := old.Store.List(ctx, old.Layout.Dir(archive.BasebackupChunkDir)+f.Name, func(o storage.Object) error {
			if chunk == "" {
				chunk = o.Key
			}
			return nil
		}); err != nil || chunk == "" {
			t.Fatalf("no chunk of %s (%v)", f.Name, err)
		}
		if err := old.Store.Delete(ctx, chunk); err != nil {
			t.Fatal(err)
		}
		err := refused(t, nw)
		if !errors.Is(err, ErrBrokenParent) || errors.Is(err, ErrParentMovedFrom) || !strings.Contains(err.Error(), f.Name) {
			t.Fatalf("got %v, want ErrBrokenParent naming %s, not ErrParentMovedFrom", err, f.Name)
		}
	})
	t.Run("Missing", func(t *testing.T) {
		old, nw, f, _ := moved(t)
		if err := old.Store.Delete(ctx, f.Key); err != nil {
			t.Fatal(err)
		}
		err := refused(t, nw)
		if !errors.Is(err, ErrBrokenParent) || errors.Is(err, ErrParentMovedFrom) || !strings.Contains(err.Error(), f.Name) {
			t.Fatalf("got %v, want ErrBrokenParent naming %s, not ErrParentMovedFrom", err, f.Name)
		}
	})
}
