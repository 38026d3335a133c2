package restore

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/hostile"
)

// TestRun_DeltaPGManifest: a delta backup of hoard's, whose control tar
// holds the backup_manifest written from the bytes it stored
// (hoard-pg-manifest), is restored only when every file written from a
// delta object, the manifest's embedded content or a bundle has the size
// and CRC-32C its entry lists, and every file listed is restored. In a
// site without keys, whoever can write the bucket can point a file's
// delta reference at another stored object of the same size, or change
// an embedded file or a bundle's member consistently with the control
// object's sizes: each object passes its own checks, backup_manifest
// does not. Such a restore fails with ErrPGManifest and ErrIncomplete,
// naming the file, and pg_control is not written. A delta object that
// is not the bytes of its name fails as before with ErrDeltaDigest, the
// more precise cause.
func TestRun_DeltaPGManifest(t *testing.T) {
	const (
		relFile   = hostile.DeltaRelFile
		otherFile = hostile.DeltaOtherFile
		embedFile = hostile.DeltaEmbedFile
		bundled   = hostile.DeltaBundled
		spcFile   = hostile.DeltaSpcFile
	)
	read := hostile.NewDeltaPGManifest().Read
	for _, tc := range []struct {
		name string
		// edit changes the stored backup: the delta manifest's files
		// (by path), the delta objects, and the second bundle's files.
		edit    func(delta map[string]*archive.DeltaFile, objects, bundle map[string]string)
		want    error    // nil: the restore succeeds
		wantMsg []string // what the error says
	}{
		{"OK", func(map[string]*archive.DeltaFile, map[string]string, map[string]string) {}, nil, nil},
		{"ErrReference", func(d map[string]*archive.DeltaFile, _, _ map[string]string) {
			d[relFile].Hexdigest = hostile.Digest(read[otherFile])
		}, ErrPGManifest, []string{`"` + relFile + `"`, "CRC-32C", "--basebackup"}},
		{"ErrTablespaceReference", func(d map[string]*archive.DeltaFile, _, _ map[string]string) {
			d[spcFile].Hexdigest = hostile.Digest(read[relFile])
		}, ErrPGManifest, []string{`"` + spcFile + `"`, "CRC-32C"}},
		{"ErrEmbedded", func(d map[string]*archive.DeltaFile, _, _ map[string]string) {
			b64 := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("f", 100)))
			d[embedFile].ContentB64 = &b64
		}, ErrPGManifest, []string{`"` + embedFile + `"`, "CRC-32C"}},
		{"ErrEmbeddedSize", func(d map[string]*archive.DeltaFile, _, _ map[string]string) {
			b64 := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("e", 99)))
			d[embedFile].ContentB64, d[embedFile].FileSize = &b64, 99
		}, ErrPGManifest, []string{`"` + embedFile + `"`, "99 bytes restored", "lists 100"}},
		{"ErrBundle", func(_ map[string]*archive.DeltaFile, _, b map[string]string) {
			b[bundled] = strings.Repeat("B", 200)
		}, ErrPGManifest, []string{`"` + bundled + `"`, "CRC-32C"}},
		{"ErrMissing", func(d map[string]*archive.DeltaFile, _, _ map[string]string) {
			delete(d, relFile)
		}, ErrPGManifest, []string{"lists files that were not restored", `"` + relFile + `"`}},
		{"ErrNotListed", func(d map[string]*archive.DeltaFile, _, _ map[string]string) {
			d["base/1/7777"] = &archive.DeltaFile{RelativePath: "base/1/7777", FileSize: 8192, Hexdigest: hostile.Digest(read[otherFile])}
		}, ErrPGManifest, []string{`"base/1/7777"`, "not listed"}},
		{"ErrSwappedObject", func(_ map[string]*archive.DeltaFile, o, _ map[string]string) {
			o[hostile.Digest(read[relFile])] = read[otherFile]
		}, ErrDeltaDigest, []string{hostile.Digest(read[relFile]), relFile}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := hostile.NewDeltaPGManifest()
			tc.edit(d.Delta, d.Objects, d.Bundle)
			b := d.Backup(t)
			e := hostile.NewEnv(t)
			st, res, err := restoreHostile(t, e, b, map[string]string{"ts": filepath.Join(e.Parent, "spc")})
			if tc.want == nil {
				if err != nil {
					t.Fatalf("restore of %s: %v", st.Name, err)
				}
				if got, want := res.PGManifestFiles, len(read); got != want {
					t.Errorf("PGManifestFiles = %d, want %d", got, want)
				}
				for p, body := range read {
					if p == "global/pg_control" {
						continue // restore changes it
					}
					if got, err := os.ReadFile(filepath.Join(e.Target(), p)); err != nil || string(got) != body {
						t.Errorf("%s: %d bytes, %v; want the %d bytes read", p, len(got), err, len(body))
					}
				}
				return
			}
			t.Log(err)
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrIncomplete) {
				t.Fatalf("restore of %s: %v, want %v and ErrIncomplete", st.Name, err, tc.want)
			}
			for _, w := range tc.wantMsg {
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
