package restore

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/pghoardtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
)

const testBackup = "2026-01-02_03-00_0"

// pghoardDir returns the folder of a PGHoard test vector set: the repo's
// testdata/pghoard copy, else the shared original.
func pghoardDir(t testing.TB, name string) string {
	t.Helper()
	for _, d := range []string{filepath.Join("..", "testdata", "pghoard", name), filepath.Join("..", "..", "shared", "pghoard-testdata", name)} {
		if _, err := os.Stat(filepath.Join(d, "config.json")); err == nil {
			return d
		}
	}
	t.Fatalf("PGHoard test data %s not found", name)
	return ""
}

// fixture is an archive holding one pghoard-bb-v2 backup whose chunks are
// PGHoard's real objects, stored byte for byte with their metadata, around
// a control object built by the test.
type fixture struct {
	a      *archive.Archive
	chunks []string // chunk keys
	info   *archive.BackupInfo
}

// newFixture stores the chunks of the test vector set name, a control
// object naming them and tablespaces, and WAL segments 2 and 3.
func newFixture(t *testing.T, name string, tablespaces map[string]archive.ManifestTablespace) *fixture {
	t.Helper()
	return newFixtureWith(t, name, tablespaces)
}

// newFixtureWith is newFixture with extra members in the control tar.
func newFixtureWith(t *testing.T, name string, tablespaces map[string]archive.ManifestTablespace, extra ...hostile.Member) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := pghoardDir(t, name)
	f := &fixture{a: archivetest.New(t, storage.NewMem(), &archive.Codec{PrivateKeys: pghoardtest.Keys(t, dir)})}
	files, err := filepath.Glob(filepath.Join(dir, "chunks", "*.pghoard"))
	if err != nil || len(files) == 0 {
		t.Fatalf("chunks of %s: %v %v", name, files, err)
	}
	m := &archive.Manifest{PGHoardObject: "basebackup", Tablespaces: tablespaces,
		BackupStartWALSegment: "000000010000000000000002", BackupEndWALSegment: "000000010000000000000003"}
	for i, file := range files {
		data, md := pghoardtest.Object(t, file)
		size, err := strconv.ParseInt(md["original-file-size"], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		cf := archive.ChunkFilename(testBackup, i+1)
		key := f.a.Layout.ChunkKey(cf)
		if err := f.a.Store.Put(ctx, key, bytes.NewReader(data), md); err != nil {
			t.Fatal(err)
		}
		f.chunks = append(f.chunks, key)
		m.Chunks = append(m.Chunks, archive.ManifestChunk{ChunkFilename: cf, InputSize: size, ResultSize: int64(len(data))})
	}
	js, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	entries := []hostile.Member{
		{Name: archive.ManifestName, Body: string(js)},
		{Name: archive.ControlPGControl, Body: strings.Repeat("c", 8192)},
		{Name: archive.ControlBackupLabel, Body: "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n"},
		// PGHoard's test chunks are a part of a data directory: the
		// control tar brings PG_VERSION, which a real chunk would.
		{Name: "pgdata/PG_VERSION", Body: "15\n"},
	}
	entries = append(entries, extra...)
	for _, d := range archive.ControlEmptyDirs {
		entries = append(entries, hostile.Member{Name: d, Type: tar.TypeDir})
	}
	control := hostile.Tar(t, entries...)
	f.info = &archive.BackupInfo{
		Format: archive.FormatBBv2, StartWALSegment: "000000010000000000000002", EndWALSegment: "000000010000000000000003",
		StartTime: t0, EndTime: t0.Add(time.Minute), PGVersion: 150004, Site: "site",
	}
	f.put(t, f.a.Layout.BackupKey(testBackup), control, f.info.ToMetadata())
	for _, seg := range []string{"000000010000000000000002", "000000010000000000000003"} {
		// Segments wal-fetch delivers: Run checks them as it does.
		f.put(t, f.a.Layout.WALKey(seg), waltest.Segment(t, seg, f.info.SegmentSize(), 1), nil)
	}
	return f
}

func (f *fixture) put(t *testing.T, key string, data []byte, md storage.Metadata) {
	t.Helper()
	if _, err := f.a.Codec.Put(context.Background(), f.a.Store, key, bytes.NewReader(data), int64(len(data)), md); err != nil {
		t.Fatal(err)
	}
}

// members decodes the fixture's chunks with the codec and returns their
// regular files (member name → size): the oracle for what Run extracts.
func (f *fixture) members(t *testing.T) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, key := range f.chunks {
		data, _ := archivetest.Decode(t, f.a.Codec, f.a.Store, key)
		testio.EachTarMember(t, key, bytes.NewReader(data), func(h *tar.Header, _ io.Reader) {
			if h.Typeflag == tar.TypeReg {
				out[h.Name] = h.Size
			}
		})
	}
	return out
}

func (f *fixture) options(dir string) Options {
	return Options{Archive: f.a, TargetDir: dir, RestoreCommand: "hoard wal-fetch %f %p", Parallel: 3, Logger: zerolog.Nop()}
}

func TestRun_PGHoard(t *testing.T) {
	f := newFixture(t, "basebackup", nil)
	dir := filepath.Join(t.TempDir(), "data")
	var reports []Progress
	o := f.options(dir)
	o.Progress = func(p Progress) { reports = append(reports, p) }
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	want := f.members(t)
	if len(want) != 6 {
		t.Fatalf("oracle found %d files, want 6: %v", len(want), want)
	}
	for name, size := range want {
		fi, err := os.Stat(filepath.Join(dir, strings.TrimPrefix(name, "pgdata/")))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if fi.Size() != size {
			t.Errorf("%s: %d bytes, want %d", name, fi.Size(), size)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "pg_notify", "0000")); err != nil || fi.Size() != 8192 {
		t.Errorf("pg_notify/0000: %v %v", fi, err)
	}
	for _, d := range []string{"pg_subtrans", "base/1", "pg_wal/archive_status", "pg_tblspc", "pg_replslot"} {
		if fi, err := os.Stat(filepath.Join(dir, d)); err != nil || !fi.IsDir() {
			t.Errorf("directory %s: %v", d, err)
		}
	}
	for _, name := range []string{"global/pg_control", "backup_label", "recovery.signal"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	auto, err := os.ReadFile(filepath.Join(dir, "postgresql.auto.conf"))
	if err != nil || !strings.Contains(string(auto), "restore_command = 'hoard wal-fetch %f %p'") {
		t.Errorf("postgresql.auto.conf: %q, %v", auto, err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("target mode %v, %v; want 0700", fi.Mode(), err)
	}
	if res.Chunks != 4 || res.PGMajor != 15 || res.WALArchivedThrough != "000000010000000000000003" || res.Backup.Name != testBackup {
		t.Errorf("result %+v", res)
	}
	if len(reports) == 0 {
		t.Fatal("no progress reported")
	}
	if last := reports[len(reports)-1]; last.ChunksDone != 4 || last.BytesDone != last.Bytes || last.Bytes != 20480+20480+10240+20480 {
		t.Errorf("last progress %+v", last)
	}
}

func TestRun_PGHoardTablespaces(t *testing.T) {
	f := newFixture(t, "basebackup_with_ts", map[string]archive.ManifestTablespace{
		"nstest1": {Path: "/var/lib/pgsql/nstest1", OID: 16395},
		"nstest2": {Path: "/var/lib/pgsql/nstest2", OID: 16396},
	})
	root := t.TempDir()
	dir, spc1, base := filepath.Join(root, "data"), filepath.Join(root, "ts1"), filepath.Join(root, "spc")
	o := f.options(dir)
	o.TablespaceDirs = map[string]string{"nstest1": spc1}
	o.TablespaceBaseDir = base
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	spc2 := filepath.Join(base, "16396")
	for name, size := range f.members(t) {
		var p string
		switch {
		case name == "pgdata/postgresql.auto.conf":
			continue // hoard's block is appended: checked below
		case strings.HasPrefix(name, "pgdata/"):
			p = filepath.Join(dir, strings.TrimPrefix(name, "pgdata/"))
		case strings.HasPrefix(name, "tablespaces/nstest1/"):
			p = filepath.Join(spc1, strings.TrimPrefix(name, "tablespaces/nstest1/"))
		case strings.HasPrefix(name, "tablespaces/nstest2/"):
			p = filepath.Join(spc2, strings.TrimPrefix(name, "tablespaces/nstest2/"))
		}
		if fi, err := os.Stat(p); err != nil || fi.Size() != size {
			t.Errorf("%s at %s: %v %v, want %d bytes", name, p, fi, err, size)
		}
	}
	for oid, want := range map[string]string{"16395": spc1, "16396": spc2} {
		if got, err := os.Readlink(filepath.Join(dir, "pg_tblspc", oid)); err != nil || got != want {
			t.Errorf("pg_tblspc/%s -> %q, %v; want %s", oid, got, err, want)
		}
	}
	if got := res.Tablespaces; got["nstest1"] != spc1 || got["nstest2"] != spc2 {
		t.Errorf("Tablespaces = %v", got)
	}
	auto, _ := os.ReadFile(filepath.Join(dir, "postgresql.auto.conf"))
	if !strings.HasPrefix(string(auto), "# Do not edit") || !strings.Contains(string(auto), confHeader) {
		t.Errorf("postgresql.auto.conf from the backup not kept and extended:\n%s", auto)
	}
}

func TestRun_ErrTamperedChunk(t *testing.T) {
	f := newFixture(t, "basebackup", nil)
	ctx := context.Background()
	victim := f.chunks[1]
	storetest.Tamper(t, f.a.Store, victim)
	dir := filepath.Join(t.TempDir(), "data")
	_, err := Run(ctx, f.options(dir))
	var de *archive.DecodeError
	if !errors.As(err, &de) || de.Key != victim {
		t.Fatalf("Run = %v, want a DecodeError for %s", err, victim)
	}
	if !errors.Is(err, ErrIncomplete) || !errors.Is(err, crypto.ErrTampered) {
		t.Errorf("Run = %v, want ErrIncomplete and ErrTampered", err)
	}
	for _, name := range []string{"global/pg_control", "backup_label", "recovery.signal"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			t.Errorf("a failed restore wrote %s", name)
		}
	}
	// With overwrite, a second run over the failed one succeeds once the
	// chunk is repaired.
	f2 := newFixture(t, "basebackup", nil)
	o := f2.options(dir)
	o.Overwrite = true
	if _, err := Run(ctx, o); err != nil {
		t.Fatalf("re-run with overwrite: %v", err)
	}
}

func TestRun_ErrMissingWAL(t *testing.T) {
	f := newFixture(t, "basebackup", nil)
	ctx := context.Background()
	if err := f.a.Store.Delete(ctx, f.a.Layout.WALKey("000000010000000000000003")); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "data")
	_, err := Run(ctx, f.options(dir))
	if !errors.Is(err, ErrMissingWAL) || !strings.Contains(err.Error(), "000000010000000000000003") {
		t.Fatalf("Run = %v, want ErrMissingWAL naming 000000010000000000000003", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("target touched before the WAL check failed: %v", err)
	}
}

func TestRun_ErrLSNTargetBeyondWAL(t *testing.T) {
	f := newFixture(t, "basebackup", nil)
	o := f.options(filepath.Join(t.TempDir(), "data"))
	o.Backup = testBackup
	o.Target = Target{LSN: 0x5000010}
	_, err := Run(context.Background(), o)
	if !errors.Is(err, ErrMissingWAL) || !strings.Contains(err.Error(), "000000010000000000000004") {
		t.Fatalf("Run = %v, want ErrMissingWAL naming segment 4", err)
	}
}

// TestRun_ErrActionWithoutTarget: pause or shutdown without a target is
// refused before anything is written. PostgreSQL ignores
// recovery_target_action without a target and promotes at the end of the
// archived WAL, so a restore asked to pause there would promote.
func TestRun_ErrActionWithoutTarget(t *testing.T) {
	f := newFixture(t, "basebackup", nil)
	for _, action := range []string{ActionPause, ActionShutdown} {
		dir := filepath.Join(t.TempDir(), "data")
		o := f.options(dir)
		o.TargetAction = action
		_, err := Run(context.Background(), o)
		if !errors.Is(err, ErrBadTarget) || !strings.Contains(err.Error(), "standby") {
			t.Errorf("target action %s without a target: Run = %v, want ErrBadTarget saying to restore a standby", action, err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("target action %s without a target: %s written (%v)", action, dir, err)
		}
	}
}

func TestRun_ErrTargetNotEmpty(t *testing.T) {
	f := newFixture(t, "basebackup", nil)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "PG_VERSION"), []byte("15\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), f.options(dir)); !errors.Is(err, ErrTargetNotEmpty) {
		t.Fatalf("Run = %v, want ErrTargetNotEmpty", err)
	}
}

// TestRun_ErrTablespaceInPlace: Overwrite never empties a tablespace
// restored to the path it had when backed up (on the backed-up host the
// running cluster's), so a failed restore's files there stop the next
// run; the error must say that Overwrite was not enough, not only that
// the directory is not empty, and leave the files.
func TestRun_ErrTablespaceInPlace(t *testing.T) {
	root := t.TempDir()
	spc1, spc2 := filepath.Join(root, "nstest1"), filepath.Join(root, "nstest2")
	f := newFixture(t, "basebackup_with_ts", map[string]archive.ManifestTablespace{
		"nstest1": {Path: spc1, OID: 16395},
		"nstest2": {Path: spc2, OID: 16396},
	})
	left := filepath.Join(spc1, "PG_15_202209061")
	if err := os.MkdirAll(left, 0o700); err != nil {
		t.Fatal(err)
	}
	o := f.options(filepath.Join(root, "data"))
	o.Overwrite = true
	_, err := Run(context.Background(), o)
	if !errors.Is(err, ErrTablespaceInPlace) || !errors.Is(err, ErrTargetNotEmpty) || !strings.Contains(err.Error(), spc1) {
		t.Fatalf("Run = %v, want ErrTablespaceInPlace and ErrTargetNotEmpty naming %s", err, spc1)
	}
	if _, err := os.Stat(left); err != nil {
		t.Errorf("the refused restore removed %s: %v", left, err)
	}
}

func TestRun_ErrUnsupportedFormat(t *testing.T) {
	for _, format := range []string{"pghoard-bb-v3", "pghoard-bb-v0"} {
		f := newFixture(t, "basebackup_one_chunk", nil)
		f.info.Format = format
		md := f.info.ToMetadata()
		key := f.a.Layout.BackupKey(testBackup)
		f.put(t, key, []byte("x"), md)
		_, err := Run(context.Background(), f.options(filepath.Join(t.TempDir(), "data")))
		if !errors.Is(err, ErrUnsupportedFormat) {
			t.Errorf("format %q: Run = %v, want ErrUnsupportedFormat", format, err)
		}
	}
}

func TestRun_ErrOldPostgreSQL(t *testing.T) {
	f := newFixture(t, "basebackup_one_chunk", nil)
	f.info.PGVersion = 120005
	f.put(t, f.a.Layout.BackupKey(testBackup), []byte("x"), f.info.ToMetadata())
	if _, err := Run(context.Background(), f.options(filepath.Join(t.TempDir(), "data"))); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("Run = %v, want ErrUnsupportedVersion", err)
	}
}

// A restore writes hoard's wal-fetch with the last segment it found
// archived, so that recovery stops at one of them that is gone later,
// except for a standby, and never touches a restore command it is given.
func TestRun_WALFetchArchivedThrough(t *testing.T) {
	f := newFixture(t, "basebackup", nil)
	wf, err := NewWALFetch("", "s1")
	if err != nil {
		t.Fatal(err)
	}
	plain := wf.Command(nil)
	for _, c := range []struct {
		name    string
		standby bool
		rc      string
		want    string
	}{
		{"OK", false, "", strings.TrimSuffix(plain, " %f %p") + " --archived-through 000000010000000000000003 --wal-segment-size 16777216 %f %p"},
		{"OKStandby", true, "", plain},
		{"OKRestoreCommand", false, "my-fetch %f %p", "my-fetch %f %p"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			o := f.options(dir)
			o.RestoreCommand, o.WALFetch, o.Standby = c.rc, wf, c.standby
			if _, err := Run(context.Background(), o); err != nil {
				t.Fatal(err)
			}
			auto, err := os.ReadFile(filepath.Join(dir, "postgresql.auto.conf"))
			if err != nil {
				t.Fatal(err)
			}
			if want := "restore_command = " + quote(c.want) + "\n"; !strings.Contains(string(auto), want) {
				t.Errorf("postgresql.auto.conf:\n%s\nwant %s", auto, want)
			}
		})
	}
}

// deletingStore deletes backup's main object and then its chunks, as
// retention does (archive.ApplyRetention), at the first Open of a chunk.
type deletingStore struct {
	storage.Store
	main   string
	chunks []string
	once   *sync.Once
}

func (s deletingStore) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	if slices.Contains(s.chunks, key) {
		s.once.Do(func() {
			for _, k := range append([]string{s.main}, s.chunks...) {
				if err := s.Store.Delete(ctx, k); err != nil {
					panic(err)
				}
			}
		})
	}
	return s.Store.Open(ctx, key)
}

// TestRun_ErrBackupDeleted: retention deletes the backup while it is
// restored. The error says so (archive.ErrBackupDeleted), not only that
// a chunk is not found, which reads as damage. Before, it was "chunk
// ...: open ...: object not found".
func TestRun_ErrBackupDeleted(t *testing.T) {
	f := newFixture(t, "basebackup", nil)
	f.a.Store = deletingStore{Store: f.a.Store, main: f.a.Layout.BackupKey(testBackup), chunks: f.chunks, once: &sync.Once{}}
	_, err := Run(context.Background(), f.options(filepath.Join(t.TempDir(), "data")))
	if !errors.Is(err, archive.ErrBackupDeleted) || !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), "retention") {
		t.Fatalf("Run = %v, want ErrBackupDeleted naming retention, and ErrIncomplete", err)
	}
}

// TestRun_LogsWholeMilliseconds: "restore done" gives elapsed_ms in whole
// milliseconds, not a float with a dozen digits.
func TestRun_LogsWholeMilliseconds(t *testing.T) {
	f := newFixture(t, "basebackup", nil)
	var logs testio.SyncBuffer
	o := f.options(filepath.Join(t.TempDir(), "data"))
	o.Logger = zerolog.New(&logs)
	if _, err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	var done map[string]json.RawMessage
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, `"restore done"`) {
			if err := json.Unmarshal([]byte(l), &done); err != nil {
				t.Fatalf("log line %q: %v", l, err)
			}
		}
	}
	var ms int64
	if err := json.Unmarshal(done["elapsed_ms"], &ms); err != nil || ms < 0 {
		t.Errorf("restore done: elapsed_ms = %s (%v), want whole milliseconds", done["elapsed_ms"], err)
	}
}

// TestRun_LogsCarriedSettings: restoring a standby's backup as a standby,
// Run logs each standby setting the restored configuration keeps from
// the backup's, primary_conninfo's password masked; restoring it as a
// primary, it logs neither recovery_end_command nor
// archive_cleanup_command, which the block sets empty.
func TestRun_LogsCarriedSettings(t *testing.T) {
	auto := "primary_conninfo = 'host=old.example password=s3cret'\nprimary_slot_name = 'standby1'\n" +
		"recovery_end_command = '/site/end.sh'\narchive_cleanup_command = 'pg_archivecleanup /shared/archive %r'\n"
	for _, standby := range []bool{true, false} {
		t.Run(fmt.Sprint("Standby=", standby), func(t *testing.T) {
			f := newFixtureWith(t, "basebackup", nil, hostile.Member{Name: "pgdata/postgresql.auto.conf", Body: auto})
			var logs testio.SyncBuffer
			o := f.options(filepath.Join(t.TempDir(), "data"))
			o.Logger = zerolog.New(&logs)
			o.Standby = standby
			if _, err := Run(context.Background(), o); err != nil {
				t.Fatal(err)
			}
			logged := map[string]string{}
			for _, l := range strings.Split(logs.String(), "\n") {
				var e struct{ Message, Setting, Value string }
				if err := json.Unmarshal([]byte(l), &e); err == nil && e.Setting != "" {
					logged[e.Setting] = e.Value
				}
			}
			want := map[string]string{"primary_conninfo": "host=old.example password=xxxxx", "primary_slot_name": "standby1"}
			if standby {
				want["recovery_end_command"] = "/site/end.sh"
				want["archive_cleanup_command"] = "pg_archivecleanup /shared/archive %r"
			}
			if diff := cmp.Diff(want, logged); diff != "" {
				t.Errorf("settings logged (-want +got):\n%s\n%s", diff, logs.String())
			}
		})
	}
}
