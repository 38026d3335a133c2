package verify

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/restore"
)

// pgManifestRead are the files of the hostile backups below as their
// backup_manifest lists them, path → bytes: the benign first chunk's
// (or bundle's) files, pg_control and backup_label of the control tar
// (hostile.Put), a relation file, a second one, and one of tablespace
// "ts" (OID 16400).
func pgManifestRead() map[string]string {
	return map[string]string{
		"PG_VERSION":                             "15\n",
		"base/1/1259":                            strings.Repeat("r", 8192),
		"base/1/2222":                            strings.Repeat("x", 8192),
		"base/1/3333":                            strings.Repeat("y", 8192),
		"pg_tblspc/16400/PG_15_202209061/5/6666": strings.Repeat("t", 100),
		"global/pg_control":                      strings.Repeat("c", hostile.PGControlSize),
		"backup_label":                           "START WAL LOCATION: 0/200028 (file " + hostile.StartSegment + ")\n",
	}
}

// pgManifestCase is one backup whose files (path → bytes, as stored)
// differ from what its backup_manifest lists (listed) in the way the
// case's name says; want is what a broken backup's problem must say.
type pgManifestCase struct {
	name string
	edit func(listed, files map[string]string)
	want []string // nil: the backup is ok
}

var pgManifestCases = []pgManifestCase{
	{"OK", func(map[string]string, map[string]string) {}, nil},
	{"LeftOutNotMissing", func(l, _ map[string]string) {
		// Listed by the server, left out by hoard's filter (archive.LeftOut).
		l["postgresql.conf.old"], l["pg_tblspc/16400/PG_15_202209061/5/junk.tmp"] = "old", "junk"
	}, nil},
	{"ErrChanged", func(_, f map[string]string) { f["base/1/2222"] = strings.Repeat("z", 8192) },
		[]string{`"base/1/2222"`, "CRC-32C"}},
	{"ErrSize", func(_, f map[string]string) { f["base/1/2222"] = strings.Repeat("x", 8191) },
		[]string{`"base/1/2222"`, "8191 bytes", "lists 8192"}},
	{"ErrTablespaceChanged", func(_, f map[string]string) { f["pg_tblspc/16400/PG_15_202209061/5/6666"] = strings.Repeat("u", 100) },
		[]string{`"pg_tblspc/16400/PG_15_202209061/5/6666"`, "CRC-32C"}},
	{"ErrMissing", func(_, f map[string]string) { delete(f, "base/1/2222") },
		[]string{"lists files that were not restored", `"base/1/2222"`}},
	{"ErrNotListed", func(_, f map[string]string) { f["base/1/4444"] = "z" },
		[]string{`"base/1/4444"`, "not listed"}},
	{"ErrPGControl", func(_, f map[string]string) { f["global/pg_control"] = strings.Repeat("d", hostile.PGControlSize) },
		[]string{`"global/pg_control"`, "CRC-32C"}},
	{"ErrBackupLabel", func(_, f map[string]string) { f["backup_label"] += "LABEL: altered\n" },
		[]string{`"backup_label"`, "bytes"}},
}

// checkPGManifestReport asserts what verify --full found for a backup
// whose problem must say each of want (nil: the backup is ok) and, unless
// precise (a more precise cause than backup_manifest: an object not the
// bytes of its name), restore's wording for a file that differs from
// backup_manifest.
func checkPGManifestReport(t *testing.T, want []string, precise bool, rep *Report) {
	t.Helper()
	if want == nil {
		if !rep.OK() {
			t.Fatalf("verify --full of a backup whose files are its backup_manifest's: not ok:\n%s", problems(rep))
		}
		return
	}
	b := rep.Backups[0]
	if b.Status != StatusBroken || b.Restorable {
		t.Fatalf("verify --full of a backup restore refuses: %s (restorable %v), want %s:\n%s", b.Status, b.Restorable, StatusBroken, problems(rep))
	}
	got := strings.Join(b.Problems, "\n")
	if !precise {
		want = append(want, "differ from the backup's backup_manifest", "damaged or was altered")
	} else if strings.Contains(got, "backup_manifest") {
		t.Errorf("problems name backup_manifest, not the more precise cause:\n%s", got)
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("problems do not say %q:\n%s", w, got)
		}
	}
}

// TestRun_PGManifest: verify --full compares every file of a backup
// whose control tar holds PostgreSQL's backup_manifest (hoard's, from
// BASE_BACKUP or local-tar) with its entry as restore does
// (restore's TestRun_PGManifest): a file's bytes or size changed
// consistently with the control object (in a site without keys anyone
// who can write the bucket can), a file of a tablespace changed, a
// listed file missing, a file not listed, pg_control or backup_label
// changed: the backup is broken, naming the file, with restore's
// "damaged or altered"; a listed file the backup leaves out on purpose
// (archive.LeftOut) is not missing. Before, verify --full called every
// one of them ok and restore refused it.
func TestRun_PGManifest(t *testing.T) {
	for _, tc := range pgManifestCases {
		t.Run(tc.name, func(t *testing.T) {
			listed, files := pgManifestRead(), pgManifestRead()
			tc.edit(listed, files)
			var chunk []hostile.Member
			for _, p := range []string{"base/1/2222", "base/1/3333", "base/1/4444"} {
				if body, ok := files[p]; ok {
					chunk = append(chunk, hostile.Member{Name: "pgdata/" + p, Body: body})
				}
			}
			const spcFile = "pg_tblspc/16400/PG_15_202209061/5/6666"
			spc := []hostile.Member{{Name: "tablespaces/ts/" + strings.TrimPrefix(spcFile, "pg_tblspc/16400/"), Body: files[spcFile]}}
			control := []hostile.Member{{Name: archive.ControlPGManifest, Body: hostile.PGManifestJSON(t, listed)}}
			b := hostile.Backup{Name: "2026-01-02_03-00_0", PGManifest: true,
				Tablespaces: map[string]archive.ManifestTablespace{"ts": {Path: "/nonexistent/ts", OID: 16400}},
				Chunks:      [][]hostile.Member{chunk, spc}, PGControl: files["global/pg_control"]}
			if files["backup_label"] != listed["backup_label"] {
				b.NoLabel = true
				control = append(control, hostile.Member{Name: archive.ControlBackupLabel, Body: files["backup_label"]})
			}
			b.Control = control
			a := testArchive(t)
			hostile.Put(t, a, b)
			checkPGManifestReport(t, tc.want, false, run(t, a, true))
		})
	}
}

// TestRun_DeltaPGManifest: verify --full compares every file of one of
// hoard's delta backups (hoard-pg-manifest) with its backup_manifest as
// restore does (restore's TestRun_DeltaPGManifest): files of delta
// objects, embedded in the manifest and in bundles. A reference pointed
// at another stored object of the same size (which passes that object's
// own digest check), an embedded file or a bundle's member changed, a
// file dropped from or added to the delta manifest: the backup is broken,
// naming the file. A delta object not the bytes of its name is named as
// such, the more precise cause.
func TestRun_DeltaPGManifest(t *testing.T) {
	const (
		relFile   = hostile.DeltaRelFile
		otherFile = hostile.DeltaOtherFile
		spcFile   = hostile.DeltaSpcFile
		embedFile = hostile.DeltaEmbedFile
		bundled   = hostile.DeltaBundled
	)
	read := hostile.NewDeltaPGManifest().Read
	type edit func(listed map[string]string, delta map[string]*archive.DeltaFile, objects, bundle map[string]string)
	for _, tc := range []struct {
		name    string
		edit    edit
		want    []string
		precise bool
	}{
		{"OK", func(map[string]string, map[string]*archive.DeltaFile, map[string]string, map[string]string) {}, nil, false},
		{"LeftOutNotMissing", func(l map[string]string, _ map[string]*archive.DeltaFile, _, _ map[string]string) {
			l["pg_hba.conf~"] = "old"
		}, nil, false},
		{"ErrReference", func(_ map[string]string, d map[string]*archive.DeltaFile, _, _ map[string]string) {
			d[relFile].Hexdigest = hostile.Digest(read[otherFile])
		}, []string{`"` + relFile + `"`, "CRC-32C"}, false},
		{"ErrTablespaceReference", func(_ map[string]string, d map[string]*archive.DeltaFile, _, _ map[string]string) {
			d[spcFile].Hexdigest = hostile.Digest(read[relFile])
		}, []string{`"` + spcFile + `"`, "CRC-32C"}, false},
		{"ErrEmbedded", func(_ map[string]string, d map[string]*archive.DeltaFile, _, _ map[string]string) {
			b64 := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("f", 100)))
			d[embedFile].ContentB64 = &b64
		}, []string{`"` + embedFile + `"`, "CRC-32C"}, false},
		{"ErrEmbeddedSize", func(_ map[string]string, d map[string]*archive.DeltaFile, _, _ map[string]string) {
			b64 := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("e", 99)))
			d[embedFile].ContentB64, d[embedFile].FileSize = &b64, 99
		}, []string{`"` + embedFile + `"`, "99 bytes", "lists 100"}, false},
		{"ErrBundle", func(_ map[string]string, _ map[string]*archive.DeltaFile, _, b map[string]string) {
			b[bundled] = strings.Repeat("B", 200)
		}, []string{`"` + bundled + `"`, "CRC-32C"}, false},
		{"ErrMissing", func(_ map[string]string, d map[string]*archive.DeltaFile, _, _ map[string]string) {
			delete(d, relFile)
		}, []string{"lists files that were not restored", `"` + relFile + `"`}, false},
		{"ErrNotListed", func(_ map[string]string, d map[string]*archive.DeltaFile, _, _ map[string]string) {
			d["base/1/7777"] = &archive.DeltaFile{RelativePath: "base/1/7777", FileSize: 8192, Hexdigest: hostile.Digest(read[otherFile])}
		}, []string{`"base/1/7777"`, "not listed"}, false},
		{"ErrSwappedObject", func(_ map[string]string, _ map[string]*archive.DeltaFile, o, _ map[string]string) {
			o[hostile.Digest(read[relFile])] = read[otherFile]
		}, []string{hostile.Digest(read[relFile]), "not the digest it is named by", relFile}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := hostile.NewDeltaPGManifest()
			tc.edit(d.Listed, d.Delta, d.Objects, d.Bundle)
			b := d.Backup(t)
			a := testArchive(t)
			hostile.Put(t, a, b)
			checkPGManifestReport(t, tc.want, tc.precise, run(t, a, true))
		})
	}
}

// TestRun_ErrPGManifestAbsent: a backup whose metadata says its control
// tar holds backup_manifest (hoard-pg-manifest), and whose control tar
// holds none, is broken with and without --full: restore refuses it
// before writing anything (restore's TestRun_ErrPGManifestMissing).
func TestRun_ErrPGManifestAbsent(t *testing.T) {
	a := testArchive(t)
	st := hostile.Put(t, a, hostile.Backup{Name: "2026-01-02_03-00_0", PGManifest: true})
	for _, full := range []bool{false, true} {
		rep := run(t, a, full)
		if b := rep.Backups[0]; b.Status != StatusBroken || !strings.Contains(problems(rep), "holds no "+archive.ControlPGManifest) ||
			!strings.Contains(problems(rep), st.ControlKey) {
			t.Errorf("full=%v: %s, want %s naming %s's missing %s:\n%s", full, b.Status, StatusBroken, st.ControlKey, archive.ControlPGManifest, problems(rep))
		}
	}
}

// TestRun_PGManifestTwoBackups: each backup's files are compared with
// its own backup_manifest: an altered backup beside a sound one is
// broken, the sound one ok.
func TestRun_PGManifestTwoBackups(t *testing.T) {
	a := testArchive(t)
	listed := pgManifestRead()
	put := func(name, relFile string) {
		hostile.Put(t, a, hostile.Backup{Name: name, PGManifest: true,
			Tablespaces: map[string]archive.ManifestTablespace{"ts": {Path: "/nonexistent/ts", OID: 16400}},
			Chunks: [][]hostile.Member{
				{{Name: "pgdata/base/1/2222", Body: relFile}, {Name: "pgdata/base/1/3333", Body: listed["base/1/3333"]}},
				{{Name: "tablespaces/ts/PG_15_202209061/5/6666", Body: listed["pg_tblspc/16400/PG_15_202209061/5/6666"]}},
			},
			Control: []hostile.Member{{Name: archive.ControlPGManifest, Body: hostile.PGManifestJSON(t, listed)}}})
	}
	put("2026-01-02_03-00_0", listed["base/1/2222"])
	put("2026-01-02_04-00_0", strings.Repeat("z", 8192))
	rep := run(t, a, true)
	if got := []string{rep.Backups[0].Status, rep.Backups[1].Status}; got[0] != StatusOK || got[1] != StatusBroken {
		t.Fatalf("statuses %v, want [%s %s]:\n%s", got, StatusOK, StatusBroken, problems(rep))
	}
	if got := strings.Join(rep.Backups[1].Problems, "\n"); !strings.Contains(got, `"base/1/2222"`) {
		t.Errorf("problems of the altered backup do not name base/1/2222:\n%s", got)
	}
}

// incrementalFile is an incremental file (PostgreSQL's format, as
// restore applies it) of a relation file of two blocks whose second
// block is block.
func incrementalFile(block byte) string {
	hdr := make([]byte, 8192) // magic, 1 block, truncation length 2, block 1, zeros
	binary.LittleEndian.PutUint32(hdr[0:], 0xd3ae1f0d)
	binary.LittleEndian.PutUint32(hdr[4:], 1)
	binary.LittleEndian.PutUint32(hdr[8:], 2)
	binary.LittleEndian.PutUint32(hdr[12:], 1)
	return string(hdr) + strings.Repeat(string(block), 8192)
}

// chainLabel is the backup_label of the backups putChainLevel stores.
const chainLabel = "START WAL LOCATION: 0/200028 (file " + hostile.StartSegment + ")\n"

// chainFiles are the files of a full backup, or of an incremental
// backup of it, as putChainLevel stores them.
func chainFiles(incremental bool) map[string]string {
	f := map[string]string{
		"PG_VERSION":        "15\n",
		"base/1/1259":       strings.Repeat("r", 8192),
		"global/pg_control": strings.Repeat("c", hostile.PGControlSize),
		"backup_label":      chainLabel,
	}
	if !incremental {
		f["base/1/2222"] = strings.Repeat("a", 8192) + strings.Repeat("b", 8192)
		return f
	}
	f["backup_label"] += "INCREMENTAL FROM LSN: 0/200028\nINCREMENTAL FROM TLI: 1\n"
	f["base/1/INCREMENTAL.2222"] = incrementalFile('B')
	f["base/1/4444"] = strings.Repeat("w", 300)
	return f
}

// putChainLevel stores backup name of an incremental chain (parent "":
// its full backup) holding files, listing listed in its backup_manifest
// (none, and its metadata saying so: nil).
func putChainLevel(t *testing.T, a *archive.Archive, name, parent string, listed, files map[string]string) hostile.Stored {
	t.Helper()
	var chunk []hostile.Member
	for _, p := range []string{"base/1/2222", "base/1/INCREMENTAL.2222", "base/1/4444", "base/1/6666"} {
		if body, ok := files[p]; ok {
			chunk = append(chunk, hostile.Member{Name: "pgdata/" + p, Body: body})
		}
	}
	b := hostile.Backup{Name: name, Parent: parent, PGManifest: listed != nil, NoLabel: true,
		Chunks:    [][]hostile.Member{chunk},
		PGControl: files["global/pg_control"],
		Control:   []hostile.Member{{Name: archive.ControlBackupLabel, Body: files["backup_label"]}},
		Manifest: func(m *archive.Manifest) {
			m.Hoard = &archive.HoardManifest{SystemID: "7123456789012345678", StartLSN: "0/200028", StartTimeline: 1, PGManifest: listed != nil} // waltest's
			if parent != "" {
				m.Hoard.StartLSN = "0/300028"
				m.Hoard.Incremental = &archive.IncrementalParent{Parent: parent, StartLSN: "0/200028", Timeline: 1}
			}
		},
	}
	if listed != nil {
		b.Control = append(b.Control, hostile.Member{Name: archive.ControlPGManifest, Body: hostile.PGManifestJSON(t, listed)})
	}
	return hostile.Put(t, a, b)
}

// TestRun_IncrementalPGManifest: verify --full compares every file of
// each backup of an incremental chain with the backup_manifest that
// backup carries, as restore does (restore's TestRun_IncrementalPGManifest):
// an incremental backup's INCREMENTAL file (under that name), a whole
// file or its backup_label (with its INCREMENTAL FROM lines, as backed
// up) changed consistently with its control object, or a file its
// manifest lists held by no object: the incremental backup is broken,
// naming the file, with restore's "damaged or altered"; the sound chain
// is ok. Without --full, an incremental backup whose control tar holds
// no backup_manifest, which restore refuses (every backup of a chain
// holds one), is broken whatever its metadata says. Before, verify
// compared nothing for a backup of a chain.
func TestRun_IncrementalPGManifest(t *testing.T) {
	const parent, child = "2026-01-02_03-00_0", "2026-01-02_03-00_1"
	newFiles, put := chainFiles, putChainLevel
	for _, tc := range []struct {
		name string
		// edit changes the incremental backup's files as stored (held)
		// or as its backup_manifest lists them.
		edit func(held, listed map[string]string)
		// noManifest stores the incremental backup without
		// backup_manifest, its metadata saying so.
		noManifest bool
		// want are what the incremental backup's problems must say, the
		// first the kind of object named ("chunk" or "control object");
		// nil: the chain is ok.
		want []string
	}{
		{"OK", func(_, _ map[string]string) {}, false, nil},
		{"ErrIncrementalChanged", func(h, _ map[string]string) { h["base/1/INCREMENTAL.2222"] = incrementalFile('X') },
			false, []string{"chunk", `"base/1/INCREMENTAL.2222"`, "CRC-32C"}},
		{"ErrWholeChanged", func(h, _ map[string]string) { h["base/1/4444"] = strings.Repeat("v", 299) },
			false, []string{"chunk", `"base/1/4444"`, "299 bytes"}},
		{"ErrLabelChanged", func(h, _ map[string]string) {
			h["backup_label"] = chainLabel + "INCREMENTAL FROM LSN: 0/100028\nINCREMENTAL FROM TLI: 1\n"
		}, false, []string{"control object", `"backup_label"`, "CRC-32C"}},
		{"ErrMissing", func(_, l map[string]string) { l["base/1/5555"] = "e" },
			false, []string{"control object", "lists files that were not restored", `"base/1/5555"`}},
		{"ErrNotListed", func(h, _ map[string]string) { h["base/1/6666"] = "n" },
			false, []string{"chunk", `"base/1/6666"`, "not listed"}},
		{"ErrManifestAbsent", func(_, _ map[string]string) {}, true,
			[]string{"control object", "holds no " + archive.ControlPGManifest}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := testArchive(t)
			put(t, a, parent, "", newFiles(false), newFiles(false))
			held, listed := newFiles(true), newFiles(true)
			tc.edit(held, listed)
			if tc.noManifest {
				listed = nil
			}
			st := put(t, a, child, parent, listed, held)
			fulls := []bool{true}
			if tc.noManifest || tc.want == nil {
				fulls = []bool{false, true}
			}
			for _, full := range fulls {
				rep := run(t, a, full)
				if len(rep.Backups) != 2 || rep.Backups[0].Name != parent || rep.Backups[1].Name != child {
					t.Fatalf("full=%v: report of %d backups, want %s and %s:\n%s", full, len(rep.Backups), parent, child, problems(rep))
				}
				if p := rep.Backups[0]; p.Status != StatusOK {
					t.Errorf("full=%v: the full backup %s, want %s:\n%s", full, p.Status, StatusOK, problems(rep))
				}
				c := rep.Backups[1]
				if tc.want == nil {
					if c.Status != StatusOK {
						t.Errorf("full=%v: the sound incremental backup %s, want %s:\n%s", full, c.Status, StatusOK, problems(rep))
					}
					continue
				}
				if c.Status != StatusBroken || c.Restorable {
					t.Fatalf("full=%v: the incremental backup %s (restorable %v), want %s:\n%s", full, c.Status, c.Restorable, StatusBroken, problems(rep))
				}
				// The object at fault is named: the chunk holding the
				// file, or the control object.
				object := st.ControlKey
				if tc.want[0] == "chunk" {
					object = st.ChunkKeys[1]
				}
				got := strings.Join(c.Problems, "\n")
				for _, w := range append(tc.want[1:], object, "damaged or was altered") {
					if !strings.Contains(got, w) {
						t.Errorf("full=%v: problems do not say %q:\n%s", full, w, got)
					}
				}
			}
		})
	}
}

// TestRun_IncrementalParentPGManifest: in a site without keys, the full
// backup of an incremental chain whose control tar holds no
// backup_manifest, its metadata saying it holds none (what a writer of
// the bucket leaves after removing it: nothing a reader holds
// authenticates either), is refused by restore as a parent (every backup
// of a chain holds one: basebackup sends the parent's with
// UPLOAD_MANIFEST and takes none without one as a parent), so its files
// would be restored compared with nothing), while it restores alone as
// PGHoard's backups do. verify says the same of both: the incremental
// backup broken, naming its parent and the missing backup_manifest, the
// full backup ok, with and without --full. With only the metadata's flag
// cleared (the backup_manifest there), both restore and verify ok.
func TestRun_IncrementalParentPGManifest(t *testing.T) {
	const parent, child = "2026-01-02_03-00_0", "2026-01-02_03-00_1"
	for _, tc := range []struct {
		name   string
		listed bool // the parent holds its backup_manifest
		broken bool
	}{
		{name: "ErrParentManifestRemoved", broken: true},
		{name: "ParentFlagCleared", listed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := testArchive(t)
			var listed map[string]string
			if tc.listed {
				listed = chainFiles(false)
			}
			st := putChainLevel(t, a, parent, "", listed, chainFiles(false))
			if tc.listed {
				// Its backup_manifest in the control tar, the metadata
				// saying there is none.
				ctx := context.Background()
				rc, o, err := a.Store.Open(ctx, st.ControlKey)
				if err != nil {
					t.Fatal(err)
				}
				data, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					t.Fatal(err)
				}
				delete(o.Metadata, archive.MetaPGManifest)
				if err := a.Store.Put(ctx, st.ControlKey, bytes.NewReader(data), o.Metadata); err != nil {
					t.Fatal(err)
				}
			}
			putChainLevel(t, a, child, parent, chainFiles(true), chainFiles(true))

			_, err := restore.Run(context.Background(), restore.Options{Archive: a, TargetDir: filepath.Join(t.TempDir(), "target"),
				Backup: child, RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop()})
			if tc.broken != errors.Is(err, restore.ErrBrokenChain) {
				t.Fatalf("restore --basebackup %s: %v, want broken chain %v", child, err, tc.broken)
			}
			if !tc.broken && err != nil {
				t.Fatalf("restore --basebackup %s: %v", child, err)
			}
			if _, err := restore.Run(context.Background(), restore.Options{Archive: a, TargetDir: filepath.Join(t.TempDir(), "target"),
				Backup: parent, RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop()}); err != nil {
				t.Fatalf("restore --basebackup %s: %v", parent, err)
			}

			for _, full := range []bool{false, true} {
				rep := run(t, a, full)
				if len(rep.Backups) != 2 || rep.Backups[0].Name != parent || rep.Backups[1].Name != child {
					t.Fatalf("full=%v: report of %d backups, want %s and %s:\n%s", full, len(rep.Backups), parent, child, problems(rep))
				}
				if p := rep.Backups[0]; p.Status != StatusOK || !p.Restorable {
					t.Errorf("full=%v: the full backup %s (restorable %v), want %s as restore restores it:\n%s", full, p.Status, p.Restorable, StatusOK, problems(rep))
				}
				c := rep.Backups[1]
				if !tc.broken {
					if c.Status != StatusOK {
						t.Errorf("full=%v: the incremental backup %s, want %s:\n%s", full, c.Status, StatusOK, problems(rep))
					}
					continue
				}
				if c.Status != StatusBroken || c.Restorable {
					t.Errorf("full=%v: the incremental backup %s (restorable %v), want %s as restore refuses it:\n%s", full, c.Status, c.Restorable, StatusBroken, problems(rep))
				}
				got := strings.Join(c.Problems, "\n")
				if strings.Contains(got, "metadata says it holds") {
					t.Errorf("full=%v: problems of %s say the parent's metadata says it holds one; it says none:\n%s", full, child, got)
				}
				for _, w := range []string{parent, st.ControlKey, "holds no " + archive.ControlPGManifest, "every backup of an incremental chain"} {
					if !strings.Contains(got, w) {
						t.Errorf("full=%v: problems of %s do not say %q:\n%s", full, child, w, got)
					}
				}
			}
		})
	}
}
