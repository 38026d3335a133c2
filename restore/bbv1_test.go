package restore

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
)

// v1EmptyDirs are the directories PGHoard's bb-v1 writer put first, after
// the manifest (its EMPTY_DIRS).
var v1EmptyDirs = []string{"pg_dynshmem", "pg_log", "pg_replslot", "pg_snapshot", "pg_stat_tmp", "pg_tblspc",
	"pg_wal", "pg_wal/archive_status", "pg_xlog", "pg_xlog/archive_status"}

// repackV1 reads the local-tar backup info of src and returns it as one
// pghoard-bb-v1 tar, laid out as PGHoard's old local-tar writer did: the
// manifest (pgdata, pghoard_object, pghoard_version, tablespaces), the
// empty directories, every chunk's members (pgdata/..., tablespaces/...),
// then pgdata/global/pg_control and pgdata/backup_label. hoard's
// backup_manifest and tablespace_map are left out, as PGHoard left them.
func repackV1(t *testing.T, src *archive.Archive, info *archive.BackupInfo) (data []byte, m *archive.Manifest) {
	t.Helper()
	var ctrl map[string][]byte
	readTar := func(key string, each func(h *tar.Header, data []byte)) {
		data, _ := archivetest.Decode(t, src.Codec, src.Store, key)
		testio.EachTarMember(t, key, bytes.NewReader(data), func(h *tar.Header, r io.Reader) {
			b, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			each(h, b)
		})
	}
	ctrl = map[string][]byte{}
	readTar(info.Key, func(h *tar.Header, b []byte) { ctrl[h.Name] = b })
	m, err := archive.ParseManifest(ctrl[archive.ManifestName])
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, b []byte) {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	js, err := json.Marshal(map[string]any{"pgdata": m.PGData, "pghoard_object": "basebackup", "pghoard_version": "1.4.0", "tablespaces": m.Tablespaces})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	add(&tar.Header{Name: archive.ManifestName, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(js)), ModTime: now}, js)
	for _, d := range v1EmptyDirs {
		add(&tar.Header{Name: "pgdata/" + d, Typeflag: tar.TypeDir, Mode: 0o700, ModTime: now}, nil)
	}
	for _, c := range m.Chunks {
		readTar(src.Layout.ChunkKey(c.ChunkFilename), func(h *tar.Header, b []byte) {
			if h.Name == archive.ManifestName {
				return
			}
			add(h, b)
		})
	}
	for _, name := range []string{archive.ControlPGControl, archive.ControlBackupLabel} {
		b := ctrl[name]
		if b == nil {
			t.Fatalf("control tar lacks %s", name)
		}
		add(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o600, Size: int64(len(b)), ModTime: now}, b)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	// Python's tarfile pads to its 10240-byte record.
	if n := buf.Len() % 10240; n != 0 {
		buf.Write(make([]byte, 10240-n))
	}
	return buf.Bytes(), m
}

// v1Codec encrypts and compresses as PGHoard does (zstd, pghoa1 with an
// RSA key), and decrypts with the same key.
func v1Codec(t *testing.T) *archive.Codec {
	t.Helper()
	k, err := crypto.GenerateKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	return &archive.Codec{Compression: "zstd", KeyID: "legacy", PublicKey: &k.PublicKey,
		PrivateKeys: map[string]*rsa.PrivateKey{"legacy": k}}
}

// putV1 stores data as the pghoard-bb-v1 backup name of a, with the main
// object metadata PGHoard's bb-v1 writer set (format, pg-version,
// start-time, start-wal-segment, and tablespace-name-<oid> and
// tablespace-path-<oid> per tablespace; the codec adds
// compression-algorithm, encryption-key-id and original-file-size).
func putV1(t *testing.T, a *archive.Archive, name string, data []byte, info *archive.BackupInfo, spcs map[string]archive.ManifestTablespace) string {
	t.Helper()
	md := storage.Metadata{
		archive.MetaFormat:          archive.FormatBBv1,
		archive.MetaStartWALSegment: info.StartWALSegment,
		archive.MetaStartTime:       archive.ISOTime(info.StartTime),
	}
	if info.PGVersion != 0 {
		md[archive.MetaPGVersion] = strconv.Itoa(info.PGVersion)
	}
	for spc, ts := range spcs {
		oid := strconv.FormatUint(uint64(ts.OID), 10)
		md[archive.MetaV1TablespaceName+oid] = spc
		md[archive.MetaV1TablespacePath+oid] = ts.Path
	}
	key := a.Layout.Dir(archive.BasebackupDir) + name
	if _, err := a.Codec.Put(context.Background(), a.Store, key, bytes.NewReader(data), int64(len(data)), md); err != nil {
		t.Fatal(err)
	}
	return key
}

// TestRun_BBv1 builds a pghoard-bb-v1 backup, PGHoard's legacy format,
// from a real PostgreSQL 15 cluster with a tablespace: hoard's local-tar
// backup of it repacked into one tar as PGHoard's old writer laid it out,
// zstd and encrypted, with the tablespace in the object metadata. The
// backup is listed with its format and size, chosen automatically, checked
// by CheckBackup, and restored with the tablespace moved; PostgreSQL
// replays the archived WAL and every row is compared with the source's.
func TestRun_BBv1(t *testing.T) {
	if testing.Short() {
		t.Skip("real cluster")
	}
	const major = 15
	ctx := context.Background()
	src, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: major})
	spcDir := pgtest.TempDir(t)
	src.Exec(t, "create tablespace legacy location '"+spcDir+"'")
	src.Exec(t, "create table t (id int primary key, v text)")
	src.Exec(t, "insert into t select g, md5(g::text) from generate_series(1, 5000) g")
	src.Exec(t, "create table in_spc (id int, pad text) tablespace legacy")
	src.Exec(t, "insert into in_spc select g, repeat('x', 100) from generate_series(1, 3000) g")
	src.Exec(t, "checkpoint")
	tmp := archivetest.New(t, storage.NewMem(), &archive.Codec{})
	info, err := basebackup.Run(ctx, basebackup.Options{
		ConnString: src.ConnString("postgres"), Archive: tmp, Mode: basebackup.ModeLocal, PGData: src.DataDir,
		Fast: true, NoWait: true, ChunkSize: 1 << 20, Logger: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	src.Exec(t, "insert into t select g, md5(g::text) from generate_series(5001, 6000) g")
	src.Exec(t, "insert into in_spc select g, repeat('y', 100) from generate_series(3001, 3500) g")
	want := src.QueryString(t, "select (select count(*) || ':' || md5(string_agg(id || v, ',' order by id)) from t) || ' ' || (select count(*) || ':' || md5(string_agg(id || pad, ',' order by id)) from in_spc)")

	data, m := repackV1(t, tmp, info)
	if ts := m.Tablespaces["legacy"]; ts.OID == 0 || ts.Path != spcDir {
		t.Fatalf("local-tar manifest tablespaces %+v", m.Tablespaces)
	}
	a := archivetest.New(t, storage.NewMem(), v1Codec(t))
	name := "2026-01-02_3"
	key := putV1(t, a, name, data, info, m.Tablespaces)
	archivetest.StoreArchivedWAL(t, src, walDir, a)

	bs, err := a.ListBackups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 1 || bs[0].Format != archive.FormatBBv1 || bs[0].Key != key || bs[0].TotalSizePlain != int64(len(data)) {
		t.Fatalf("listed %+v, want %s of format %s, %d bytes", bs, key, archive.FormatBBv1, len(data))
	}
	if err := a.CheckBackup(ctx, bs[0], true); err != nil {
		t.Fatalf("CheckBackup: %v", err)
	}

	moved := filepath.Join(pgtest.TempDir(t), "moved")
	dir := filepath.Join(pgtest.TempDir(t), "data")
	res, err := Run(ctx, Options{Archive: a, TargetDir: dir, TablespaceDirs: map[string]string{"legacy": moved},
		RestoreCommand: "cp " + walDir + "/%f %p", Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Backup.Name != name || res.PGMajor != major || res.Bytes != int64(len(data)) || res.Tablespaces["legacy"] != moved {
		t.Errorf("restored %s (PG %d, %d bytes, tablespaces %v), want %s (PG %d, %d bytes, legacy in %s)",
			res.Backup.Name, res.PGMajor, res.Bytes, res.Tablespaces, name, major, len(data), moved)
	}
	link := filepath.Join(dir, "pg_tblspc", strconv.FormatUint(uint64(m.Tablespaces["legacy"].OID), 10))
	if got, err := os.Readlink(link); err != nil || got != moved {
		t.Errorf("%s -> %q (%v), want %s", link, got, err, moved)
	}
	for _, f := range []string{archive.ManifestName, "pgdata", "tablespaces", "tablespace_map"} {
		if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			t.Errorf("%s restored into the data directory", f)
		}
	}
	if vers, _ := filepath.Glob(filepath.Join(moved, "PG_*")); len(vers) != 1 {
		t.Errorf("moved tablespace holds %v, want one PG_ directory", vers)
	}
	pgtest.Chown(t, moved)
	c := pgtest.StartDataDir(t, major, dir, nil)
	c.WaitRecoveryDone(t, 3*time.Minute)
	got := c.QueryString(t, "select (select count(*) || ':' || md5(string_agg(id || v, ',' order by id)) from t) || ' ' || (select count(*) || ':' || md5(string_agg(id || pad, ',' order by id)) from in_spc)")
	if got != want {
		t.Errorf("restored rows %q, want %q", got, want)
	}
	if loc := c.QueryString(t, "select pg_tablespace_location(oid) from pg_tablespace where spcname = 'legacy'"); loc != moved {
		t.Errorf("tablespace legacy at %q, want %s", loc, moved)
	}
}

// putHostileV1 stores members as the pghoard-bb-v1 backup name of a fresh
// zstd archive, with tablespaces spcs in its metadata and WAL segments
// hostile.StartSegment and EndSegment.
func putHostileV1(t *testing.T, name string, spcs map[string]archive.ManifestTablespace, members ...hostile.Member) (*archive.Archive, string) {
	t.Helper()
	ctx := context.Background()
	a := hostileArchive(t)
	data := hostile.Tar(t, members...)
	md := storage.Metadata{
		archive.MetaFormat: archive.FormatBBv1, archive.MetaStartWALSegment: hostile.StartSegment,
		archive.MetaStartTime: "2026-01-02T03:00:00+00:00", archive.MetaPGVersion: "150004",
		archive.MetaWALSegmentSize: strconv.Itoa(hostile.SegmentSize),
	}
	for spc, ts := range spcs {
		oid := strconv.FormatUint(uint64(ts.OID), 10)
		md[archive.MetaV1TablespaceName+oid] = spc
		md[archive.MetaV1TablespacePath+oid] = ts.Path
	}
	key := a.Layout.Dir(archive.BasebackupDir) + name
	if _, err := a.Codec.Put(ctx, a.Store, key, bytes.NewReader(data), int64(len(data)), md); err != nil {
		t.Fatal(err)
	}
	for _, seg := range []string{hostile.StartSegment, hostile.EndSegment} {
		w := waltest.Segment(t, seg, hostile.SegmentSize, 1)
		if _, err := a.Codec.Put(ctx, a.Store, a.Layout.WALKey(seg), bytes.NewReader(w), int64(len(w)), nil); err != nil {
			t.Fatal(err)
		}
	}
	return a, key
}

// v1Manifest is a bb-v1 manifest member naming spcs.
func v1Manifest(t *testing.T, spcs map[string]archive.ManifestTablespace) hostile.Member {
	t.Helper()
	js, err := json.Marshal(map[string]any{"pgdata": "/var/lib/pgsql/data", "pghoard_object": "basebackup", "pghoard_version": "1.4.0", "tablespaces": spcs})
	if err != nil {
		t.Fatal(err)
	}
	return hostile.Member{Name: archive.ManifestName, Body: string(js)}
}

// v1Benign is what a bb-v1 restore needs around the members under test.
func v1Benign() (head, tail []hostile.Member) {
	head = []hostile.Member{
		{Name: "pgdata", Type: tar.TypeDir},
		{Name: "pgdata/PG_VERSION", Body: "15\n"},
		{Name: "pgdata/base/1", Type: tar.TypeDir},
		{Name: "pgdata/base/1/1259", Body: strings.Repeat("r", 8192)},
	}
	tail = []hostile.Member{
		{Name: archive.ControlPGControl, Body: strings.Repeat("c", hostile.PGControlSize)},
		{Name: archive.ControlBackupLabel, Body: "START WAL LOCATION: 0/200028 (file " + hostile.StartSegment + ")\n"},
	}
	return head, tail
}

// TestRun_BBv1Hostile: a planted pghoard-bb-v1 object whose members would
// write outside the data directory or its tablespace (a name with "..",
// an absolute name, a link), whose first member is not the manifest, or
// whose metadata names a tablespace path its manifest does not, or that
// holds no backup_label (PostgreSQL would start from pg_control's
// checkpoint), is refused, naming the backup, the object and what is at fault; nothing
// outside the target and the tablespace directory changes, and no
// pg_control is written. The same object with benign members restores.
func TestRun_BBv1Hostile(t *testing.T) {
	const oid = 16390
	cases := []struct {
		name    string
		members func(e hostile.Env, spcDir string) []hostile.Member
		// metaPath, when set, is the tablespace path the metadata says
		// (the manifest says spcDir).
		metaPath func(e hostile.Env) string
		want     error
		names    []string
		noLabel  bool // backup_label left out
	}{
		{name: "Benign"},
		{name: "NoBackupLabel", want: ErrNoBackupLabel, names: []string{"backup_label"}, noLabel: true},
		{name: "DotDot", want: ErrUnsafeMember, names: []string{"pgdata/../victim"},
			members: func(hostile.Env, string) []hostile.Member {
				return []hostile.Member{{Name: "pgdata/../victim", Body: "pwned\n"}}
			}},
		{name: "DotDotDeep", want: ErrUnsafeMember, names: []string{"pgdata/base/../../../victim"},
			members: func(hostile.Env, string) []hostile.Member {
				return []hostile.Member{{Name: "pgdata/base/../../../victim", Body: "pwned\n"}}
			}},
		{name: "Absolute", want: ErrUnsafeMember,
			members: func(e hostile.Env, _ string) []hostile.Member {
				return []hostile.Member{{Name: e.Victim(), Body: "pwned\n"}}
			}},
		{name: "AbsoluteControl", want: ErrUnsafeMember, names: []string{"/pgdata/global/pg_control"},
			members: func(hostile.Env, string) []hostile.Member {
				return []hostile.Member{{Name: "/pgdata/global/pg_control", Body: "c"}}
			}},
		{name: "TablespaceDotDot", want: ErrUnsafeMember, names: []string{"tablespaces/spc/PG_15_202209061/../../../victim"},
			members: func(hostile.Env, string) []hostile.Member {
				return []hostile.Member{{Name: "tablespaces/spc/PG_15_202209061/../../../victim", Body: "pwned\n"}}
			}},
		{name: "Symlink", want: ErrUnsafeMember, names: []string{"pgdata/postgresql.auto.conf"},
			members: func(e hostile.Env, _ string) []hostile.Member {
				return []hostile.Member{{Name: "pgdata/postgresql.auto.conf", Type: tar.TypeSymlink, Link: e.Victim()}}
			}},
		{name: "UnknownTablespace", want: ErrUnsafeMember, names: []string{"tablespaces/other/PG_15_202209061/x"},
			members: func(hostile.Env, string) []hostile.Member {
				return []hostile.Member{{Name: "tablespaces/other/PG_15_202209061/x", Body: "x"}}
			}},
		{name: "MetadataPathChanged", want: ErrTablespaceMismatch, names: []string{"elsewhere"},
			metaPath: func(e hostile.Env) string { return filepath.Join(e.Parent, "elsewhere") }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := hostile.NewEnv(t)
			spcDir := filepath.Join(e.Parent, "spc")
			meta := map[string]archive.ManifestTablespace{"spc": {OID: oid, Path: spcDir}}
			owned := []string{spcDir}
			if c.metaPath != nil {
				meta["spc"] = archive.ManifestTablespace{OID: oid, Path: c.metaPath(e)}
				owned = append(owned, c.metaPath(e))
			}
			head, tail := v1Benign()
			members := append([]hostile.Member{v1Manifest(t, map[string]archive.ManifestTablespace{"spc": {OID: oid, Path: spcDir}})}, head...)
			members = append(members, hostile.Member{Name: "tablespaces/spc", Type: tar.TypeDir},
				hostile.Member{Name: "tablespaces/spc/PG_15_202209061/16384/16400", Body: strings.Repeat("s", 8192)})
			if c.members != nil {
				members = append(members, c.members(e, spcDir)...)
			}
			if c.noLabel {
				tail = tail[:1]
			}
			members = append(members, tail...)
			name := "2026-01-02_03-00_" + strconv.Itoa(len(c.name))
			a, key := putHostileV1(t, name, meta, members...)
			before := e.Snapshot(t, owned...)
			_, err := Run(context.Background(), Options{Archive: a, TargetDir: e.Target(), Backup: name,
				RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop()})
			if diff := cmp.Diff(before, e.Snapshot(t, owned...)); diff != "" {
				t.Errorf("outside the target (-before +after):\n%s", diff)
			}
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if fi, err := os.Stat(filepath.Join(spcDir, "PG_15_202209061", "16384", "16400")); err != nil || fi.Size() != 8192 {
					t.Errorf("tablespace file: %v", err)
				}
				if got, err := os.Readlink(filepath.Join(e.Target(), "pg_tblspc", strconv.Itoa(oid))); err != nil || got != spcDir {
					t.Errorf("pg_tblspc link -> %q (%v), want %s", got, err, spcDir)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("Run = %v, want %v", err, c.want)
			}
			for _, w := range append([]string{name, key}, c.names...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if _, err := os.Stat(filepath.Join(e.Target(), "global", "pg_control")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("pg_control after a refused restore: %v", err)
			}
			if c.metaPath != nil {
				if ents, _ := os.ReadDir(c.metaPath(e)); len(ents) != 0 {
					t.Errorf("%s holds %v after the refusal", c.metaPath(e), ents)
				}
			}
		})
	}
}

// TestRun_BBv1ErrFirstMember: a bb-v1 object whose first member is not
// the manifest is refused before anything of it is written.
func TestRun_BBv1ErrFirstMember(t *testing.T) {
	e := hostile.NewEnv(t)
	head, tail := v1Benign()
	a, key := putHostileV1(t, "2026-01-02_03-00_0", nil, append(head, tail...)...)
	_, err := Run(context.Background(), Options{Archive: a, TargetDir: e.Target(), RestoreCommand: "false", Logger: zerolog.Nop()})
	if !errors.Is(err, ErrUnsafeMember) || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "not the manifest") {
		t.Fatalf("Run = %v, want ErrUnsafeMember naming %s and the manifest", err, key)
	}
	if _, err := os.Stat(filepath.Join(e.Target(), "PG_VERSION")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("PG_VERSION written: %v", err)
	}
}

// TestV1Tablespaces: the tablespaces of a bb-v1 object's metadata, and
// the metadata restore refuses.
func TestV1Tablespaces(t *testing.T) {
	got, err := archive.V1Tablespaces(storage.Metadata{"tablespace-name-16385": "a", "tablespace-path-16385": "/srv/a", "format": "pghoard-bb-v1"})
	if err != nil || len(got) != 1 || got["a"] != (archive.ManifestTablespace{OID: 16385, Path: "/srv/a"}) {
		t.Fatalf("V1Tablespaces = %v, %v", got, err)
	}
	for _, md := range []storage.Metadata{
		{"tablespace-name-16385": "a"},
		{"tablespace-path-16385": "/srv/a"},
		{"tablespace-name-x": "a", "tablespace-path-x": "/srv/a"},
		{"tablespace-name-16385": "../a", "tablespace-path-16385": "/srv/a"},
		{"tablespace-name-16385": "..", "tablespace-path-16385": "/srv/a"},
		{"tablespace-name-16385": "a", "tablespace-path-16385": "srv/a"},
		{"tablespace-name-16385": "a", "tablespace-path-16385": "/srv/a", "tablespace-name-16386": "a", "tablespace-path-16386": "/srv/b"},
	} {
		if got, err := archive.V1Tablespaces(md); err == nil {
			t.Errorf("V1Tablespaces(%v) = %v, want an error", md, got)
		}
	}
}
