package hostile

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
)

// Secret is the content of Env.Victim: no error may ever show it.
const Secret = "hoard-hostile-secret\n"

// Env is a fresh parent directory for one hostile restore: the target
// (Target, absent before the restore) and what a hostile backup aims at:
// Victim, a file holding Secret, and VictimDir, a directory holding one
// file.
type Env struct{ Parent string }

// NewEnv makes an Env in a new temporary directory.
func NewEnv(t testing.TB) Env {
	t.Helper()
	return EnvAt(t, t.TempDir())
}

// EnvAt makes an Env in dir, an empty directory.
func EnvAt(t testing.TB, dir string) Env {
	t.Helper()
	e := Env{Parent: dir}
	if err := os.WriteFile(e.Victim(), []byte(Secret), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(e.VictimDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.VictimDir(), "keep"), []byte("keep\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// Target is the data directory to restore into.
func (e Env) Target() string { return filepath.Join(e.Parent, "target") }

// Victim is a file outside the target.
func (e Env) Victim() string { return filepath.Join(e.Parent, "victim") }

// VictimDir is a directory outside the target, holding one file.
func (e Env) VictimDir() string { return filepath.Join(e.Parent, "victim-dir") }

// Snapshot describes every entry under e.Parent but the target (and the
// trees in skip), without following links.
func (e Env) Snapshot(t testing.TB, skip ...string) map[string]string {
	t.Helper()
	return Snapshot(t, e.Parent, append(skip, e.Target())...)
}

// Snapshot describes every entry under dir, except the trees in skip, by
// its path relative to dir: type and permissions, and the size and SHA-256
// of a regular file or the target of a link. Links are not followed.
func Snapshot(t testing.TB, dir string, skip ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if slices.Contains(skip, p) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		desc := fi.Mode().String()
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %d %x", len(b), sha256.Sum256(b))
		case fi.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + l
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", dir, err)
	}
	return out
}

// Case is one hostile backup and what restore must say of it.
type Case struct {
	Name   string
	Backup Backup
	// Object is the object the error names: "control" (the control
	// object's key), "chunk" (the hostile chunk, Stored.ChunkKeys[1]) or
	// "any chunk" (a member two chunks both hold).
	Object string
	// Names are what else the error must hold: the member, chunk name or
	// tablespace path at fault.
	Names []string
	// TablespaceDirs maps tablespace names to directories for the restore
	// (restore's --tablespace-dir); a snapshot leaves them out, since the
	// restore owns them.
	TablespaceDirs map[string]string
}

// Owned are the directories outside the target that the restore of c
// owns: its mapped tablespace directories.
func (c Case) Owned() []string {
	var out []string
	for _, d := range c.TablespaceDirs {
		out = append(out, d)
	}
	return out
}

// Check reports what err, the error of restoring the stored backup s of
// c, lacks: the backup's name, the object and c.Names; and it must not
// show Secret. "" when all is there.
func (c Case) Check(err error, s Stored) string {
	if err == nil {
		return "the restore succeeded"
	}
	msg := err.Error()
	var missing []string
	want := append([]string{s.Name}, c.Names...)
	switch c.Object {
	case "control":
		want = append(want, s.ControlKey)
	case "chunk":
		want = append(want, s.ChunkKeys[1])
	case "any chunk":
		if !slices.ContainsFunc(s.ChunkKeys, func(k string) bool { return strings.Contains(msg, k) }) {
			missing = append(missing, "a chunk key")
		}
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			missing = append(missing, fmt.Sprintf("%q", w))
		}
	}
	if strings.Contains(msg, strings.TrimSpace(Secret)) {
		missing = append(missing, "no secret (it shows the victim's content)")
	}
	if len(missing) == 0 {
		return ""
	}
	return fmt.Sprintf("error %q lacks %s", msg, strings.Join(missing, ", "))
}

// Named returns the case of Cases(e) named name; tb fails when there is
// none. A case aims at its Env's paths: a test that restores each case
// into a fresh Env builds it again with this.
func Named(tb testing.TB, e Env, name string) Case {
	tb.Helper()
	for _, c := range Cases(e) {
		if c.Name == name {
			return c
		}
	}
	tb.Fatalf("no hostile case %q", name)
	return Case{}
}

// Cases are the hostile backups restore must refuse, for an Env. Each has
// its own backup name, so that all can be stored in one site.
func Cases(e Env) []Case {
	chunk := func(ms ...Member) [][]Member { return [][]Member{ms} }
	link := func(name, to string) Member { return Member{Name: name, Type: tar.TypeSymlink, Link: to} }
	file := func(name, body string) Member { return Member{Name: name, Body: body} }
	cs := []Case{
		{Name: "SymlinkRecoverySignal", Object: "chunk", Names: []string{"pgdata/recovery.signal"},
			Backup: Backup{Chunks: chunk(link("pgdata/recovery.signal", e.Victim()))}},
		{Name: "SymlinkAutoConf", Object: "chunk", Names: []string{"pgdata/postgresql.auto.conf"},
			Backup: Backup{Chunks: chunk(link("pgdata/postgresql.auto.conf", e.Victim()))}},
		{Name: "SymlinkStandbySignal", Object: "chunk", Names: []string{"pgdata/standby.signal"},
			Backup: Backup{Chunks: chunk(link("pgdata/standby.signal", e.Victim()))}},
		{Name: "SymlinkPGVersion", Object: "chunk", Names: []string{"pgdata/PG_VERSION"},
			Backup: Backup{Chunks: chunk(link("pgdata/PG_VERSION", e.Victim()))}},
		{Name: "SymlinksInnerFirst", Object: "chunk", Names: []string{"pgdata/aa/bb"},
			Backup: Backup{Chunks: chunk(link("pgdata/aa/bb", "../../victim-dir/new"), link("pgdata/aa", e.VictimDir()))}},
		{Name: "SymlinkPrefetchSpool", Object: "chunk", Names: []string{"pgdata/pg_wal/hoard-prefetch"},
			Backup: Backup{Chunks: chunk(link("pgdata/pg_wal/hoard-prefetch", e.VictimDir()))}},
		{Name: "SymlinkTablespaceLink", Object: "chunk", Names: []string{"pgdata/pg_tblspc/16384"},
			Backup: Backup{Chunks: chunk(link("pgdata/pg_tblspc/16384", e.VictimDir()))}},
		{Name: "SymlinkInControl", Object: "control", Names: []string{"pgdata/recovery.signal"},
			Backup: Backup{Control: []Member{link("pgdata/recovery.signal", e.Victim())}}},
		{Name: "DotDotMember", Object: "chunk", Names: []string{"pgdata/../victim"},
			Backup: Backup{Chunks: chunk(file("pgdata/../victim", "owned\n"))}},
		{Name: "DotDotInControl", Object: "control", Names: []string{"pgdata/../victim"},
			Backup: Backup{Control: []Member{file("pgdata/../victim", "owned\n")}}},
		{Name: "AbsoluteMember", Object: "chunk", Names: []string{e.Victim()},
			Backup: Backup{Chunks: chunk(file(e.Victim(), "owned\n"))}},
		{Name: "HardLinkOutside", Object: "chunk", Names: []string{"pgdata/hard"},
			Backup: Backup{Chunks: chunk(Member{Name: "pgdata/hard", Type: tar.TypeLink, Link: e.Victim()})}},
		{Name: "HardLinkInside", Object: "chunk", Names: []string{"pgdata/hard"},
			Backup: Backup{Chunks: chunk(Member{Name: "pgdata/hard", Type: tar.TypeLink, Link: "pgdata/base/1/1259"})}},
		{Name: "DuplicateInChunk", Object: "chunk", Names: []string{"pgdata/dup"},
			Backup: Backup{Chunks: chunk(file("pgdata/dup", "first\n"), file("pgdata/dup", "second\n"))}},
		{Name: "DuplicateAcrossChunks", Object: "any chunk", Names: []string{"pgdata/base/1/1259"},
			Backup: Backup{Chunks: chunk(file("pgdata/base/1/1259", "other\n"))}},
		{Name: "FileOverDirectory", Object: "any chunk", Names: []string{"pgdata/base/1"},
			Backup: Backup{Chunks: chunk(file("pgdata/base/1", "not a directory\n"))}},
		{Name: "HugeDeclaredSize", Object: "chunk", Names: []string{"pgdata/huge"},
			Backup: Backup{Chunks: chunk(Declared("pgdata/huge", 1<<40))}},
		{Name: "CharDevice", Object: "chunk", Names: []string{"pgdata/null"},
			Backup: Backup{Chunks: chunk(Member{Name: "pgdata/null", Type: tar.TypeChar})}},
		{Name: "BlockDevice", Object: "chunk", Names: []string{"pgdata/sda"},
			Backup: Backup{Chunks: chunk(Member{Name: "pgdata/sda", Type: tar.TypeBlock})}},
		{Name: "FIFO", Object: "chunk", Names: []string{"pgdata/fifo"},
			Backup: Backup{Chunks: chunk(Member{Name: "pgdata/fifo", Type: tar.TypeFifo})}},
		{Name: "GNUSparse", Object: "chunk", Names: []string{"pgdata/base/1/sparse", "sparse"},
			Backup: Backup{Chunks: chunk(GNUSparse("pgdata/base/1/sparse", 1<<30))}},
		{Name: "PAXSparse", Object: "chunk", Names: []string{"pgdata/base/1/sparse", "sparse"},
			Backup: Backup{Chunks: chunk(PAXSparse("pgdata/base/1/sparse", 1<<30))}},
		{Name: "UnknownTablespaceMember", Object: "chunk", Names: []string{"tablespaces/other/x"},
			Backup: Backup{Chunks: chunk(file("tablespaces/other/x", "x\n"))}},
		{Name: "OutsidePGData", Object: "chunk", Names: []string{"etc/cron.d/x"},
			Backup: Backup{Chunks: chunk(file("etc/cron.d/x", "* * * * * root true\n"))}},
		{Name: "ChunkOverInputSize", Object: "chunk", Names: []string{"input_size"},
			Backup: Backup{
				Chunks:   chunk(manyFiles(64, 1024)...),
				Manifest: func(m *archive.Manifest) { m.Chunks[1].InputSize = 4096 },
			}},
		{Name: "ChunkUnderInputSize", Object: "chunk", Names: []string{"input_size"},
			Backup: Backup{
				Chunks:   chunk(file("pgdata/small", "x\n")),
				Manifest: func(m *archive.Manifest) { m.Chunks[1].InputSize += 10240 },
			}},
		{Name: "ChunkResultSize", Object: "chunk", Names: []string{"result_size"},
			Backup: Backup{
				Chunks:   chunk(file("pgdata/small", "x\n")),
				Manifest: func(m *archive.Manifest) { m.Chunks[1].ResultSize-- },
			}},
		{Name: "ChunkKeyDotDot", Object: "control", Names: []string{`"../../xlog/` + StartSegment + `"`},
			Backup: Backup{Manifest: func(m *archive.Manifest) { m.Chunks[0].ChunkFilename = "../../xlog/" + StartSegment }}},
		{Name: "ChunkKeyAbsolute", Object: "control", Names: []string{`"/etc/passwd"`},
			Backup: Backup{Manifest: func(m *archive.Manifest) { m.Chunks[0].ChunkFilename = "/etc/passwd" }}},
		{Name: "TablespaceRelativePath", Object: "control", Names: []string{`"relative/ts"`},
			Backup: Backup{Tablespaces: map[string]archive.ManifestTablespace{"ts": {Path: "relative/ts", OID: 16400}}}},
		{Name: "TablespaceUncleanPath", Object: "control", Names: []string{e.Parent + "/x/../victim-dir"},
			Backup: Backup{Tablespaces: map[string]archive.ManifestTablespace{"ts": {Path: e.Parent + "/x/../victim-dir", OID: 16400}}}},
		{Name: "TablespaceMissingPath", Object: "control", Names: []string{`"ts"`},
			Backup: Backup{Tablespaces: map[string]archive.ManifestTablespace{"ts": {OID: 16400}}}},
		{Name: "TablespaceInTarget", Object: "control", Names: []string{e.Target() + "/base"},
			Backup: Backup{Tablespaces: map[string]archive.ManifestTablespace{"ts": {Path: e.Target() + "/base", OID: 16400}}}},
		{Name: "TablespaceAtVictimDir", Object: "control", Names: []string{e.VictimDir()},
			Backup: Backup{
				Tablespaces: map[string]archive.ManifestTablespace{"ts": {Path: e.VictimDir(), OID: 16400}},
				Chunks:      chunk(Member{Name: "tablespaces/ts", Type: tar.TypeDir}, file("tablespaces/ts/keep", "owned\n")),
			}},
		{Name: "TablespaceOutsideVersionDir", Object: "chunk", Names: []string{"tablespaces/ts/crontab"},
			TablespaceDirs: map[string]string{"ts": e.Parent + "/spc"},
			Backup: Backup{
				Tablespaces: map[string]archive.ManifestTablespace{"ts": {Path: "/var/spool/cron/crontabs", OID: 16400}},
				Chunks:      chunk(Member{Name: "tablespaces/ts", Type: tar.TypeDir}, file("tablespaces/ts/crontab", "* * * * * true\n")),
			}},
		{Name: "ManifestOverLimit", Object: "control", Names: []string{archive.ManifestName},
			Backup: Backup{ControlTar: tarOf(Declared(archive.ManifestName, archive.MaxManifestSize+1))}},
		{Name: "PGControlOverLimit", Object: "control", Names: []string{archive.ControlPGControl},
			Backup: Backup{Control: []Member{Declared(archive.ControlPGControl, 1<<30)}}},
		// Without backup_label PostgreSQL would start from pg_control's
		// checkpoint, one from during the backup: a corrupt cluster.
		{Name: "NoBackupLabel", Object: "control", Names: []string{archive.ControlBackupLabel},
			Backup: Backup{NoLabel: true}},
		{Name: "ManifestManyChunks", Object: "control", Names: []string{"chunks"},
			Backup: Backup{ControlTar: tarOf(manifestOf(`{"chunks":[` + strings.Repeat(`{},`, archive.MaxManifestChunks) + `{}]}`))}},
	}
	cs = append(cs, deltaCases(e)...)
	for i := range cs {
		cs[i].Backup.Name = fmt.Sprintf("2026-01-02_03-00_%d", i+1)
	}
	return cs
}

// deltaCases are the hostile delta backups (pghoard-delta-v2): paths of
// the manifest or members of a bundle that leave the data directory, aim
// at pg_tblspc or pg_control, or come twice; delta objects that are not
// what their name (a digest) and the manifest say.
func deltaCases(e Env) []Case {
	embed := func(rel, body string) []archive.DeltaFile {
		b64 := base64.StdEncoding.EncodeToString([]byte(body))
		return []archive.DeltaFile{{RelativePath: rel, FileSize: int64(len(body)), ContentB64: &b64}}
	}
	object := func(rel string, size int64, digest string) []archive.DeltaFile {
		return []archive.DeltaFile{{RelativePath: rel, FileSize: size, Hexdigest: digest}}
	}
	bundle := func(ms ...Member) Backup { return Backup{Chunks: [][]Member{ms}, DeltaDirs: []string{}} }
	page, other, big := strings.Repeat("p", 8192), strings.Repeat("q", 8192), strings.Repeat("b", 1<<20)
	return []Case{
		{Name: "DeltaPathDotDot", Object: "control", Names: []string{`"../victim"`},
			Backup: Backup{Delta: embed("../victim", "owned\n")}},
		{Name: "DeltaPathAbsolute", Object: "control", Names: []string{e.Victim()},
			Backup: Backup{Delta: embed(e.Victim(), "owned\n")}},
		{Name: "DeltaPathTablespaceLink", Object: "control", Names: []string{"pg_tblspc/16384"},
			Backup: Backup{Delta: object("pg_tblspc/16384", int64(len(page)), Digest(page)), DeltaObjects: map[string]string{Digest(page): page}}},
		{Name: "DeltaPathPGControl", Object: "control", Names: []string{"global/pg_control"},
			Backup: Backup{Delta: embed("global/pg_control", "control\n")}},
		{Name: "DeltaPathTwice", Object: "control", Names: []string{"base/1/2600"},
			Backup: Backup{Delta: append(embed("base/1/2600", "a\n"), embed("base/1/2600", "b\n")...)}},
		{Name: "DeltaDirDotDot", Object: "control", Names: []string{"../victim-dir/new"},
			Backup: Backup{DeltaDirs: []string{"../victim-dir/new"}}},
		{Name: "DeltaDigestNotHex", Object: "control", Names: []string{"../../xlog/" + StartSegment},
			Backup: Backup{Delta: object("base/1/2601", 8192, "../../xlog/"+StartSegment)}},
		{Name: "DeltaObjectSwapped", Names: []string{Digest(page), "base/1/2602", "digest"},
			Backup: Backup{Delta: object("base/1/2602", int64(len(page)), Digest(page)), DeltaObjects: map[string]string{Digest(page): other}}},
		{Name: "DeltaObjectOverFileSize", Names: []string{Digest(big), "base/1/2603", "file_size"},
			Backup: Backup{Delta: object("base/1/2603", 8192, Digest(big)), DeltaObjects: map[string]string{Digest(big): big}}},
		{Name: "DeltaObjectMissing", Names: []string{Digest(other), "base/1/2604"},
			Backup: Backup{Delta: object("base/1/2604", int64(len(other)), Digest(other)), DeltaDirs: []string{}}},
		{Name: "DeltaEmbeddedOverBundled", Names: []string{"base/1/2605", "already restored"},
			Backup: Backup{Chunks: [][]Member{{file("base/1/2605", "bundled\n")}}, Delta: embed("base/1/2605", "embedded\n")}},
		{Name: "BundleSymlink", Object: "chunk", Names: []string{"recovery.signal"},
			Backup: bundle(Member{Name: "recovery.signal", Type: tar.TypeSymlink, Link: e.Victim()})},
		{Name: "BundleTablespaceLink", Object: "chunk", Names: []string{"pg_tblspc/16384"},
			Backup: bundle(Member{Name: "pg_tblspc/16384", Type: tar.TypeSymlink, Link: e.VictimDir()})},
		{Name: "BundleDotDot", Object: "chunk", Names: []string{"../victim"},
			Backup: bundle(file("../victim", "owned\n"))},
		{Name: "BundleAbsolute", Object: "chunk", Names: []string{e.Victim()},
			Backup: bundle(file(e.Victim(), "owned\n"))},
		{Name: "DeltaNoBackupLabel", Object: "control", Names: []string{archive.ControlBackupLabel},
			Backup: Backup{DeltaDirs: []string{}, NoLabel: true}},
		{Name: "BundleKeyDotDot", Object: "control", Names: []string{`"../../xlog/` + StartSegment + `"`},
			Backup: Backup{DeltaDirs: []string{}, Manifest: func(m *archive.Manifest) { m.Chunks[0].ChunkFilename = "../../xlog/" + StartSegment }}},
	}
}

// file is a regular file member.
func file(name, body string) Member { return Member{Name: name, Body: body} }

// Benign is a backup with nothing hostile in it, named like no Case: the
// harness restores it, so that the refusals are the hostile members' doing.
func Benign() Backup { return Backup{Name: "2026-01-02_03-00_0"} }

// BenignDelta is Benign as a delta backup: one bundle and a manifest.
func BenignDelta() Backup { return Backup{Name: "2026-01-02_02-00_0", DeltaDirs: []string{}} }

// manyFiles returns n regular files of size bytes each.
func manyFiles(n, size int) []Member {
	var out []Member
	for i := range n {
		out = append(out, Member{Name: fmt.Sprintf("pgdata/many/%d", i), Body: strings.Repeat("m", size)})
	}
	return out
}

// tarOf builds a tar of members without a testing.TB, for tars known to
// build (Raw members only).
func tarOf(members ...Member) []byte {
	var b []byte
	for _, m := range members {
		b = append(b, m.Raw...)
	}
	return append(b, make([]byte, 1024)...)
}

// manifestOf is a control tar's manifest member holding js.
func manifestOf(js string) Member {
	return Member{Name: archive.ManifestName, Raw: append(RawHeader(archive.ManifestName, '0', int64(len(js)), true, nil), pad([]byte(js))...)}
}
