package basebackup

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/replication"
	"github.com/hoardbackup/hoard/storage"
)

// testTimeout bounds each real-cluster test.
const testTimeout = 5 * time.Minute

// verifyBackupMaxMajor is the last major whose manifests Debian's
// pg_verifybackup 15 reads: 17 added the System-Identifier field (manifest
// version 2).
const verifyBackupMaxMajor = 16

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// localArchive returns an archive in a local store under a temp dir.
func localArchive(t testing.TB) *archive.Archive {
	t.Helper()
	st, err := storage.Open(context.Background(), storage.Config{Type: "local", Directory: t.TempDir()})
	if err != nil {
		t.Fatalf("open local store: %v", err)
	}
	return archivetest.New(t, st, &archive.Codec{Compression: compress.Snappy, Host: "testhost"})
}

func TestRun_OK(t *testing.T) {
	for i, major := range pgtest.Versions() {
		t.Run(strconv.Itoa(major), func(t *testing.T) {
			t.Parallel()
			opts := pgtest.Options{Major: major}
			if i == 0 {
				// Not the default segment size: names must follow the
				// cluster's.
				opts.WALSegmentSizeMB = 1
			}
			c := pgtest.Start(t, opts)
			testRun(t, c)
		})
	}
}

func testRun(t *testing.T, c *pgtest.Cluster) {
	ctx := testContext(t)
	tsDir := pgtest.TempDir(t)
	c.Exec(t, "create tablespace extra location '"+tsDir+"'")
	pgtest.Pgbench(t, c, "-i", "-s", "1")
	c.Exec(t, "create table in_extra tablespace extra as select generate_series(1, 100000) as i")
	a := localArchive(t)

	var mu sync.Mutex
	var reports []Progress
	info, err := Run(ctx, Options{
		ConnString: c.ConnString("postgres"), Archive: a,
		Fast: true, NoWait: true, ChunkSize: 1 << 20, Reason: ReasonScheduled,
		ActiveBackupMode: "pg_receivexlog", BasebackupMode: "local-tar",
		ProgressInterval: 20 * time.Millisecond,
		Progress: func(p Progress) {
			mu.Lock()
			reports = append(reports, p)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}

	// Listed, as stored.
	backups, err := a.ListBackups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(backups) != 1 {
		t.Fatalf("%d backups listed, want 1", len(backups))
	}
	b := backups[0]
	if b.Name != info.Name || b.StartLSN != info.StartLSN || b.EndLSN != info.EndLSN || b.ChunkCount != info.ChunkCount {
		t.Errorf("listed %+v\nreturned %+v", b, info)
	}
	if !strings.HasPrefix(b.Name, info.StartTime.UTC().Format(nameLayout)+"_") {
		t.Errorf("name %s does not match start time %s", b.Name, info.StartTime)
	}
	if b.ChunkCount < 10 {
		t.Errorf("%d chunks of 1 MiB for pgbench data, want more", b.ChunkCount)
	}

	// What the server says.
	segSize, err := replication.ParseSize(c.QueryString(t, "show wal_segment_size"))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ what, got, want string }{
		{"wal segment size", strconv.FormatUint(b.WALSegmentSize, 10), strconv.FormatUint(segSize, 10)},
		{"start segment", b.StartWALSegment, c.QueryString(t, "select pg_walfile_name($1::text::pg_lsn)", b.StartLSN.String())},
		{"end segment", b.EndWALSegment, c.QueryString(t, "select pg_walfile_name($1::text::pg_lsn)", b.EndLSN.String())},
		{"system id", b.SystemID, c.QueryString(t, "select system_identifier::text from pg_control_system()")},
		{"pg version", strconv.Itoa(b.PGVersion), c.QueryString(t, "show server_version_num")},
		{"format", b.Format, archive.FormatBBv2},
		{"reason", b.BackupReason, ReasonScheduled},
		{"timelines", strconv.Itoa(int(b.StartTimeline)) + "," + strconv.Itoa(int(b.EndTimeline)), "1,1"},
		{"pg manifest", b.Metadata[archive.MetaPGManifest] + "," + strconv.FormatBool(b.PGManifest), "true,true"},
		{"mode", b.BasebackupMode, "local-tar"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %q, want %q", ch.what, ch.got, ch.want)
		}
	}
	if b.EndXmin == 0 || b.EndXmax < b.EndXmin {
		t.Errorf("end snapshot %d:%d (metadata %q:%q)", b.EndXmin, b.EndXmax, b.Metadata[archive.MetaEndXmin], b.Metadata[archive.MetaEndXmax])
	}
	if b.EndTime.Before(b.StartTime) || b.EndLSN <= b.StartLSN {
		t.Errorf("backup from %s (%s) ends at %s (%s)", b.StartLSN, b.StartTime, b.EndLSN, b.EndTime)
	}
	mu.Lock()
	if len(reports) == 0 || !reports[len(reports)-1].Done || reports[len(reports)-1].Chunks != b.ChunkCount {
		t.Errorf("progress reports end with %+v", reports[max(0, len(reports)-1):])
	}
	mu.Unlock()

	// The control tar: members in order, manifest consistent.
	names, files := readControl(t, a, b.Key)
	want := []string{archive.ManifestName, archive.ControlPGControl, archive.ControlBackupLabel,
		archive.ControlTablespaceMap, archive.ControlPGManifest}
	for _, d := range archive.ControlEmptyDirs {
		want = append(want, d+"/")
	}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("control tar members\n got %v\nwant %v", names, want)
	}
	m, err := archive.ParseManifest(files[archive.ManifestName])
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Chunks) != b.ChunkCount || m.Hoard == nil || m.Hoard.StartLSN != b.StartLSN.String() ||
		m.Hoard.EndLSN != b.EndLSN.String() || m.BackupStartWALSegment != b.StartWALSegment {
		t.Errorf("manifest disagrees with metadata: %+v %+v", m.Hoard, b)
	}
	ts, ok := m.Tablespaces["extra"]
	if !ok || ts.Path != tsDir || ts.OID == 0 {
		t.Fatalf("manifest tablespaces %+v, want extra at %s", m.Tablespaces, tsDir)
	}
	label := string(files[archive.ControlBackupLabel])
	if w := "START WAL LOCATION: " + b.StartLSN.String() + " (file " + b.StartWALSegment + ")"; !strings.Contains(label, w) {
		t.Errorf("backup_label lacks %q:\n%s", w, label)
	}

	// Every chunk alone, then everything extracted: the oracle.
	pgdata := filepath.Join(t.TempDir(), "pgdata")
	spcDir := filepath.Join(t.TempDir(), "extra")
	roots := map[string]string{"pgdata/": pgdata, "tablespaces/extra/": spcDir}
	var total int64
	for _, ch := range m.Chunks {
		members, size := readChunk(t, a, a.Layout.ChunkKey(ch.ChunkFilename))
		if size != ch.InputSize {
			t.Errorf("chunk %s: %d bytes, manifest says %d", ch.ChunkFilename, size, ch.InputSize)
		}
		total += size
		for _, mem := range members {
			if filepath.Base(mem.name) == "pg_control" || mem.name == "pgdata/backup_label" {
				t.Errorf("chunk %s holds %s", ch.ChunkFilename, mem.name)
			}
		}
		extract(t, a, a.Layout.ChunkKey(ch.ChunkFilename), roots)
	}
	if total != b.TotalSizePlain {
		t.Errorf("chunks hold %d bytes, total-size-plain %d", total, b.TotalSizePlain)
	}
	extract(t, a, b.Key, roots)
	if err := os.Symlink(spcDir, filepath.Join(pgdata, "pg_tblspc", strconv.FormatUint(uint64(ts.OID), 10))); err != nil {
		t.Fatal(err)
	}
	checkManifestFiles(t, pgdata)
	if c.Major > verifyBackupMaxMajor {
		t.Logf("pg_verifybackup skipped: Debian's version 15 cannot read PostgreSQL %d manifests (file list checked)", c.Major)
		return
	}
	out, err := exec.Command(pgtest.Tool(t, "pg_verifybackup"), "-n", pgdata).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_verifybackup: %v\n%s", err, out)
	}
}

// readControl decodes a control object: member names in order and the
// regular files' contents.
func readControl(t testing.TB, a *archive.Archive, key string) ([]string, map[string][]byte) {
	t.Helper()
	data, _ := archivetest.Decode(t, a.Codec, a.Store, key)
	var names []string
	files := map[string][]byte{}
	testio.EachTarMember(t, key, bytes.NewReader(data), func(h *tar.Header, r io.Reader) {
		names = append(names, h.Name)
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = b
	})
	return names, files
}

// extract unpacks a stored tar, mapping member prefixes to directories.
func extract(t testing.TB, a *archive.Archive, key string, roots map[string]string) {
	t.Helper()
	rc, _, err := a.Codec.Open(context.Background(), a.Store, key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	testio.EachTarMember(t, key, rc, func(h *tar.Header, data io.Reader) {
		if h.Name == archive.ManifestName {
			return
		}
		dst := ""
		for prefix, dir := range roots {
			if rest, ok := strings.CutPrefix(h.Name, prefix); ok {
				dst = filepath.Join(dir, rest)
			}
		}
		if dst == "" {
			t.Fatalf("%s: member %s outside the roots", key, h.Name)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			t.Fatal(err)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o700); err != nil {
				t.Fatal(err)
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, dst); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			b, err := io.ReadAll(data)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, b, os.FileMode(h.Mode)&0o777|0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(dst, h.ModTime, h.ModTime); err != nil {
				t.Fatal(err)
			}
		default:
			t.Errorf("%s: member %s of type %c", key, h.Name, h.Typeflag)
		}
	})
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatalf("%s: %v", key, err)
	}
}

// checkManifestFiles checks that every file PostgreSQL's backup_manifest
// lists is in dir with its size: the check pg_verifybackup would start
// with, for the majors it cannot read.
func checkManifestFiles(t testing.TB, dir string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "backup_manifest"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Files []struct {
			Path string `json:"Path"`
			Size int64  `json:"Size"`
		} `json:"Files"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("parse backup_manifest: %v", err)
	}
	if len(m.Files) < 100 {
		t.Fatalf("backup_manifest lists %d files", len(m.Files))
	}
	for _, f := range m.Files {
		st, err := os.Stat(filepath.Join(dir, f.Path))
		if err != nil {
			t.Errorf("manifest file %s: %v", f.Path, err)
			continue
		}
		if st.Size() != f.Size {
			t.Errorf("manifest file %s: %d bytes, manifest says %d", f.Path, st.Size(), f.Size)
		}
	}
}

// cancelingStore cancels a context once the first chunk is stored.
type cancelingStore struct {
	storage.Store
	cancel context.CancelFunc
}

func (s *cancelingStore) Put(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	err := s.Store.Put(ctx, key, r, md)
	if err == nil && strings.HasSuffix(key, ".00000001.pghoard") {
		s.cancel()
	}
	return err
}

// noObjectsLeft fails the test for every object in st: what a backup
// that failed (after) must not leave behind.
func noObjectsLeft(t testing.TB, st storage.Store, after string) {
	t.Helper()
	err := st.List(context.Background(), "", func(o storage.Object) error {
		t.Errorf("%s left behind by %s", o.Key, after)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRun_ErrCanceled(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[0]})
	pgtest.Pgbench(t, c, "-i", "-s", "1")
	a := localArchive(t)
	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	real := a.Store
	a.Store = &cancelingStore{Store: real, cancel: cancel}
	_, err := Run(ctx, Options{ConnString: c.ConnString("postgres"), Archive: a, Fast: true, NoWait: true, ChunkSize: 1 << 20})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	noObjectsLeft(t, real, "a canceled backup")
	// The server is free for the next backup, which gets the same name
	// when it starts in the same minute.
	a.Store = real
	info, err := Run(testContext(t), Options{ConnString: c.ConnString("postgres"), Archive: a, Fast: true, NoWait: true, ChunkSize: 4 << 20})
	if err != nil {
		t.Fatalf("Run after the canceled one: %v", err)
	}
	if bs, err := a.ListBackups(testContext(t)); err != nil || len(bs) != 1 || bs[0].Name != info.Name {
		t.Errorf("ListBackups = %v, %v", bs, err)
	}
}

func TestChooseName(t *testing.T) {
	ctx := context.Background()
	a := &archive.Archive{Store: storage.NewMem(), Codec: &archive.Codec{}, Layout: archive.Layout{Prefix: "s"}, Site: "s"}
	start := time.Date(2026, 3, 4, 5, 6, 7, 250e6, time.FixedZone("X", 3600))
	put := func(key string, md storage.Metadata) {
		if err := a.Store.Put(ctx, key, strings.NewReader("x"), md); err != nil {
			t.Fatal(err)
		}
	}
	name, err := chooseName(ctx, a, start)
	if err != nil || name != "2026-03-04_04-06_7250" {
		t.Fatalf("chooseName = %q, %v", name, err)
	}
	put(a.Layout.BackupKey("2026-03-04_04-06_7250"), storage.Metadata{"start-time": "2026-03-04T04:06:07.25+00:00"})
	put(a.Layout.ChunkKey(archive.ChunkFilename("2026-03-04_04-06_7251", 1)), nil)
	name, err = chooseName(ctx, a, start)
	if err != nil || name != "2026-03-04_04-06_7252" {
		t.Fatalf("chooseName with a backup and leftover chunks = %q, %v", name, err)
	}
	// A backup whose metadata cannot be read is still stored under its
	// name: never reused.
	put(a.Layout.BackupKey("2026-03-04_04-06_7252"), storage.Metadata{"start-time": "not a time"})
	name, err = chooseName(ctx, a, start)
	if err != nil || name != "2026-03-04_04-06_7253" {
		t.Fatalf("chooseName with a damaged backup = %q, %v", name, err)
	}
	// Once a backup is deleted, a later backup of the same minute does
	// not get its name back: a preservation request left for the deleted
	// backup must not protect another.
	b := storage.NewMem()
	a2 := &archive.Archive{Store: b, Codec: &archive.Codec{}, Layout: archive.Layout{Prefix: "s"}, Site: "s"}
	first, err := chooseName(ctx, a2, time.Date(2026, 3, 4, 4, 6, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	second, err := chooseName(ctx, a2, time.Date(2026, 3, 4, 4, 6, 40, 0, time.UTC))
	if err != nil || second == first {
		t.Fatalf("a later backup of the same minute, with the first deleted: %q (first %q), %v", second, first, err)
	}
}

// TestChooseName_Concurrent: two backups of one site whose starts fall
// in the same millisecond (two writers of the site, a manual hoard
// basebackup beside the daemon, released by one checkpoint), or in
// neighbouring ones past a leftover name, get different names, although
// neither has stored a chunk when the other chooses: each claims its name
// in the store (Store.Create) before it uses it. With one name, each
// replaced the other's chunks and control object, and the cleanup of the
// one that failed deleted the other's chunks.
func TestChooseName_Concurrent(t *testing.T) {
	ctx := context.Background()
	a := &archive.Archive{Store: storage.NewMem(), Codec: &archive.Codec{}, Layout: archive.Layout{Prefix: "s"}, Site: "s"}
	start := time.Date(2026, 3, 4, 5, 6, 7, 250e6, time.UTC)
	if err := a.Store.Put(ctx, a.Layout.ChunkKey(archive.ChunkFilename("2026-03-04_05-06_7250", 1)), strings.NewReader("x"), nil); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, at := range []time.Time{start, start, start.Add(time.Millisecond), start.Add(time.Millisecond)} {
		name, err := chooseName(ctx, a, at)
		if err != nil {
			t.Fatal(err)
		}
		if names[name] {
			t.Errorf("chooseName(%s) = %s, chosen already by a backup that started with it", at.Format(time.StampMilli), name)
		}
		names[name] = true
	}
}

// TestRun_ConcurrentWriters: two backups of one cluster into one site
// at once, in each mode, are both stored under names of their own, and
// each one's chunk folder holds its chunks and nothing else: the name's
// claim is gone once the control object is stored.
func TestRun_ConcurrentWriters(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[0]})
	pgtest.Pgbench(t, c, "-i", "-s", "1")
	for _, mode := range []Mode{ModeStream, ModeLocal} {
		ctx := testContext(t)
		a := localArchive(t)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = Run(ctx, Options{ConnString: c.ConnString("postgres"), Archive: a, Mode: mode, PGData: c.DataDir,
					Fast: true, NoWait: true, ChunkSize: 1 << 20})
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("mode %d: %v", mode, err)
		}
		bs, err := a.ListBackups(ctx)
		if err != nil || len(bs) != 2 {
			t.Fatalf("mode %d: ListBackups = %v, %v, want two backups", mode, bs, err)
		}
		for _, b := range bs {
			var keys []string
			err := a.Store.List(ctx, a.Layout.Dir(archive.BasebackupChunkDir)+b.Name+"/", func(o storage.Object) error {
				keys = append(keys, o.Key)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != b.ChunkCount {
				t.Errorf("mode %d: backup %s: %d chunks, its folder holds %v", mode, b.Name, b.ChunkCount, keys)
			}
		}
	}
}

// walsenderKillingStore terminates the backup's walsender when the first
// chunk is stored: the server's stream ends mid-archive.
type walsenderKillingStore struct {
	storage.Store
	t    testing.TB
	c    *pgtest.Cluster
	once sync.Once
}

func (s *walsenderKillingStore) Put(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	err := s.Store.Put(ctx, key, r, md)
	if err == nil && strings.HasSuffix(key, ".00000001.pghoard") {
		s.once.Do(func() {
			s.c.Exec(s.t, "select pg_terminate_backend(pid) from pg_stat_activity where backend_type = 'walsender'")
		})
	}
	return err
}

// TestRun_ErrWalsenderKilled: a BASE_BACKUP whose walsender dies while the
// stream is received (and read ahead) fails, and leaves no chunk behind.
func TestRun_ErrWalsenderKilled(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[0]})
	pgtest.Pgbench(t, c, "-i", "-s", "3")
	a := localArchive(t)
	real := a.Store
	a.Store = &walsenderKillingStore{Store: real, t: t, c: c}
	_, err := Run(testContext(t), Options{ConnString: c.ConnString("postgres"), Archive: a, Fast: true, NoWait: true,
		ChunkSize: 1 << 20, Mode: ModeStream})
	if err == nil {
		t.Fatal("Run succeeded with its walsender terminated")
	}
	t.Logf("Run: %v", err)
	noObjectsLeft(t, real, "a failed backup")
}

// TestRun_ReplicationRoleNoFatal: a BASE_BACKUP taken as an ordinary
// replication role (neither superuser nor granted SET on lc_messages, the
// role most sites back up with) leaves no FATAL in the server's log: hoard
// asks for English messages only of a role the server grants them, on 13
// (no GRANT SET ON PARAMETER) and 15+. Log-watching setups alert on
// FATAL lines.
func TestRun_ReplicationRoleNoFatal(t *testing.T) {
	for _, major := range []int{13, 15} {
		t.Run(fmt.Sprint(major), func(t *testing.T) {
			c := pgtest.Start(t, pgtest.Options{Major: major})
			c.Exec(t, "create role backup login replication")
			conn := fmt.Sprintf("host=%s port=%d user=backup dbname=postgres sslmode=disable", c.Host, c.Port)
			if _, err := Run(testContext(t), Options{ConnString: conn, Archive: localArchive(t), Fast: true, NoWait: true,
				Mode: ModeStream}); err != nil {
				t.Fatalf("Run as a replication role: %v", err)
			}
			for _, line := range strings.Split(c.Log(), "\n") {
				if strings.Contains(line, "FATAL") {
					t.Errorf("server log: %s", line)
				}
			}
		})
	}
}

// TestRun_DamagedPage: BASE_BACKUP of a cluster with a damaged data page
// ends with SQLSTATE XX001 after the server sent every file, the manifest
// and the end position (perform_base_backup, basebackup.c). The backup is
// stored as local-tar stores one with damaged pages
// (TestRunLocal_DamagedPage): the file and block from the server's
// warnings in its metadata and manifest and in the log, the page kept as
// read; it restores (pg_verifybackup) and the restored cluster starts.
// Both wire forms: 13 and 15+.
func TestRun_DamagedPage(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, major int) {
		c, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: major, DataChecksums: true})
		rel := c.DamagePage(t)
		a := localArchive(t)
		var logs bytes.Buffer
		info, err := Run(testContext(t), Options{ConnString: c.ConnString("postgres"), Archive: a, Fast: true,
			Mode: ModeStream, Logger: zerolog.New(io.MultiWriter(&logs, zerolog.NewTestWriter(t)))})
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		b, m := storedOnly(t, a, info.Name)
		if got := b.Metadata[MetaChecksumFailures]; got != "1" {
			t.Errorf("%s = %q, want 1", MetaChecksumFailures, got)
		}
		if got := b.Metadata[MetaSource]; got != SourceBaseBackup {
			t.Errorf("%s = %q, want %s", MetaSource, got, SourceBaseBackup)
		}
		if b.EndLSN <= b.StartLSN || b.EndWALSegment == "" {
			t.Errorf("backup from %s ends at %s (%s)", b.StartLSN, b.EndLSN, b.EndWALSegment)
		}
		cf := m.Hoard.ChecksumFailures
		if cf == nil || cf.Blocks != 1 || len(cf.Files) != 1 || cf.Files[0].File != "pgdata/"+rel ||
			cf.Files[0].Count != 1 || fmt.Sprint(cf.Files[0].Blocks) != "[3]" {
			t.Errorf("manifest checksum failures %+v, want block 3 of pgdata/%s", cf, rel)
		}
		if m.Hoard.EndLSN != b.EndLSN.String() {
			t.Errorf("manifest end %s, metadata %s", m.Hoard.EndLSN, b.EndLSN)
		}
		for _, want := range []string{"data page checksum verification failed", `"block":3`, rel,
			"the backup holds data pages whose checksums failed", `"checksum_failures":1`} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("log lacks %q", want)
			}
		}

		// Restored, the page is as the server sent it, and the cluster
		// starts with the WAL up to the backup's end.
		archivetest.StoreArchivedWAL(t, c, walDir, a)
		r := restoreAndStart(t, a, b.Name, major, walDir, nil)
		page := make([]byte, len(pgtest.Damage))
		f, err := os.Open(filepath.Join(r.DataDir, rel))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.ReadAt(page, pgtest.DamageOffset); err != nil || string(page) != pgtest.Damage {
			t.Errorf("restored block 3 holds %q (%v), want the damage as read", page, err)
		}
		if got := r.QueryString(t, "select count(*)::text from pg_class where relname = 'victim'"); got != "1" {
			t.Errorf("restored cluster lists %s tables victim", got)
		}
	})
}

// storedOnly returns the one backup a lists, which must be name, and the
// manifest of its control object.
func storedOnly(t *testing.T, a *archive.Archive, name string) (*archive.BackupInfo, *archive.Manifest) {
	t.Helper()
	backups, err := a.ListBackups(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(backups) != 1 || backups[0].Name != name {
		t.Fatalf("listed %d backups, want %s", len(backups), name)
	}
	_, files := readControl(t, a, backups[0].Key)
	m, err := archive.ParseManifest(files[archive.ManifestName])
	if err != nil {
		t.Fatal(err)
	}
	return backups[0], m
}

// TestRun_DamagedPageTranslated is TestRun_DamagedPage on a server whose
// lc_messages is German (Debian's PostgreSQL 15, which has the
// translations; the locale is built with localedef into a directory the
// server finds through LOCPATH), two blocks of one file damaged. A
// superuser, and a replication role granted SET on lc_messages, get the
// server's warnings in English: the files and blocks are recorded. An
// ordinary replication role, which the server would refuse lc_messages
// (FATAL 42501), is not asked for it, and backs up: the count is right,
// from the warning the server sends after the end position, and the
// files are recorded as unknown. The server's log has no FATAL.
func TestRun_DamagedPageTranslated(t *testing.T) {
	locpath := germanLocale(t)
	c := pgtest.Start(t, pgtest.Options{Debian: true, DataChecksums: true,
		Conf: map[string]string{"lc_messages": "de_DE.UTF-8"}})
	rel := c.DamagePages(t, 3, 5)
	c.Exec(t, "create role backup login replication")
	c.Exec(t, "create role granted login replication")
	c.Exec(t, "grant set on parameter lc_messages to granted")
	// The server speaks German to a connection that does not ask for
	// English: the test is only meaningful then.
	if got := c.QueryString(t, "select current_setting('lc_messages')"); got != "de_DE.UTF-8" {
		t.Fatalf("lc_messages = %q with LOCPATH=%s", got, locpath)
	}
	for _, tt := range []struct {
		name, user string
		named      bool // the files and blocks are recorded
	}{
		{"Superuser", "postgres", true},
		{"GrantedRole", "granted", true},
		{"ReplicationRole", "backup", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := localArchive(t)
			var logs bytes.Buffer
			conn := fmt.Sprintf("host=%s port=%d user=%s dbname=postgres sslmode=disable", c.Host, c.Port, tt.user)
			info, err := Run(testContext(t), Options{ConnString: conn, Archive: a, Fast: true, NoWait: true,
				Mode: ModeStream, Logger: zerolog.New(io.MultiWriter(&logs, zerolog.NewTestWriter(t))).Level(zerolog.DebugLevel)})
			if err != nil {
				t.Fatalf("Run as %s: %v", tt.user, err)
			}
			b, m := storedOnly(t, a, info.Name)
			if got := b.Metadata[MetaChecksumFailures]; got != "2" {
				t.Errorf("%s = %q, want 2", MetaChecksumFailures, got)
			}
			cf := m.Hoard.ChecksumFailures
			switch {
			case cf == nil || cf.Blocks != 2:
				t.Errorf("manifest checksum failures %+v, want 2 blocks", cf)
			case tt.named && (cf.FilesUnknown || len(cf.Files) != 1 || cf.Files[0].File != "pgdata/"+rel ||
				cf.Files[0].Count != 2 || fmt.Sprint(cf.Files[0].Blocks) != "[3 5]"):
				t.Errorf("manifest checksum failures %+v, want blocks 3 and 5 of pgdata/%s", cf, rel)
			case !tt.named && (!cf.FilesUnknown || len(cf.Files) != 0):
				t.Errorf("manifest checksum failures %+v, want no file and files unknown", cf)
			}
			if refused := strings.Contains(logs.String(), "lc_messages"); refused == tt.named {
				t.Errorf("log mentions lc_messages: %v, want %v", refused, !tt.named)
			}
		})
	}
	// No role was asked what the server refuses it (damagePages's
	// restart leaves a FATAL of its own: the line naming lc_messages is
	// the refusal, in German).
	for _, line := range strings.Split(c.Log(), "\n") {
		if strings.Contains(line, "FATAL") && strings.Contains(line, "lc_messages") {
			t.Errorf("server log: %s", line)
		}
	}
}

// germanLocale builds the locale de_DE.UTF-8 with localedef into a
// directory the server's user can read and points LOCPATH at it, for
// the servers the test starts: Debian's base image generates no locale
// but C. It returns the directory.
func germanLocale(t *testing.T) string {
	t.Helper()
	localedef, err := exec.LookPath("localedef")
	if err != nil {
		pgtest.Unavailable(t, "localedef: %v", err)
	}
	if _, err := os.Stat("/usr/share/locale/de/LC_MESSAGES/postgres-15.mo"); err != nil {
		pgtest.Unavailable(t, "PostgreSQL's German messages: %v", err)
	}
	dir := pgtest.TempDir(t)
	out, err := exec.Command(localedef, "-i", "de_DE", "-f", "UTF-8", filepath.Join(dir, "de_DE.UTF-8")).CombinedOutput()
	if err != nil {
		pgtest.Unavailable(t, "localedef de_DE.UTF-8: %v\n%s", err, out)
	}
	pgtest.Chown(t, dir)
	t.Setenv("LOCPATH", dir)
	return dir
}

// TestConnectSQL_Errors checks that the ordinary connection a backup
// opens (pg_backup_start, the end snapshot) fails as replication.Connect
// does: with its sentinel and what to change. A node configured as for
// PGHoard, whose tools open no such connection, has no dbname, and
// libpq's default (the user's name) is seldom a database: the backup
// failed with the server's 'database "backup" does not exist' alone,
// where hoard check said to set dbname.
func TestConnectSQL_Errors(t *testing.T) {
	port := testio.FreePort(t)
	_, err := connectSQL(context.Background(), "host=127.0.0.1 port="+strconv.Itoa(port)+" user=backup connect_timeout=5")
	if !errors.Is(err, replication.ErrUnreachable) {
		t.Errorf("connectSQL to a closed port: %v, want replication.ErrUnreachable", err)
	}
	if want := "check the node's host and port"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("connectSQL to a closed port: %v, want it to say %q", err, want)
	}
}

// TestConnectSQL_ErrParseNoPassword checks that a connection string pgx
// cannot parse is named without its password (see replication's
// TestConnect_ErrParseNoPassword).
func TestConnectSQL_ErrParseNoPassword(t *testing.T) {
	_, err := connectSQL(context.Background(), "host=127.0.0.1 port=1 password = 'TOP SECRET' sslmode=bogus")
	if err == nil {
		t.Fatal("connectSQL: no error")
	}
	if msg := err.Error(); strings.Contains(msg, "SECRET") || !strings.Contains(msg, "sslmode is invalid") {
		t.Errorf("connectSQL: %q, want pgx's reason without the password", msg)
	}
}

// TestConnectSQL_ErrNoDatabase is TestConnectSQL_Errors' case on a real
// server: a replication role whose name is no database.
func TestConnectSQL_ErrNoDatabase(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[0]})
	c.Exec(t, "create role backup login replication")
	conn := fmt.Sprintf("host=%s port=%d user=backup sslmode=disable", c.Host, c.Port)
	_, err := connectSQL(testContext(t), conn)
	for _, want := range []string{`database "backup" does not exist`, "set dbname in the node's connection string"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("connectSQL as a role without its database: %v, want it to say %q", err, want)
		}
	}
}

// TestDataDirReadable_Err puts a named pipe in pg_control's place, or
// replaces global with a symbolic link to a directory holding a
// pg_control: the check fails at once, instead of waiting forever for a
// writer of the pipe or reading the other directory's file.
func TestDataDirReadable_Err(t *testing.T) {
	for _, c := range []struct {
		name    string
		replace func(t *testing.T, dir string)
	}{
		{"ErrFifo", func(t *testing.T, dir string) {
			path := filepath.Join(dir, "global", "pg_control")
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			fifo(t, path)
		}},
		{"ErrParentSymlink", func(t *testing.T, dir string) {
			if err := os.Rename(filepath.Join(dir, "global"), filepath.Join(dir, "moved")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(secretDir(t, "pg_control"), filepath.Join(dir, "global")); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, "global"), 0o700); err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{"PG_VERSION", "global/pg_control"} {
				if err := os.WriteFile(filepath.Join(dir, name), []byte("15\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := dataDirReadable(dir); err != nil {
				t.Fatalf("dataDirReadable before: %v", err)
			}
			c.replace(t, dir)
			done := make(chan error, 1)
			go func() { done <- dataDirReadable(dir) }()
			select {
			case err := <-done:
				if want := filepath.Join(dir, "global", "pg_control"); err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("dataDirReadable = %v, want an error naming %s", err, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("dataDirReadable still blocked after 10s")
			}
		})
	}
}
