package restore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/storage"
)

// movedSite returns a new site that moved from the fixture's site: its own
// store and prefix, and a codec without the old site's private keys, so
// that reading the old backup through it would fail.
func movedSite(t *testing.T, f *fixture, segments ...string) *archive.Archive {
	t.Helper()
	a := &archive.Archive{
		Store:     storage.NewMem(),
		Codec:     &archive.Codec{},
		Layout:    archive.Layout{Prefix: "new"},
		Site:      "new",
		MovedFrom: []*archive.Archive{f.a},
	}
	for _, seg := range segments {
		data := []byte("wal " + seg)
		if _, err := a.Codec.Put(context.Background(), a.Store, a.Layout.WALKey(seg), bytes.NewReader(data), int64(len(data)), nil); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

func TestRun_MovedFrom(t *testing.T) {
	f := newFixture(t, "basebackup", nil)
	// The old site also holds the history of timeline 2, which forked at
	// the start of segment 4; the new site holds the WAL after the move.
	f.put(t, f.a.Layout.WALKey("00000002.history"), []byte("1\t0/4000000\tno recovery target specified\n"), nil)
	a := movedSite(t, f, "000000020000000000000004", "000000020000000000000005")
	o := f.options(filepath.Join(t.TempDir(), "data"))
	o.Archive = a
	o.Target = Target{LSN: 0x5000010}
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Backup.Name != testBackup || res.Backup.Archive != f.a {
		t.Errorf("restored %s from %v, want %s from the old site", res.Backup.Name, res.Backup.Archive, testBackup)
	}
	if res.WALArchivedThrough != "000000020000000000000005" {
		t.Errorf("WALArchivedThrough = %s, want 000000020000000000000005", res.WALArchivedThrough)
	}
	for name := range f.members(t) {
		if _, err := os.Stat(filepath.Join(o.TargetDir, strings.TrimPrefix(name, "pgdata/"))); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(o.TargetDir, "global", "pg_control")); err != nil {
		t.Errorf("control tar not extracted: %v", err)
	}
}

func TestRun_MovedFromErrMissingWAL(t *testing.T) {
	f := newFixture(t, "basebackup", nil)
	a := movedSite(t, f, "000000010000000000000005")
	o := f.options(filepath.Join(t.TempDir(), "data"))
	o.Archive = a
	o.Target = Target{LSN: 0x5000010}
	_, err := Run(context.Background(), o)
	if !errors.Is(err, ErrMissingWAL) || !strings.Contains(err.Error(), "000000010000000000000004") {
		t.Fatalf("Run = %v, want ErrMissingWAL naming 000000010000000000000004", err)
	}
	if _, err := os.Stat(o.TargetDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("target touched before the WAL check failed: %v", err)
	}
}

func TestListWAL_FirstSiteWins(t *testing.T) {
	f := newFixture(t, "basebackup", nil)
	a := movedSite(t, f, "000000010000000000000003", "000000010000000000000004")
	w, err := listWAL(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	for seg, want := range map[string]*archive.Archive{
		"000000010000000000000002": f.a, "000000010000000000000003": a, "000000010000000000000004": a,
	} {
		if w[seg] != want {
			t.Errorf("%s held by %v, want site %s", seg, w[seg], want.Site)
		}
	}
	if len(w) != 3 {
		t.Errorf("listWAL = %v, want 3 segments", w)
	}
}

// copiedSite returns a new site that moved from the fixture's site after
// archive-copy: its own store holding every object of the old one under
// the same keys, same bytes, as the operator's both sites hold them.
func copiedSite(t *testing.T, f *fixture) *archive.Archive {
	t.Helper()
	a := &archive.Archive{Store: storage.NewMem(), Codec: f.a.Codec, Layout: f.a.Layout, Site: "new", MovedFrom: []*archive.Archive{f.a}}
	archivetest.CopyAll(t, f.a.Store, a.Store)
	return a
}

// TestRun_MovedFromCopied: with the same backup in the site and in the
// site it moved from (archive-copy, both kept), restore takes the site's
// own copy, named or chosen, and a damaged copy left in the old site
// stops neither.
func TestRun_MovedFromCopied(t *testing.T) {
	for _, tc := range []struct {
		name, backup string
		damageOld    bool
	}{{"Auto", "", false}, {"Named", testBackup, false}, {"AutoOldDamaged", "", true}, {"NamedOldDamaged", testBackup, true}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "basebackup", nil)
			a := copiedSite(t, f)
			if tc.damageOld {
				// Metadata no listing can parse, in the old site only.
				archivetest.PlantCopy(t, f.a.Store, f.a.Layout.BackupKey(testBackup), f.a.Layout.BackupKey(testBackup),
					func(md storage.Metadata) { md["start-time"] = "not a time" })
			}
			o := f.options(filepath.Join(t.TempDir(), "data"))
			o.Archive = a
			o.Backup = tc.backup
			res, err := Run(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if res.Backup.Name != testBackup || res.Backup.Archive != a {
				t.Errorf("restored %s from site %s, want %s from the site's own copy", res.Backup.Name, a.ArchiveOf(res.Backup).Site, testBackup)
			}
		})
	}
}
