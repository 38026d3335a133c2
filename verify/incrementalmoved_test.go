package verify

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/restore"
	"github.com/hoardbackup/hoard/storage"
)

// TestRun_IncrementalMovedFromParentCopy takes a full backup of a real
// PostgreSQL 17 and an incremental one on it into the old site, then
// copies the full backup alone into a new site whose moved_from names
// the old one (archive-copy of part of the archive, both kept): the
// child is held by the old site only, its parent by both. Restore takes
// the parent's first copy, the new site's (archive.Archive.FirstCopies),
// whichever site holds the child, so verify must judge the old site's
// child on that copy: the new site's parent with a chunk missing, or
// with metadata that does not parse, makes the child broken, as restore
// refuses it, though the old site's own parent is sound.
func TestRun_IncrementalMovedFromParentCopy(t *testing.T) {
	if testing.Short() {
		t.Skip("real cluster")
	}
	const major = 17
	src, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: major, Conf: map[string]string{"summarize_wal": "on"}})
	pgtest.Pgbench(t, src, "-i", "-s", "1")
	old := testArchive(t)
	old.Site = "old"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	full := takeBackup(ctx, t, src, old, 0, false)
	src.Exec(t, "update pgbench_accounts set abalance = abalance + 1 where aid % 50 = 0")
	inc := takeBackup(ctx, t, src, old, 0, true)
	if inc.Parent != full.Name {
		t.Fatalf("parent of %s: %q, want %s", inc.Name, inc.Parent, full.Name)
	}
	archivetest.StoreArchivedWAL(t, src, walDir, old)

	nw := archivetest.New(t, storage.NewMem(), old.Codec)
	nw.Site, nw.MovedFrom = "new", []*archive.Archive{old}
	var fullKeys []string
	if err := old.Store.List(ctx, "", func(o storage.Object) error {
		if strings.Contains(o.Key, full.Name) {
			fullKeys = append(fullKeys, o.Key)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(fullKeys) < 2 {
		t.Fatalf("backup %s: objects %v, want its control object and chunks", full.Name, fullKeys)
	}
	archivetest.CopyTo(t, old.Store, nw.Store, fullKeys...)
	chunk := nw.Layout.ChunkKey(archive.ChunkFilename(full.Name, 1))

	// child returns the report of the old site's copy of inc, the only one.
	child := func(t *testing.T, rep *Report) BackupReport {
		t.Helper()
		var got []string
		for _, b := range rep.Backups {
			got = append(got, b.Name+"@"+b.Site)
		}
		for _, b := range rep.Backups {
			if b.Name == inc.Name && b.Site == "old" {
				return b
			}
		}
		t.Fatalf("backups %v: no %s@old", got, inc.Name)
		return BackupReport{}
	}
	restoreErr := func() error {
		_, err := restore.Run(ctx, restore.Options{Archive: nw, TargetDir: filepath.Join(pgtest.TempDir(t), "data"), Backup: inc.Name,
			RestoreCommand: "false", Logger: zerolog.Nop()})
		return err
	}
	broken := func(t *testing.T, want string) {
		t.Helper()
		r := child(t, run(t, nw, false))
		if r.Restorable || r.Status != StatusBroken || !strings.Contains(strings.Join(r.Problems, "\n"), want) {
			t.Errorf("the old site's child %s: %s, restorable %v, problems %q; want broken, saying %q: restore takes the new site's parent",
				inc.Name, r.Status, r.Restorable, r.Problems, want)
		}
		if err := restoreErr(); err == nil {
			t.Errorf("restore of %s succeeded: it should fail on the new site's parent, as verify reports", inc.Name)
		}
	}

	t.Run("Sound", func(t *testing.T) {
		rep := run(t, nw, false)
		if !rep.OK() {
			t.Fatalf("not OK:\n%s", problems(rep))
		}
		if r := child(t, rep); !r.Restorable {
			t.Errorf("child: %s %q", r.Status, r.Problems)
		}
	})

	t.Run("OwnParentChunkMissing", func(t *testing.T) {
		if err := nw.Store.Delete(ctx, chunk); err != nil {
			t.Fatal(err)
		}
		broken(t, "backup "+full.Name+", which it needs, is broken (its copy in site new, the one restore takes)")
		archivetest.CopyTo(t, old.Store, nw.Store, chunk)
	})

	t.Run("OwnParentMetadataDamaged", func(t *testing.T) {
		key := nw.Layout.BackupKey(full.Name)
		archivetest.PlantCopy(t, nw.Store, key, key, func(md storage.Metadata) { md[archive.MetaStartTime] = "not a time" })
		broken(t, key)
		archivetest.CopyTo(t, old.Store, nw.Store, key)
	})
}
