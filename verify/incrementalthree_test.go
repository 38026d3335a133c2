package verify

import (
	"context"
	"path/filepath"
	"slices"
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

// TestRun_IncrementalThreeLevelsMovedFrom takes a chain of three backups
// of a real PostgreSQL 17 into the old site, full F, incremental I1 on
// F, incremental I2 on I1, and copies F and I2 alone into a new site
// whose moved_from names the old one (archive-copy of part of the
// archive, both kept). Restore follows I2's chain by name through the
// copies it takes (archive.Archive.FirstCopies): I2 and F from the new
// site, I1 from the old one, crossing sites twice. verify --full passes
// every copy as restorable, and restore chooses I2 of the new site;
// started, the restored cluster has the source's rows. With the new
// site's copy of F missing a chunk, verify reports both copies of I2
// and the old site's I1 broken, naming the new site's copy, and restore
// of I2 is refused, though the old site's own F is sound.
func TestRun_IncrementalThreeLevelsMovedFrom(t *testing.T) {
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
	take := func(incremental bool) *archive.BackupInfo {
		t.Helper()
		src.Exec(t, "update pgbench_accounts set abalance = abalance + 1 where aid % 50 = 0")
		return takeBackup(ctx, t, src, old, 1<<20, incremental)
	}
	f := take(false)
	i1 := take(true)
	i2 := take(true)
	if i1.Parent != f.Name || i2.Parent != i1.Name {
		t.Fatalf("parents: %s of %s, %s of %s; want %s, %s", i1.Parent, i1.Name, i2.Parent, i2.Name, f.Name, i1.Name)
	}
	src.Exec(t, "update pgbench_accounts set abalance = abalance - 7 where aid % 300 = 0")
	const rows = "select count(*)::text || ' ' || md5(string_agg(aid::text || ':' || abalance::text, ',' order by aid)) from pgbench_accounts"
	want := src.QueryString(t, rows)
	archivetest.StoreArchivedWAL(t, src, walDir, old)

	nw := archivetest.New(t, storage.NewMem(), old.Codec)
	nw.Site, nw.MovedFrom = "new", []*archive.Archive{old}
	var keys []string
	if err := old.Store.List(ctx, "", func(o storage.Object) error {
		if strings.Contains(o.Key, f.Name) || strings.Contains(o.Key, i2.Name) {
			keys = append(keys, o.Key)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	archivetest.CopyTo(t, old.Store, nw.Store, keys...)

	report := func(t *testing.T) map[string]BackupReport {
		t.Helper()
		rep, err := Run(ctx, Options{Archive: nw, Full: true, Logger: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]BackupReport{}
		for _, b := range rep.Backups {
			out[b.Name+"@"+b.Site] = b
		}
		var got []string
		for k := range out {
			got = append(got, k)
		}
		slices.Sort(got)
		wantRows := []string{f.Name + "@new", f.Name + "@old", i1.Name + "@old", i2.Name + "@new", i2.Name + "@old"}
		slices.Sort(wantRows)
		if !slices.Equal(got, wantRows) {
			t.Fatalf("verify reports %v, want %v", got, wantRows)
		}
		return out
	}
	restoreTo := func(name string) (*restore.Result, string, error) {
		dir := filepath.Join(pgtest.TempDir(t), "data")
		res, err := restore.Run(ctx, restore.Options{Archive: nw, TargetDir: dir, Backup: name,
			RestoreCommand: "cp " + walDir + "/%f %p", Logger: zerolog.Nop()})
		return res, dir, err
	}

	t.Run("Sound", func(t *testing.T) {
		for k, r := range report(t) {
			if !r.Restorable || r.Status != StatusOK {
				t.Errorf("%s: %s, restorable %v, problems %q; want ok", k, r.Status, r.Restorable, r.Problems)
			}
		}
		res, dir, err := restoreTo("")
		if err != nil {
			t.Fatal(err)
		}
		if res.Backup.Name != i2.Name || nw.ArchiveOf(res.Backup) != nw {
			t.Fatalf("restored %s of site %s, want %s of site new", res.Backup.Name, nw.ArchiveOf(res.Backup).Site, i2.Name)
		}
		c := pgtest.StartDataDir(t, major, dir, nil)
		c.WaitRecoveryDone(t, 3*time.Minute)
		if got := c.QueryString(t, rows); got != want {
			t.Errorf("restored rows %q, want the source's %q", got, want)
		}
		c.Stop(t)
	})

	t.Run("NewFullChunkMissing", func(t *testing.T) {
		chunk := nw.Layout.ChunkKey(archive.ChunkFilename(f.Name, 1))
		if err := nw.Store.Delete(ctx, chunk); err != nil {
			t.Fatal(err)
		}
		defer archivetest.CopyTo(t, old.Store, nw.Store, chunk)
		got := report(t)
		for _, k := range []string{f.Name + "@new", i1.Name + "@old", i2.Name + "@new", i2.Name + "@old"} {
			if r := got[k]; r.Restorable || r.Status != StatusBroken {
				t.Errorf("%s: %s, restorable %v, problems %q; want broken: restore takes the new site's %s", k, r.Status, r.Restorable, r.Problems, f.Name)
			}
		}
		if r := got[f.Name+"@old"]; !r.Restorable {
			t.Errorf("%s@old: %s, problems %q; want restorable (its own copy is sound)", f.Name, r.Status, r.Problems)
		}
		if _, _, err := restoreTo(i2.Name); err == nil || !strings.Contains(err.Error(), chunk) {
			t.Errorf("restore of %s: %v, want it refused naming %s", i2.Name, err, chunk)
		}
	})
}
