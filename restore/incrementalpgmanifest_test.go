package restore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/hostile"
)

// chainFiles are the files of a hostile incremental chain's two backups
// (a full one and an incremental on it), path → bytes, as their
// backup_manifests list them: relative to the data directory, a
// tablespace's under pg_tblspc/<oid>/ ("old", renamed "new" by the
// incremental backup: 16400; "gone", which the incremental backup no
// longer has: 16500), incremental files as INCREMENTAL.<name>.
type chainFiles struct{ parent, child map[string]string }

const (
	chainSpc     = "pg_tblspc/16400/PG_15_202209061/5/"
	chainGoneSpc = "pg_tblspc/16500/PG_15_202209061/5/"
	chainLabel   = "START WAL LOCATION: 0/200028 (file " + hostile.StartSegment + ")\n"
)

// newChainFiles is the chain as a sound backup would list and hold it:
// the parent's base/1/2222 of two blocks, whose second block the child
// changes (INCREMENTAL.2222), base/1/3333, which the child no longer has,
// a tablespace file the child rewrites whole, and one in the tablespace
// it dropped; the child's new base/1/4444, and its backup_label naming
// the parent's start (INCREMENTAL FROM), which restore strips.
func newChainFiles() chainFiles {
	common := func(label string) map[string]string {
		return map[string]string{
			"PG_VERSION":        "15\n",
			"base/1/1259":       strings.Repeat("r", 8192),
			"global/pg_control": strings.Repeat("c", hostile.PGControlSize),
			"backup_label":      label,
		}
	}
	f := chainFiles{parent: common(chainLabel), child: common(chainLabel + "INCREMENTAL FROM LSN: 0/200028\nINCREMENTAL FROM TLI: 1\n")}
	f.parent["base/1/2222"] = string(fileOfBlocks('a', 'b'))
	f.parent["base/1/3333"] = strings.Repeat("d", 100)
	f.parent[chainSpc+"7777"] = strings.Repeat("t", 100)
	f.parent[chainGoneSpc+"8888"] = strings.Repeat("g", 50)
	f.child["base/1/INCREMENTAL.2222"] = string(incrementalFile(2, map[uint32]byte{1: 'B'}))
	f.child["base/1/4444"] = strings.Repeat("w", 300)
	f.child[chainSpc+"7777"] = strings.Repeat("T", 100)
	return f
}

// chainBackup is one backup of the hostile chain holding files (the
// benign first chunk holds PG_VERSION and base/1/1259), listing listed
// in its backup_manifest; tablespaces maps the tablespace OIDs' path
// prefixes to the backup's names for them.
func chainBackup(t *testing.T, name, parent string, listed, files map[string]string, tablespaces map[string]string) hostile.Backup {
	t.Helper()
	var chunk []hostile.Member
	spcChunks := map[string][]hostile.Member{}
	for _, p := range mapKeys(files) {
		switch p {
		case "PG_VERSION", "base/1/1259", "global/pg_control", "backup_label":
			continue
		}
		placed := false
		for prefix, spc := range tablespaces {
			if rest, ok := strings.CutPrefix(p, prefix); ok {
				spcChunks[spc] = append(spcChunks[spc], hostile.Member{Name: "tablespaces/" + spc + "/" + rest, Body: files[p]})
				placed = true
			}
		}
		if !placed {
			chunk = append(chunk, hostile.Member{Name: "pgdata/" + p, Body: files[p]})
		}
	}
	b := hostile.Backup{Name: name, Parent: parent, PGManifest: true, NoLabel: true,
		Tablespaces: map[string]archive.ManifestTablespace{},
		Chunks:      [][]hostile.Member{chunk},
		Control: []hostile.Member{
			{Name: archive.ControlBackupLabel, Body: files["backup_label"]},
			{Name: archive.ControlPGManifest, Body: pgManifestJSON(t, listed)},
		},
		Manifest: func(m *archive.Manifest) {
			m.Hoard = &archive.HoardManifest{SystemID: "7000000000000000001", StartLSN: "0/200028", StartTimeline: 1, PGManifest: true}
			if parent != "" {
				m.Hoard.StartLSN = "0/300028"
				m.Hoard.Incremental = &archive.IncrementalParent{Parent: parent, StartLSN: "0/200028", Timeline: 1}
			}
		},
	}
	if files["global/pg_control"] != listed["global/pg_control"] {
		b.PGControl = files["global/pg_control"]
	}
	for prefix, spc := range tablespaces {
		oid := uint32(16400)
		if strings.HasPrefix(prefix, "pg_tblspc/16500/") {
			oid = 16500
		}
		b.Tablespaces[spc] = archive.ManifestTablespace{Path: "/nonexistent/" + spc, OID: oid}
		b.Chunks = append(b.Chunks, spcChunks[spc])
	}
	return b
}

// TestRun_IncrementalPGManifest: an incremental chain (a full backup and
// an incremental one on it, each carrying PostgreSQL's backup_manifest)
// is restored only when each backup's files, as its chunks and control
// tar hold them, have the sizes and CRC-32Cs its own backup_manifest
// lists, and each holds every file its backup_manifest lists: the
// incremental's INCREMENTAL file (under that name), a whole file,
// backup_label before its INCREMENTAL FROM lines go, a parent's file, a
// parent's tablespace file, or a file listed but held by no chunk, in
// either backup, fail the restore with ErrPGManifest and ErrIncomplete,
// naming the backup, the object and the file, and pg_control is not
// written. A parent's file the restored backup no longer has is compared
// when held but need not be; the files of a tablespace it dropped are
// neither written nor required; a parent's control tar is not written.
func TestRun_IncrementalPGManifest(t *testing.T) {
	const parent, child = "2026-01-02_03-00_0", "2026-01-02_03-00_1"
	for _, tc := range []struct {
		name string
		// edit changes the files stored (held) or listed from the sound
		// chain's.
		edit func(held, listed *chainFiles)
		// want are what the error must say, the first the backup at
		// fault and "chunk"/"control" the kind of object; nil for a
		// restore that succeeds.
		want []string
	}{
		{"OK", func(_, _ *chainFiles) {}, nil},
		{"ErrIncrementalChanged", func(h, _ *chainFiles) {
			h.child["base/1/INCREMENTAL.2222"] = string(incrementalFile(2, map[uint32]byte{1: 'X'}))
		}, []string{child, "chunk", `"base/1/INCREMENTAL.2222"`, "CRC-32C"}},
		{"ErrIncrementalHeader", func(h, _ *chainFiles) {
			b := []byte(h.child["base/1/INCREMENTAL.2222"])
			b[0] ^= 0xff // the magic number: applying it fails too
			h.child["base/1/INCREMENTAL.2222"] = string(b)
		}, []string{child, "chunk", `"base/1/INCREMENTAL.2222"`, "CRC-32C"}},
		{"ErrWholeChanged", func(h, _ *chainFiles) { h.child["base/1/4444"] = strings.Repeat("v", 300) },
			[]string{child, "chunk", `"base/1/4444"`, "CRC-32C"}},
		{"ErrTablespaceChanged", func(h, _ *chainFiles) { h.child[chainSpc+"7777"] = strings.Repeat("U", 99) },
			[]string{child, "chunk", `"` + chainSpc + `7777"`, "99 bytes restored"}},
		{"ErrLabelChanged", func(h, _ *chainFiles) {
			h.child["backup_label"] = chainLabel + "INCREMENTAL FROM LSN: 0/100028\nINCREMENTAL FROM TLI: 1\n"
		}, []string{child, "control object", `"backup_label"`, "CRC-32C"}},
		{"ErrMissing", func(_, l *chainFiles) { l.child["base/1/5555"] = "e" },
			[]string{child, "control object", "lists files that were not restored", `"base/1/5555"`}},
		{"ErrNotListed", func(h, _ *chainFiles) { h.child["base/1/6666"] = "n" },
			[]string{child, "chunk", `"base/1/6666"`, "not listed"}},
		{"ErrParentChanged", func(h, _ *chainFiles) { h.parent["base/1/2222"] = string(fileOfBlocks('a', 'x')) },
			[]string{parent, "chunk", `"base/1/2222"`, "CRC-32C"}},
		{"ErrParentDroppedChanged", func(h, _ *chainFiles) { h.parent["base/1/3333"] = strings.Repeat("D", 100) },
			[]string{parent, "chunk", `"base/1/3333"`, "CRC-32C"}},
		{"ErrParentTablespaceChanged", func(h, _ *chainFiles) { h.parent[chainSpc+"7777"] = strings.Repeat("u", 100) },
			[]string{parent, "chunk", `"` + chainSpc + `7777"`, "CRC-32C"}},
		{"ErrParentMissing", func(h, _ *chainFiles) { delete(h.parent, "base/1/2222") },
			[]string{parent, "control object", "lists files that were not restored", `"base/1/2222"`}},
		{"ErrParentMissingReplaced", func(_, l *chainFiles) { l.parent["base/1/4444"] = "p" },
			[]string{parent, "control object", "lists files that were not restored", `"base/1/4444"`}},
		// A file the restored backup no longer has need not be held.
		{"ParentDroppedMissing", func(h, _ *chainFiles) { delete(h.parent, "base/1/3333") }, nil},
		{"ParentGoneTablespaceMissing", func(h, _ *chainFiles) { delete(h.parent, chainGoneSpc+"8888") }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			held, listed := newChainFiles(), newChainFiles()
			tc.edit(&held, &listed)
			a := hostileArchive(t)
			pst := hostile.Put(t, a, chainBackup(t, parent, "", listed.parent, held.parent,
				map[string]string{"pg_tblspc/16400/": "old", "pg_tblspc/16500/": "gone"}))
			cst := hostile.Put(t, a, chainBackup(t, child, parent, listed.child, held.child,
				map[string]string{"pg_tblspc/16400/": "new"}))
			e := hostile.NewEnv(t)
			spcDir := filepath.Join(e.Parent, "new")
			res, err := Run(context.Background(), Options{
				Archive: a, TargetDir: e.Target(), Backup: child, TablespaceDirs: map[string]string{"new": spcDir},
				RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop(),
			})
			if tc.want == nil {
				if err != nil {
					t.Fatalf("restore of %s: %v", child, err)
				}
				for p, want := range map[string]string{
					"base/1/2222": string(fileOfBlocks('a', 'B')), "base/1/4444": strings.Repeat("w", 300),
					chainSpc + "7777": strings.Repeat("T", 100), "backup_label": chainLabel,
				} {
					if got, err := os.ReadFile(filepath.Join(e.Target(), p)); err != nil || string(got) != want {
						t.Errorf("%s: %d bytes (%v), want %d", p, len(got), err, len(want))
					}
				}
				for _, p := range []string{"base/1/3333", "base/1/INCREMENTAL.2222", "pg_tblspc/16500"} {
					if _, err := os.Lstat(filepath.Join(e.Target(), p)); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("%s: %v, want it absent", p, err)
					}
				}
				// The parent's 8 entries less its control tar's two
				// files and the dropped tablespace's file, which are not
				// restored; the child's 7.
				if got, want := res.PGManifestFiles, 5+7; got != want {
					t.Errorf("PGManifestFiles = %d, want %d", got, want)
				}
				return
			}
			t.Log(err)
			if !errors.Is(err, ErrPGManifest) || !errors.Is(err, ErrIncomplete) {
				t.Fatalf("restore of %s whose chain's files differ from their backup_manifests: %v, want ErrPGManifest and ErrIncomplete", child, err)
			}
			objects := map[string][]string{parent: append([]string{pst.ControlKey}, pst.ChunkKeys...), child: append([]string{cst.ControlKey}, cst.ChunkKeys...)}
			named := false
			for _, key := range objects[tc.want[0]] {
				named = named || strings.Contains(err.Error(), key)
			}
			if !named {
				t.Errorf("error %q names none of %s's objects %v", err, tc.want[0], objects[tc.want[0]])
			}
			for _, w := range append(tc.want, "backup "+tc.want[0]) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if _, err := os.Lstat(filepath.Join(e.Target(), "global", "pg_control")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("pg_control written: %v", err)
			}
		})
	}
}

// TestRun_ErrIncrementalParentNoPGManifest: a parent of an incremental
// chain whose control tar holds no backup_manifest (every backup of a
// chain has one; its metadata, unsigned here, is not believed) breaks the
// chain before anything is written, the parent's control object named.
func TestRun_ErrIncrementalParentNoPGManifest(t *testing.T) {
	const parent, child = "2026-01-02_03-00_0", "2026-01-02_03-00_1"
	f := newChainFiles()
	a := hostileArchive(t)
	pb := chainBackup(t, parent, "", f.parent, f.parent, map[string]string{"pg_tblspc/16400/": "old", "pg_tblspc/16500/": "gone"})
	pb.Control = pb.Control[:1] // backup_label only
	pst := hostile.Put(t, a, pb)
	hostile.Put(t, a, chainBackup(t, child, parent, f.child, f.child, map[string]string{"pg_tblspc/16400/": "new"}))
	e := hostile.NewEnv(t)
	_, err := Run(context.Background(), Options{
		Archive: a, TargetDir: e.Target(), Backup: child, TablespaceDirs: map[string]string{"new": filepath.Join(e.Parent, "new")},
		RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop(),
	})
	if !errors.Is(err, ErrBrokenChain) || !errors.Is(err, ErrPGManifest) || !strings.Contains(err.Error(), pst.ControlKey) {
		t.Fatalf("restore of %s whose parent holds no backup_manifest: %v, want ErrBrokenChain and ErrPGManifest naming %s", child, err, pst.ControlKey)
	}
	if ents, _ := os.ReadDir(e.Target()); len(ents) > 0 {
		t.Errorf("the refused restore wrote %d entries", len(ents))
	}
}
