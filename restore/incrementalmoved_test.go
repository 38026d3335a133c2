package restore

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// copyBackupTo copies every object of backup name of a (its control
// object and chunks), bytes and metadata, to the same keys under dst's
// prefix in dst's store: archive-copy into a site with another prefix.
func copyBackupTo(t *testing.T, a, dst *archive.Archive, name string) {
	t.Helper()
	ctx := context.Background()
	var keys []string
	for _, dir := range []string{"basebackup", "basebackup_chunk"} {
		if err := a.Store.List(ctx, a.Layout.Dir(dir), func(o storage.Object) error {
			if strings.Contains(o.Key, name) {
				keys = append(keys, o.Key)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if len(keys) < 2 {
		t.Fatalf("backup %s: objects %v, want its control object and chunks", name, keys)
	}
	for _, k := range keys {
		data, obj := storetest.Read(t, a.Store, k)
		to := dst.Layout.Prefix + "/" + strings.TrimPrefix(k, a.Layout.Prefix+"/")
		if err := dst.Store.Put(ctx, to, bytes.NewReader(data), obj.Metadata); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRun_IncrementalMovedFrom takes a full backup of a real PostgreSQL 17
// and an incremental one on it into the old site, then copies them into a
// new site whose moved_from names the old one (archive-copy, both kept).
// Split: the new site holds the incremental backup alone; restore takes
// its copy and the parent from the old site, and the restored rows are the
// source's. Both copies, the new site's parent damaged (metadata that does
// not parse, then a chunk cut short): restore of the child is refused,
// naming the new site's object, and never falls back to the old site's
// sound parent.
func TestRun_IncrementalMovedFrom(t *testing.T) {
	const major = 17
	src, walDir, old := incrSource(t, major)
	src.Exec(t, "create table t (id int primary key, v text)")
	src.Exec(t, "insert into t select i, repeat('x', 100) from generate_series(1, 20000) i")
	ctx := incrContext(t)
	full, inc := fullAndIncremental(ctx, t, src, old)
	if inc.Parent != full.Name {
		t.Fatalf("incremental %s: parent %q, want %s", inc.Name, inc.Parent, full.Name)
	}
	src.Exec(t, "update t set v = 'after' where id <= 500")
	want := digest(t, src)
	archivetest.StoreArchivedWAL(t, src, walDir, old)
	nw := &archive.Archive{Store: storage.NewMem(), Codec: old.Codec, Layout: archive.Layout{Prefix: "new"}, Site: "new",
		MovedFrom: []*archive.Archive{old}}
	copyBackupTo(t, old, nw, inc.Name)

	restore := func(name string) (*Result, string, error) {
		t.Helper()
		dir := filepath.Join(pgtest.TempDir(t), "data")
		res, err := Run(ctx, Options{Archive: nw, TargetDir: dir, Backup: name, RestoreCommand: "cp " + walDir + "/%f %p",
			Logger: zerolog.Nop()})
		return res, dir, err
	}

	t.Run("Split", func(t *testing.T) {
		res, dir, err := restore("")
		if err != nil {
			t.Fatal(err)
		}
		if res.Backup.Name != inc.Name || res.Backup.Archive != nw {
			t.Fatalf("restored %s of site %s, want %s of site new", res.Backup.Name, nw.ArchiveOf(res.Backup).Site, inc.Name)
		}
		c := pgtest.StartDataDir(t, major, dir, nil)
		c.WaitRecoveryDone(t, 3*time.Minute)
		checkRestored(t, c, want)
		c.Stop(t)
	})

	copyBackupTo(t, old, nw, full.Name)
	refused := func(t *testing.T, wantInErr string) {
		t.Helper()
		res, _, err := restore(inc.Name)
		if err == nil {
			t.Fatalf("restore of %s restored (from site %s), want it refused: the new site's parent is damaged", inc.Name, nw.ArchiveOf(res.Backup).Site)
		}
		if !strings.Contains(err.Error(), wantInErr) {
			t.Errorf("restore of %s: %v, want the error to name %s", inc.Name, err, wantInErr)
		}
		// Chosen automatically, neither backup may come from the old site.
		if res, _, err := restore(""); err == nil && res.Backup.Archive != nw {
			t.Errorf("automatic restore took %s of site %s, want only the new site's copies", res.Backup.Name, nw.ArchiveOf(res.Backup).Site)
		}
	}

	t.Run("OwnParentMetadataDamaged", func(t *testing.T) {
		key := nw.Layout.BackupKey(full.Name)
		body, obj := storetest.Read(t, nw.Store, key)
		md := storage.Metadata{}
		for k, v := range obj.Metadata {
			md[k] = v
		}
		saved := obj.Metadata
		md[archive.MetaStartTime] = "not a time"
		if err := nw.Store.Put(ctx, key, bytes.NewReader(body), md); err != nil {
			t.Fatal(err)
		}
		refused(t, key)
		if err := nw.Store.Put(ctx, key, bytes.NewReader(body), saved); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("OwnParentChunkTruncated", func(t *testing.T) {
		var chunk string
		if err := nw.Store.List(ctx, nw.Layout.Dir("basebackup_chunk"), func(o storage.Object) error {
			if chunk == "" && strings.Contains(o.Key, full.Name) {
				chunk = o.Key
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		body, obj := storetest.Read(t, nw.Store, chunk)
		if err := nw.Store.Put(ctx, chunk, bytes.NewReader(body[:len(body)/2]), obj.Metadata); err != nil {
			t.Fatal(err)
		}
		refused(t, chunk)
	})
}
