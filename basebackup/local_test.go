package basebackup

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/benchdata"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/restore"
	"github.com/hoardbackup/hoard/storage"
)

var (
	keyOnce sync.Once
	testRSA *rsa.PrivateKey
)

// encryptedArchive returns an archive in a local store that compresses
// with alg and encrypts.
func encryptedArchive(t testing.TB, alg string) *archive.Archive {
	t.Helper()
	keyOnce.Do(func() {
		k, err := crypto.GenerateKey(2048)
		if err != nil {
			panic(err)
		}
		testRSA = k
	})
	a := localArchive(t)
	a.Codec = &archive.Codec{Compression: alg, KeyID: "k1", PublicKey: &testRSA.PublicKey,
		PrivateKeys: map[string]*rsa.PrivateKey{"k1": testRSA}, Host: "testhost"}
	return a
}

// tableDigests returns an md5 of each table's rows, in a stable order.
func tableDigests(t testing.TB, c *pgtest.Cluster, tables ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, tb := range tables {
		out[tb] = c.QueryString(t, "select count(*)::text || ':' || coalesce(md5(string_agg(x::text, ',' order by x::text)), '') from "+tb+" x")
	}
	return out
}

// checkTables fails the test unless each table of want (tableDigests of
// the source) holds the same rows in the restored cluster r; what names
// the restore.
func checkTables(t testing.TB, what string, r *pgtest.Cluster, want map[string]string) {
	t.Helper()
	tables := slices.Sorted(maps.Keys(want))
	got := tableDigests(t, r, tables...)
	for _, tb := range tables {
		if got[tb] != want[tb] {
			t.Errorf("%s: %s holds %s, the source %s", what, tb, got[tb], want[tb])
		}
	}
}

// restoreAndStart restores backup name of a ("": the newest) into a new
// directory, its tablespaces into spc, checks it with pg_verifybackup and
// starts PostgreSQL on it, recovering all WAL.
func restoreAndStart(t *testing.T, a *archive.Archive, name string, major int, walDir string, spc map[string]string) *pgtest.Cluster {
	t.Helper()
	dir := filepath.Join(pgtest.TempDir(t), "data")
	res, err := restore.Run(testContext(t), restore.Options{
		Archive: a, TargetDir: dir, Backup: name, TablespaceDirs: spc, ArchiveOff: true,
		RestoreCommand: "cp " + walDir + "/%f %p", Logger: zerolog.Nop(),
	})
	if err != nil {
		t.Fatalf("restore %q: %v", name, err)
	}
	// Every file restored was compared with the backup_manifest hoard
	// wrote (local-tar and delta alike).
	if res.PGManifestFiles < 900 {
		t.Errorf("restore %q compared %d files with backup_manifest, want every file of the cluster (900 or more)", name, res.PGManifestFiles)
	}
	verifyBackup(t, dir, major, len(spc) > 0)
	for _, d := range spc {
		pgtest.Chown(t, d)
	}
	c := pgtest.StartDataDir(t, major, dir, nil)
	c.WaitRecoveryDone(t, 3*time.Minute)
	return c
}

// verifyBackup runs Debian's pg_verifybackup on a restored directory (its
// WAL comes from the archive: -n). Version 15 reads manifest version 1
// only: a version 2 manifest (PostgreSQL 17 and later) is checked as the
// version 1 manifest with the same files, its own checksum checked first.
// With moved set, tablespaces were restored elsewhere and the restore
// rewrote tablespace_map by design: it is not compared. Nor is
// global/pg_control: restore sets its checkpoint location to
// restore.GuardCheckpoint (and its CRC), so that PostgreSQL refuses to
// start without backup_label; its checksum differs from the manifest's by
// design. verifyBackup checks the guard instead, and PostgreSQL checks the
// file's CRC when the cluster starts.
func verifyBackup(t testing.TB, dir string, major int, moved bool) {
	t.Helper()
	control, err := os.ReadFile(filepath.Join(dir, "global", "pg_control"))
	if err != nil {
		t.Fatal(err)
	}
	if got := pglogrepl.LSN(binary.LittleEndian.Uint64(control[32:])); got != restore.GuardCheckpoint {
		t.Errorf("restored pg_control's checkpoint location %s, want %s", got, restore.GuardCheckpoint)
	}
	args := []string{"-n", "-i", "global/pg_control"}
	if moved {
		args = append(args, "-i", "tablespace_map")
	}
	if major >= 17 {
		v1 := filepath.Join(t.TempDir(), "backup_manifest")
		if err := os.WriteFile(v1, manifestV1(t, filepath.Join(dir, "backup_manifest")), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-m", v1)
	}
	cmd := exec.Command(pgtest.Tool(t, "pg_verifybackup"), append(args, dir)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pg_verifybackup: %v\n%s", err, out)
	}
}

// manifestV1 turns a version 2 backup_manifest into version 1: after
// checking its Manifest-Checksum, it drops the System-Identifier line and
// recomputes the checksum.
func manifestV1(t testing.TB, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.LastIndex(raw, []byte("\"Manifest-Checksum\": \""))
	if i < 0 {
		t.Fatalf("%s: no Manifest-Checksum", name)
	}
	sum := sha256.Sum256(raw[:i])
	if got := string(raw[i+22 : i+22+64]); got != hex.EncodeToString(sum[:]) {
		t.Fatalf("%s: Manifest-Checksum %s, content hashes to %x", name, got, sum)
	}
	body := regexp.MustCompile(`(?m)^"System-Identifier": [0-9]+,\n`).ReplaceAll(raw[:i], nil)
	body = bytes.Replace(body, []byte(`"PostgreSQL-Backup-Manifest-Version": 2,`), []byte(`"PostgreSQL-Backup-Manifest-Version": 1,`), 1)
	sum = sha256.Sum256(body)
	return append(body, fmt.Sprintf("\"Manifest-Checksum\": \"%x\"}\n", sum)...)
}

// runPgbench runs pgbench against c until the returned func is called,
// which ends it with SIGTERM and waits until its sessions have ended on
// the server: a COMMIT pgbench had sent runs to its end after pgbench is
// gone, and the test reads the source's rows only after that. Not SIGINT:
// pgbench does not catch it, and a test binary started with SIGINT ignored
// (from a shell's background job) hands that on, so pgbench ran on to its
// -T of 600 s.
func runPgbench(t testing.TB, c *pgtest.Cluster) (stop func()) {
	t.Helper()
	const app = "hoard-test-pgbench"
	cmd := exec.Command(pgtest.Tool(t, "pgbench"), "-h", c.Host, "-p", strconv.Itoa(c.Port), "-U", "postgres",
		"-c", "2", "-T", "600", "-n", "postgres")
	cmd.Env = append(os.Environ(), "PGAPPNAME="+app)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
			c.WaitTrue(t, time.Minute, "select count(*) = 0 from pg_stat_activity where application_name = $1", app)
		})
	}
	t.Cleanup(stop)
	// Let it write a little first.
	deadline := time.Now().Add(time.Minute)
	for c.QueryString(t, "select count(*)::text from pgbench_history") == "0" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	return stop
}

func TestRunLocal_OK(t *testing.T) {
	pgtest.ForEachVersion(t, func(t *testing.T, major int) {
		t.Parallel()
		testRunLocal(t, major)
	})
}

// testRunLocal backs up a cluster with a tablespace, an unlogged and a
// temporary table while pgbench writes, restores it with hoard's restore
// (the tablespace moved), checks the files with pg_verifybackup against
// the backup_manifest hoard wrote, replays the archived WAL and compares
// every row with the source's.
func testRunLocal(t *testing.T, major int) {
	ctx := testContext(t)
	c, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: major, DataChecksums: true})
	tsDir := pgtest.TempDir(t)
	c.Exec(t, "create tablespace extra location '"+tsDir+"'")
	pgtest.Pgbench(t, c, "-i", "-s", "2")
	c.Exec(t, "create table in_extra tablespace extra as select g as i, md5(g::text) as h from generate_series(1, 50000) g")
	c.Exec(t, "create unlogged table scratch as select generate_series(1, 20000) as i")
	c.Exec(t, "checkpoint")
	a := encryptedArchive(t, compress.LZ4)

	// A temporary table lives in a session held open during the backup.
	tmp := c.Connect(t, "postgres")
	if _, err := tmp.Exec(ctx, "create temporary table tmp_rows as select generate_series(1, 30000) as i"); err != nil {
		t.Fatal(err)
	}

	stopBench := runPgbench(t, c)
	info, err := Run(ctx, Options{
		ConnString: c.ConnString("postgres"), Archive: a, Mode: ModeLocal, PGData: c.DataDir,
		Fast: true, ChunkSize: 1 << 20, Parallel: 3, Reason: ReasonScheduled, BasebackupMode: "local-tar",
		Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	})
	stopBench()
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	checks := []struct{ what, got, want string }{
		{"source", info.Metadata[MetaSource], SourceDataDirectory},
		{"checksum failures", info.Metadata[MetaChecksumFailures], "0"},
		{"system id", info.SystemID, c.QueryString(t, "select system_identifier::text from pg_control_system()")},
		{"start segment", info.StartWALSegment, c.QueryString(t, "select pg_walfile_name($1::text::pg_lsn)", info.StartLSN.String())},
		{"end segment", info.EndWALSegment, c.QueryString(t, "select pg_walfile_name($1::text::pg_lsn)", info.EndLSN.String())},
		{"pg manifest", info.Metadata[archive.MetaPGManifest], "true"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %q, want %q", ch.what, ch.got, ch.want)
		}
	}
	if info.ChunkCount < 10 {
		t.Errorf("%d chunks of 1 MiB", info.ChunkCount)
	}

	// What the chunks hold, and do not.
	_, files := readControl(t, a, info.Key)
	m, err := archive.ParseManifest(files[archive.ManifestName])
	if err != nil {
		t.Fatal(err)
	}
	if m.Hoard.Source != SourceDataDirectory || m.Hoard.ChecksumFailures == nil || m.Hoard.ChecksumFailures.Blocks != 0 {
		t.Errorf("manifest hoard block %+v", m.Hoard)
	}
	if ts := m.Tablespaces["extra"]; ts.Path != tsDir || ts.OID == 0 {
		t.Errorf("manifest tablespaces %+v", m.Tablespaces)
	}
	if !strings.Contains(string(files[archive.ControlTablespaceMap]), tsDir) {
		t.Errorf("tablespace_map %q", files[archive.ControlTablespaceMap])
	}
	unlogged := c.QueryString(t, "select pg_relation_filepath('scratch')")
	var listed []string
	for _, files := range chunkFiles(t, files[archive.ManifestName]) {
		listed = append(listed, files...)
	}
	all := strings.Join(listed, "\n") + "\n"
	for _, bad := range []string{"pgdata/" + unlogged + "\n", "pgdata/postmaster.pid\n", "pgdata/global/pg_control\n", "pgdata/pg_wal/0"} {
		if strings.Contains(all, bad) {
			t.Errorf("chunks hold %s", strings.TrimSpace(bad))
		}
	}
	for _, want := range []string{"pgdata/" + unlogged + "_init\n", "pgdata/PG_VERSION\n", "tablespaces/extra/PG_"} {
		if !strings.Contains(all, want) {
			t.Errorf("chunks lack %s", strings.TrimSpace(want))
		}
	}
	if strings.Contains(all, "/t3_") || regexp.MustCompile(`/t[0-9]+_[0-9]+`).MatchString(all) {
		t.Errorf("chunks hold a temporary relation")
	}
	if _, err := tmp.Exec(ctx, "select 1"); err != nil {
		t.Fatal(err)
	}

	// Restore, verify, replay all archived WAL: the restored cluster
	// must equal the source row for row.
	archivetest.StoreArchivedWAL(t, c, walDir, a)
	want := tableDigests(t, c, "pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history", "in_extra")
	r := restoreAndStart(t, a, "", major, walDir, map[string]string{"extra": filepath.Join(pgtest.TempDir(t), "extra")})
	checkTables(t, "restored", r, want)
	if n := r.QueryString(t, "select count(*)::text from scratch"); n != "0" {
		t.Errorf("restored unlogged table has %s rows, want 0 (reset from its init fork)", n)
	}
}

// TestRunLocal_FilesChange drops a table and truncates another after the
// backup listed the files and before it read them: the dropped file is
// left out, the shrunk one padded with zeros to its listed size, and the
// restored cluster, after WAL replay, equals the source.
func TestRunLocal_FilesChange(t *testing.T) {
	major := pgtest.Versions()[len(pgtest.Versions())-1]
	ctx := testContext(t)
	c, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: major, DataChecksums: true})
	c.Exec(t, "create table gone as select generate_series(1, 100000) as i")
	c.Exec(t, "create table shrinks as select generate_series(1, 100000) as i")
	c.Exec(t, "create table kept as select g as i, md5(g::text) as h from generate_series(1, 20000) g")
	c.Exec(t, "checkpoint")
	gone := filepath.Join(c.DataDir, c.QueryString(t, "select pg_relation_filepath('gone')"))
	shrinks := filepath.Join(c.DataDir, c.QueryString(t, "select pg_relation_filepath('shrinks')"))
	st, err := os.Stat(shrinks)
	if err != nil {
		t.Fatal(err)
	}
	before := st.Size()
	a := encryptedArchive(t, compress.Zstd)
	info, err := Run(ctx, Options{
		ConnString: c.ConnString("postgres"), Archive: a, Mode: ModeLocal, PGData: c.DataDir,
		Fast: true, ChunkSize: 256 << 10, Parallel: 2,
		afterScan: func() {
			c.Exec(t, "drop table gone")
			c.Exec(t, "delete from shrinks where i > 100")
			c.Exec(t, "vacuum shrinks")
			c.Exec(t, "checkpoint")
		},
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := os.Stat(gone); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dropped table's file %s: %v", gone, err)
	}
	if st, err := os.Stat(shrinks); err != nil || st.Size() >= before {
		t.Fatalf("vacuum did not shrink %s (%d bytes before): %v %v", shrinks, before, st, err)
	}
	_, files := readControl(t, a, info.Key)
	if _, err := archive.ParseManifest(files[archive.ManifestName]); err != nil {
		t.Fatal(err)
	}
	rel := func(p string) string { return "pgdata/" + strings.TrimPrefix(p, c.DataDir+"/") }
	found := map[string]bool{}
	for _, fs := range chunkFiles(t, files[archive.ManifestName]) {
		for _, f := range fs {
			found[f] = true
		}
	}
	if found[rel(gone)] || !found[rel(shrinks)] {
		t.Errorf("chunks list the dropped file: %v, the shrunk one: %v", found[rel(gone)], found[rel(shrinks)])
	}
	if !bytes.Contains(files[archive.ControlPGManifest], []byte(fmt.Sprintf(`"Path": "%s", "Size": %d,`, strings.TrimPrefix(rel(shrinks), "pgdata/"), before))) {
		t.Errorf("backup_manifest does not list %s with its listed size %d", shrinks, before)
	}
	archivetest.StoreArchivedWAL(t, c, walDir, a)
	want := tableDigests(t, c, "shrinks", "kept")
	r := restoreAndStart(t, a, "", major, walDir, nil)
	checkTables(t, "restored", r, want)
	if n := r.QueryString(t, "select count(*)::text from pg_class where relname = 'gone'"); n != "0" {
		t.Errorf("dropped table restored")
	}
}

// TestRunLocal_DamagedPage damages a data page of a stopped PostgreSQL 15
// cluster, which pg_checksums then reports; the backup stores the page as
// read and reports the same file and block, in the log, the metadata and
// the manifest.
func TestRunLocal_DamagedPage(t *testing.T) {
	ctx := testContext(t)
	c := pgtest.Start(t, pgtest.Options{Debian: true, DataChecksums: true})
	rel := c.DamagePage(t)

	var logs bytes.Buffer
	a := localArchive(t)
	info, err := Run(ctx, Options{
		ConnString: c.ConnString("postgres"), Archive: a, Mode: ModeLocal, PGData: c.DataDir, Fast: true, NoWait: true,
		Logger: zerolog.New(io.MultiWriter(&logs, zerolog.NewTestWriter(t))),
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := info.Metadata[MetaChecksumFailures]; got != "1" {
		t.Errorf("%s = %q, want 1", MetaChecksumFailures, got)
	}
	_, files := readControl(t, a, info.Key)
	m, err := archive.ParseManifest(files[archive.ManifestName])
	if err != nil {
		t.Fatal(err)
	}
	cf := m.Hoard.ChecksumFailures
	if cf == nil || cf.Blocks != 1 || len(cf.Files) != 1 || cf.Files[0].File != "pgdata/"+rel || fmt.Sprint(cf.Files[0].Blocks) != "[3]" {
		t.Errorf("manifest checksum failures %+v, want block 3 of pgdata/%s", cf, rel)
	}
	if !strings.Contains(logs.String(), "data page checksum verification failed") || !strings.Contains(logs.String(), `"block":3`) {
		t.Errorf("log lacks the failure:\n%s", logs.String())
	}
}

// sessionKiller terminates the backup's SQL session when the first chunk's
// upload starts, then holds the upload until the backup cancels it.
type sessionKiller struct {
	storage.Store
	c        *pgtest.Cluster
	t        testing.TB
	once     sync.Once
	canceled chan bool
}

func (s *sessionKiller) Put(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	if !strings.Contains(key, "basebackup_chunk/") {
		return s.Store.Put(ctx, key, r, md)
	}
	first := false
	s.once.Do(func() { first = true })
	if !first {
		return s.Store.Put(ctx, key, r, md)
	}
	s.c.Exec(s.t, "select pg_terminate_backend(pid) from pg_stat_activity where application_name = '"+applicationName+"'")
	select {
	case <-ctx.Done():
		s.canceled <- true
		return ctx.Err()
	case <-time.After(time.Minute):
		s.canceled <- false
		return errors.New("upload not canceled a minute after the session was killed")
	}
}

// TestRunLocal_ErrSessionKilled kills the SQL session holding the backup
// while a chunk is being stored: the backup is canceled at once, fails
// naming the cause, and leaves nothing in the store.
func TestRunLocal_ErrSessionKilled(t *testing.T) {
	ctx := testContext(t)
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[0], DataChecksums: true})
	pgtest.Pgbench(t, c, "-i", "-s", "1")
	a := localArchive(t)
	real := a.Store
	k := &sessionKiller{Store: real, c: c, t: t, canceled: make(chan bool, 1)}
	a.Store = k
	_, err := Run(ctx, Options{ConnString: c.ConnString("postgres"), Archive: a, Mode: ModeLocal, PGData: c.DataDir,
		Fast: true, NoWait: true, ChunkSize: 1 << 20, Parallel: 1})
	if !errors.Is(err, errSessionLost) {
		t.Fatalf("Run = %v, want the session's loss", err)
	}
	if !<-k.canceled {
		t.Error("the upload in progress was not canceled")
	}
	noObjectsLeft(t, real, "a backup whose session was killed")
	// The server ended the backup with the session: another can start.
	a.Store = real
	if _, err := Run(ctx, Options{ConnString: c.ConnString("postgres"), Archive: a, Mode: ModeLocal, PGData: c.DataDir, Fast: true, NoWait: true}); err != nil {
		t.Fatalf("Run after the killed one: %v", err)
	}
}

// TestRun_AutoMode: with a readable data directory of the server, Run
// reads it; with another cluster's directory it takes the backup over the
// replication protocol instead (and ModeLocal refuses).
func TestRun_AutoMode(t *testing.T) {
	ctx := testContext(t)
	major := pgtest.Versions()[0]
	c := pgtest.Start(t, pgtest.Options{Major: major})
	other := pgtest.Start(t, pgtest.Options{Major: major})
	for _, tc := range []struct {
		name, pgdata, source string
	}{
		{"own data directory", c.DataDir, SourceDataDirectory},
		{"no data directory", "", SourceBaseBackup},
		{"unreadable data directory", filepath.Join(t.TempDir(), "missing"), SourceBaseBackup},
		{"another cluster's", other.DataDir, SourceBaseBackup},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info, err := Run(ctx, Options{ConnString: c.ConnString("postgres"), Archive: localArchive(t), PGData: tc.pgdata, Fast: true, NoWait: true})
			if err != nil {
				t.Fatal(err)
			}
			if got := info.Metadata[MetaSource]; got != tc.source {
				t.Errorf("source %q, want %q", got, tc.source)
			}
		})
	}
	_, err := Run(ctx, Options{ConnString: c.ConnString("postgres"), Archive: localArchive(t), Mode: ModeLocal, PGData: other.DataDir, Fast: true, NoWait: true})
	if err == nil || !strings.Contains(err.Error(), "system identifier") {
		t.Errorf("ModeLocal with another cluster's directory: %v", err)
	}
}

// BenchmarkPageChecksum verifies the checksums of 8 KiB data pages, as a
// local-tar worker does for every page it reads, and reports the CPU
// seconds per GB besides MB/s.
func BenchmarkPageChecksum(b *testing.B) {
	const pages = 1024
	data := make([]byte, pages*8192)
	for i := range data {
		data[i] = byte(i*7 + i>>13)
	}
	b.SetBytes(int64(len(data)))
	start := benchdata.CPUTime(b)
	var sink uint16
	for b.Loop() {
		for p := 0; p < pages; p++ {
			sink ^= pageChecksum(data[p*8192:(p+1)*8192], uint32(p))
		}
	}
	benchdata.ReportCPUPerGB(b, start, int64(len(data)))
	if sink == 1 {
		b.Log(sink)
	}
}

// chunkFiles returns each chunk's file list from a manifest's JSON
// (archive.ParseManifest leaves them out).
func chunkFiles(t testing.TB, manifest []byte) [][]string {
	t.Helper()
	var m struct {
		Chunks []struct {
			Files []string `json:"files"`
		} `json:"chunks"`
	}
	if err := json.Unmarshal(manifest, &m); err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, ch := range m.Chunks {
		out = append(out, ch.Files)
	}
	return out
}

// TestRunLocal_ErrParentSwapped replaces a directory of the data
// directory with a symbolic link, after the backup listed it, to a
// directory the server's user may not read holding a file of the same
// name with other bytes: the backup fails naming the file and stores
// nothing, instead of storing the other file's bytes under its name.
func TestRunLocal_ErrParentSwapped(t *testing.T) {
	ctx := testContext(t)
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[len(pgtest.Versions())-1]})
	dir := filepath.Join(c.DataDir, "swapped")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, bytes.Repeat([]byte{'a'}, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := secretDir(t, "file")
	moved := filepath.Join(c.DataDir, "moved")
	t.Cleanup(func() {
		os.Remove(dir)
		os.Rename(moved, dir)
	})
	a := localArchive(t)
	info, err := Run(ctx, Options{
		ConnString: c.ConnString("postgres"), Archive: a, Mode: ModeLocal, PGData: c.DataDir,
		Fast: true, NoWait: true,
		afterScan: func() {
			if err := os.Rename(dir, moved); err != nil {
				t.Error(err)
			}
			if err := os.Symlink(secret, dir); err != nil {
				t.Error(err)
			}
		},
	})
	if err == nil {
		_, files := readControl(t, a, info.Key)
		m, err := archive.ParseManifest(files[archive.ManifestName])
		if err != nil {
			t.Fatal(err)
		}
		want := sha256.Sum256(bytes.Repeat([]byte("secret!!"), 1024))
		for _, ch := range m.Chunks {
			members, _ := readChunk(t, a, a.Layout.ChunkKey(ch.ChunkFilename))
			for _, mem := range members {
				if mem.name == "pgdata/swapped/file" && mem.sum == want {
					t.Errorf("the backup stored the bytes of %s under pgdata/swapped/file", filepath.Join(secret, "file"))
				}
			}
		}
		t.Fatalf("Run = backup %s, want an error naming %s", info.Key, file)
	}
	if !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("Run = %v, want an error naming %s and the link", err, file)
	}
	noObjectsLeft(t, a.Store, "a backup whose directory was swapped for a link")
}

// TestReadPGControlFile_ErrParentSymlink replaces global with a symbolic
// link to a directory holding another pg_control: the read fails naming
// the file instead of storing the other file as the backup's pg_control.
func TestReadPGControlFile_ErrParentSymlink(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "global"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "global", "pg_control"), make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &root{dir: dir}
	if err := r.open(); err != nil {
		t.Fatal(err)
	}
	defer closeRoots([]*root{r})
	if _, _, err := readPGControlFile(r); err != nil {
		t.Fatalf("read before: %v", err)
	}
	if err := os.Rename(filepath.Join(dir, "global"), filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secretDir(t, "pg_control"), filepath.Join(dir, "global")); err != nil {
		t.Fatal(err)
	}
	raw, _, err := readPGControlFile(r)
	if want := filepath.Join(dir, "global", "pg_control"); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("read = %d bytes, %v; want an error naming %s and the link", len(raw), err, want)
	}
}

// TestLocalBackup_ReadHistory reads a timeline history file through a
// pg_wal that is a link (initdb --waldir), and refuses one that is itself
// a link.
func TestLocalBackup_ReadHistory(t *testing.T) {
	dir, walDir := t.TempDir(), t.TempDir()
	if err := os.Symlink(walDir, filepath.Join(dir, "pg_wal")); err != nil {
		t.Fatal(err)
	}
	hist := "1\t0/3000000\tno recovery target specified\n"
	if err := os.WriteFile(filepath.Join(walDir, "00000002.history"), []byte(hist), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(secretDir(t, "secret"), "secret"), filepath.Join(walDir, "00000003.history")); err != nil {
		t.Fatal(err)
	}
	r := &root{dir: dir, main: true}
	if err := r.open(); err != nil {
		t.Fatal(err)
	}
	defer closeRoots([]*root{r})
	l := &localBackup{pgdata: dir, trees: []*root{r}}
	if got, err := l.readHistory("00000002.history"); err != nil || string(got) != hist {
		t.Errorf("readHistory = %q, %v; want %q", got, err, hist)
	}
	got, err := l.readHistory("00000003.history")
	if want := filepath.Join(dir, "pg_wal", "00000003.history"); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("readHistory of a link = %d bytes, %v; want an error naming %s", len(got), err, want)
	}
}
