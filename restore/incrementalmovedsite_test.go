package restore

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRun_IncrementalParentMovedSiteNamed: site "new" moved from site
// "old", each in its own storage with the same prefix (archive-copy
// keeps the keys). The incremental backup is copied into the new site,
// its parent is in the old site only, and the parent's control object
// there is damaged: cut short, replaced by the child's (another start),
// or its metadata does not parse, or it holds no backup_manifest. Restore of the child names the control object's key, which the
// new site's storage could hold as well, without the site: the operator
// cannot tell which copy to fix. The error must name site old.
func TestRun_IncrementalParentMovedSiteNamed(t *testing.T) {
	const parent, child = "2026-01-02_03-00_0", "2026-01-02_03-00_1"
	cases := []struct {
		name   string
		damage func(t *testing.T, old *archive.Archive, pst, cst hostile.Stored)
	}{
		{"CutShort", func(t *testing.T, old *archive.Archive, pst, _ hostile.Stored) {
			body, obj := storetest.Read(t, old.Store, pst.ControlKey)
			if err := old.Store.Put(context.Background(), pst.ControlKey, bytes.NewReader(body[:len(body)/2]), obj.Metadata); err != nil {
				t.Fatal(err)
			}
		}},
		{"AnotherStart", func(t *testing.T, old *archive.Archive, pst, cst hostile.Stored) {
			body, _ := storetest.Read(t, old.Store, cst.ControlKey)
			_, obj := storetest.Read(t, old.Store, pst.ControlKey)
			md := storage.Metadata{}
			for k, v := range obj.Metadata {
				md[k] = v
			}
			if err := old.Store.Put(context.Background(), pst.ControlKey, bytes.NewReader(body), md); err != nil {
				t.Fatal(err)
			}
		}},
		{"MetadataDamaged", func(t *testing.T, old *archive.Archive, pst, _ hostile.Stored) {
			body, obj := storetest.Read(t, old.Store, pst.ControlKey)
			md := storage.Metadata{}
			for k, v := range obj.Metadata {
				md[k] = v
			}
			md[archive.MetaStartTime] = "not a time"
			if err := old.Store.Put(context.Background(), pst.ControlKey, bytes.NewReader(body), md); err != nil {
				t.Fatal(err)
			}
		}},
		// The parent's backup_manifest checks (levelErr) named the
		// parent's key alone.
		{"NoPGManifest", func(t *testing.T, old *archive.Archive, pst, _ hostile.Stored) {
			rewriteControl(t, old, pst.ControlKey, dropMember(archive.ControlPGManifest))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, old, pst, cst := putChain(t, parent, child)
			old.Site = "old"
			nw := &archive.Archive{Store: storage.NewMem(), Codec: old.Codec, Layout: old.Layout, Site: "new",
				MovedFrom: []*archive.Archive{old}}
			copyBackupTo(t, old, nw, child)
			tc.damage(t, old, pst, cst)
			// The child's objects are the new site's now.
			for _, k := range append([]string{cst.ControlKey}, cst.ChunkKeys...) {
				if err := old.Store.Delete(context.Background(), k); err != nil {
					t.Fatal(err)
				}
			}
			e := hostile.NewEnv(t)
			_, err := Run(context.Background(), Options{Archive: nw, TargetDir: e.Target(), Backup: child,
				TablespaceDirs: map[string]string{"new": e.Parent + "/new"},
				RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop()})
			if err == nil {
				t.Fatalf("restore of %s succeeded with its parent's control object damaged", child)
			}
			if !strings.Contains(err.Error(), "of site old") || !strings.Contains(err.Error(), parent) {
				t.Errorf("restore of %s: %v, want the error to name the parent's control object of site old", child, err)
			}
		})
	}
}
