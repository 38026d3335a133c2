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
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/storage"
)

// pgManifestJSON is a backup_manifest as PostgreSQL writes it listing
// files, path → bytes (hostile.PGManifestJSON).
func pgManifestJSON(t *testing.T, files map[string]string) string {
	t.Helper()
	return hostile.PGManifestJSON(t, files)
}

// pgManifestFiles are the files of a hostile backup with one more chunk
// holding base/1/2222 and a tablespace "ts" (OID 16400) holding one
// file, as its backup_manifest lists them: the benign first chunk's
// (hostile.benign), pg_control and backup_label of the control tar
// (hostile.Put).
func pgManifestFiles() map[string]string {
	return map[string]string{
		"PG_VERSION":                             "15\n",
		"base/1/1259":                            strings.Repeat("r", 8192),
		"base/1/2222":                            strings.Repeat("x", 8192),
		"pg_tblspc/16400/PG_15_202209061/5/3333": strings.Repeat("t", 100),
		"global/pg_control":                      strings.Repeat("c", hostile.PGControlSize),
		"backup_label":                           "START WAL LOCATION: 0/200028 (file " + hostile.StartSegment + ")\n",
	}
}

// TestRun_PGManifest: a backup whose control tar holds PostgreSQL's
// backup_manifest (hoard's, from BASE_BACKUP or local-tar) is restored
// only when every file restored has the size and CRC-32C its entry
// lists, and every file listed is restored: a file's bytes changed (a
// site without keys: anyone who can write the bucket rewrites a chunk and
// its sizes in the control object), a file left out, one added, or
// pg_control differing from its entry fail the restore with
// ErrPGManifest and ErrIncomplete, naming the file, what its entry lists
// and what was found, and pg_control is not written.
func TestRun_PGManifest(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(files map[string]string) // the files restored, from what backup_manifest lists
		want []string                      // "" for a restore that succeeds
	}{
		{"OK", func(map[string]string) {}, nil},
		{"ErrChanged", func(f map[string]string) { f["base/1/2222"] = strings.Repeat("y", 8192) },
			[]string{`"base/1/2222"`, "CRC-32C", "--basebackup"}},
		{"ErrSize", func(f map[string]string) { f["base/1/2222"] = strings.Repeat("x", 8191) },
			[]string{`"base/1/2222"`, "8191 bytes restored", "lists 8192"}},
		{"ErrTablespaceChanged", func(f map[string]string) { f["pg_tblspc/16400/PG_15_202209061/5/3333"] = strings.Repeat("u", 100) },
			[]string{`"pg_tblspc/16400/PG_15_202209061/5/3333"`, "CRC-32C"}},
		{"ErrMissing", func(f map[string]string) { delete(f, "base/1/2222") },
			[]string{"lists files that were not restored", `"base/1/2222"`}},
		{"ErrNotListed", func(f map[string]string) { f["base/1/4444"] = "z" },
			[]string{`"base/1/4444"`, "not listed"}},
		{"ErrPGControl", func(f map[string]string) { f["global/pg_control"] = strings.Repeat("d", hostile.PGControlSize) },
			[]string{`"global/pg_control"`, "CRC-32C"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			listed := pgManifestFiles()
			files := pgManifestFiles()
			tc.edit(files)
			var chunk []hostile.Member
			for _, p := range []string{"base/1/2222", "base/1/4444"} {
				if body, ok := files[p]; ok {
					chunk = append(chunk, hostile.Member{Name: "pgdata/" + p, Body: body})
				}
			}
			spcFile := "pg_tblspc/16400/PG_15_202209061/5/3333"
			spc := []hostile.Member{{Name: "tablespaces/ts/" + strings.TrimPrefix(spcFile, "pg_tblspc/16400/"), Body: files[spcFile]}}
			b := hostile.Backup{Name: "2026-01-02_03-00_0", PGManifest: true,
				Tablespaces: map[string]archive.ManifestTablespace{"ts": {Path: "/nonexistent/ts", OID: 16400}},
				Chunks:      [][]hostile.Member{chunk, spc},
				Control:     []hostile.Member{{Name: archive.ControlPGManifest, Body: pgManifestJSON(t, listed)}}}
			if files["global/pg_control"] != listed["global/pg_control"] {
				b.PGControl = files["global/pg_control"]
			}
			e := hostile.NewEnv(t)
			st, _, err := restoreHostile(t, e, b, map[string]string{"ts": filepath.Join(e.Parent, "spc")})
			if tc.want == nil {
				if err != nil {
					t.Fatalf("restore of %s: %v", st.Name, err)
				}
				for _, p := range []string{"base/1/2222", "backup_manifest", "global/pg_control", "pg_tblspc/16400/PG_15_202209061/5/3333"} {
					if _, err := os.Stat(filepath.Join(e.Target(), p)); err != nil {
						t.Errorf("%s: %v", p, err)
					}
				}
				return
			}
			t.Log(err)
			if !errors.Is(err, ErrPGManifest) || !errors.Is(err, ErrIncomplete) {
				t.Fatalf("restore of %s whose files differ from its backup_manifest: %v, want ErrPGManifest and ErrIncomplete", st.Name, err)
			}
			for _, w := range tc.want {
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

// TestRun_ErrPGManifestMissing: a backup whose signed metadata says its
// control tar holds backup_manifest, and whose control tar holds none, is
// refused before anything is written; where the metadata does not say so
// (PGHoard's backups), nothing is compared.
func TestRun_ErrPGManifestMissing(t *testing.T) {
	c := &archive.Codec{Compression: compress.Zstd}
	archivetest.AddKeys(t, c)
	a := archivetest.New(t, storage.NewMem(), c)
	st := hostile.Put(t, a, hostile.Backup{Name: "2026-01-02_03-00_0", PGManifest: true, Signed: true})
	e := hostile.NewEnv(t)
	_, err := Run(context.Background(), Options{Archive: a, TargetDir: e.Target(), RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop()})
	if !errors.Is(err, ErrPGManifest) || errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), st.ControlKey) {
		t.Fatalf("restore of %s without its backup_manifest: %v, want ErrPGManifest naming %s, before writing", st.Name, err, st.ControlKey)
	}
	if ents, _ := os.ReadDir(e.Target()); len(ents) > 0 {
		t.Errorf("the refused restore wrote %d entries", len(ents))
	}
}
