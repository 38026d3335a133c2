package restore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// incrTables are the tables TestRun_IncrementalChain compares, with the
// column that orders their rows.
var incrTables = map[string]string{
	"pgbench_accounts": "aid", "pgbench_branches": "bid", "pgbench_tellers": "tid",
	"t": "id", "shrunk": "id", "born": "id",
}

// digest is the md5 of every compared table's rows in order, or "absent".
func digest(t *testing.T, c *pgtest.Cluster) map[string]string {
	t.Helper()
	out := map[string]string{}
	for table, key := range incrTables {
		if c.QueryString(t, "select (to_regclass($1) is not null)::text", table) == "false" {
			out[table] = "absent"
			continue
		}
		out[table] = c.QueryString(t, "select count(*)::text || ' ' || coalesce(md5(string_agg(x::text, ',' order by x."+key+")), '') from "+table+" x")
	}
	return out
}

// checkRestored compares a started restored cluster's rows with want and
// checks its tables and indexes with amcheck.
func checkRestored(t *testing.T, c *pgtest.Cluster, want map[string]string) {
	t.Helper()
	got := digest(t, c)
	for table, w := range want {
		if got[table] != w {
			t.Errorf("table %s: restored %q, want %q", table, got[table], w)
		}
	}
	c.Exec(t, "create extension amcheck")
	if n := c.QueryString(t, `select count(*)::text from pg_class c, verify_heapam(c.oid) where c.relkind = 'r' and c.relnamespace = 'public'::regnamespace`); n != "0" {
		t.Errorf("verify_heapam reports %s corruptions", n)
	}
	n := c.QueryString(t, `select count(bt_index_check(c.oid, true))::text from pg_index i join pg_class c on c.oid = i.indexrelid
		join pg_am am on am.oid = c.relam where am.amname = 'btree' and c.relnamespace = 'public'::regnamespace`)
	if n == "0" {
		t.Error("amcheck checked no index")
	}
}

// incrSource starts a PostgreSQL major that summarizes its WAL (for
// incremental backups) and archives it to walDir, with pgbench's tables at
// scale 1, and an archive in memory for its backups. Like pgtest.Start,
// it skips the test with -short.
func incrSource(t *testing.T, major int) (src *pgtest.Cluster, walDir string, a *archive.Archive) {
	t.Helper()
	src, walDir = pgtest.StartArchiving(t, pgtest.Options{Major: major, Conf: map[string]string{"summarize_wal": "on"}})
	pgtest.Pgbench(t, src, "-i", "-s", "1")
	a = archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: "zstd"})
	return src, walDir, a
}

// incrContext bounds an incremental backup test's backups and restores:
// it ends after 10 minutes, or with the test.
func incrContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// takeBackup takes a backup of src into a, in mode, incremental on the
// newest one when incremental is set.
func takeBackup(ctx context.Context, t *testing.T, src *pgtest.Cluster, a *archive.Archive, mode basebackup.Mode, incremental bool) *archive.BackupInfo {
	t.Helper()
	b, err := basebackup.Run(ctx, basebackup.Options{
		ConnString: src.ConnString("postgres"), Archive: a, Fast: true, NoWait: true, ChunkSize: 1 << 20,
		Mode: mode, PGData: src.DataDir, Incremental: incremental, Logger: zerolog.Nop(),
	})
	if err != nil {
		t.Fatalf("basebackup (incremental %v): %v", incremental, err)
	}
	return b
}

// fullAndIncremental takes a full backup of src into a, changes rows of
// pgbench_accounts, then takes an incremental backup on the full one.
func fullAndIncremental(ctx context.Context, t *testing.T, src *pgtest.Cluster, a *archive.Archive) (full, inc *archive.BackupInfo) {
	t.Helper()
	full = takeBackup(ctx, t, src, a, basebackup.ModeStream, false)
	src.Exec(t, "update pgbench_accounts set abalance = abalance + 1 where aid % 50 = 0")
	return full, takeBackup(ctx, t, src, a, basebackup.ModeStream, true)
}

// TestRun_IncrementalChain takes a full backup of a real PostgreSQL 17
// (BASE_BACKUP) and 18 (local-tar), changes rows (updates, a table dropped, one created, one shrunk by
// VACUUM), takes an incremental backup, changes more, takes a second
// incremental on the first, and restores the chain to the end of the WAL
// and to an LSN between: the rows must be the source's at those points,
// and at the LSN those of a full backup restored to it; amcheck must pass. The chain with a parent's control object deleted is
// refused with the object named.
func TestRun_IncrementalChain(t *testing.T) {
	for _, major := range []int{17, 18} {
		t.Run(strconv.Itoa(major), func(t *testing.T) { testIncrementalChain(t, major) })
	}
}

func testIncrementalChain(t *testing.T, major int) {
	src, walDir, a := incrSource(t, major)
	src.Exec(t, "create table t (id int primary key, v text)")
	src.Exec(t, "insert into t select i, repeat('x', 100) from generate_series(1, 20000) i")
	src.Exec(t, "create table shrunk (id int primary key, v text)")
	src.Exec(t, "insert into shrunk select i, repeat('y', 200) from generate_series(1, 20000) i")
	src.Exec(t, "create table dropme as select generate_series(1, 10000) as i")
	ctx := incrContext(t)
	// The full backup reads the data directory (local-tar, with hoard's
	// own backup_manifest) on 18, and is BASE_BACKUP's on 17: both serve
	// as parents.
	take := func(incremental bool) *archive.BackupInfo {
		t.Helper()
		mode := basebackup.ModeStream
		if !incremental && major == 18 {
			mode = basebackup.ModeLocal
		}
		return takeBackup(ctx, t, src, a, mode, incremental)
	}
	full := take(false)
	if full.Parent != "" {
		t.Fatalf("full backup has parent %q", full.Parent)
	}

	src.Exec(t, "update pgbench_accounts set abalance = abalance + 1 where aid % 100 = 0")
	src.Exec(t, "insert into t select i, 'second' from generate_series(20001, 21000) i")
	dropped := src.QueryString(t, "select pg_relation_filepath('dropme')")
	src.Exec(t, "drop table dropme")
	src.Exec(t, "create table born (id int primary key, v text)")
	src.Exec(t, "insert into born select i, 'born' from generate_series(1, 5000) i")
	src.Exec(t, "delete from shrunk where id > 2000")
	src.Exec(t, "vacuum shrunk")
	inc1 := take(true)
	if inc1.Parent != full.Name {
		t.Fatalf("first incremental's parent is %q, want %s", inc1.Parent, full.Name)
	}

	// Few pages change: the incremental backup is much smaller.
	src.Exec(t, "update t set v = 'third' where id between 100 and 300")
	src.Exec(t, "insert into born select i, 'born2' from generate_series(5001, 6000) i")
	src.Exec(t, "update pgbench_accounts set abalance = abalance + 2 where aid between 1000 and 1500")
	inc2 := take(true)
	if inc2.Parent != inc1.Name {
		t.Fatalf("second incremental's parent is %q, want %s", inc2.Parent, inc1.Name)
	}
	if inc2.TotalSizePlain*4 > full.TotalSizePlain {
		t.Errorf("incremental backup of %d bytes, full backup of %d: want a quarter or less", inc2.TotalSizePlain, full.TotalSizePlain)
	}

	// A full backup of the same state, restored to the same target as
	// the chain below: the oracle the chain's restore must equal.
	full2 := take(false)

	src.Exec(t, "insert into t select i, 'fourth' from generate_series(21001, 21500) i")
	src.Exec(t, "delete from born where id <= 100")
	atTarget := digest(t, src)
	target := src.QueryString(t, "select pg_current_wal_insert_lsn()::text")
	src.Exec(t, "update t set v = 'fifth' where id <= 1000")
	src.Exec(t, "drop table born")
	atEnd := digest(t, src)
	archivetest.StoreArchivedWAL(t, src, walDir, a)

	mustLSN := func(s string) pglogrepl.LSN {
		lsn, err := pglogrepl.ParseLSN(s)
		if err != nil {
			t.Fatal(err)
		}
		return lsn
	}
	restore := func(target Target) (string, *Result) {
		t.Helper()
		dir := filepath.Join(pgtest.TempDir(t), "data")
		res, err := Run(ctx, Options{Archive: a, TargetDir: dir, Backup: inc2.Name, Target: target, RestoreCommand: "cp " + walDir + "/%f %p", Logger: zerolog.Nop()})
		if err != nil {
			t.Fatalf("restore: %v", err)
		}
		if res.Backup.Name != inc2.Name {
			t.Fatalf("restored %s, want the incremental %s", res.Backup.Name, inc2.Name)
		}
		checkGuarded(t, dir)
		if _, err := os.Stat(filepath.Join(dir, "backup_manifest")); err == nil {
			t.Error("the incremental backup's backup_manifest, which lists INCREMENTAL files, was restored")
		}
		label, err := os.ReadFile(filepath.Join(dir, "backup_label"))
		if err != nil || strings.Contains(string(label), "INCREMENTAL") {
			t.Errorf("backup_label %q (%v) still names the parent", label, err)
		}
		err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && strings.HasPrefix(d.Name(), "INCREMENTAL.") {
				t.Errorf("%s restored as it was stored", p)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return dir, res
	}

	// Each backup's control object is read once before the chunks (its
	// manifest, backup_label and backup_manifest in one pass), the
	// restored one's once more to extract it.
	opens := &storetest.OpenLog{Store: a.Store, Match: func(key string) bool { return strings.Contains(key, "/basebackup/") }}
	a.Store = opens
	dir, res := restore(Target{})
	for _, b := range []*archive.BackupInfo{full, inc1, inc2} {
		want := 1
		if b == inc2 {
			want = 2
		}
		if got := opens.Count(b.Key); got != want {
			t.Errorf("control object of %s opened %d times, want %d: %v", b.Name, got, want, opens.Keys())
		}
	}
	a.Store = opens.Store
	// Every file each backup's backup_manifest lists is compared, but a
	// parent's pg_control and backup_label, which only the restored
	// backup's control tar writes.
	want := 0
	for _, b := range []*archive.BackupInfo{full, inc1, inc2} {
		_, files := pgManifestListed(ctx, t, a, b)
		if !files["global/pg_control"] || !files["backup_label"] || files["tablespace_map"] {
			t.Fatalf("backup %s's backup_manifest lists pg_control %v, backup_label %v, tablespace_map %v (no tablespace)", b.Name,
				files["global/pg_control"], files["backup_label"], files["tablespace_map"])
		}
		want += len(files)
		if b != inc2 {
			want -= 2
		}
	}
	if res.PGManifestFiles != want || want < 900 {
		t.Errorf("PGManifestFiles = %d, want %d (900 or more)", res.PGManifestFiles, want)
	}
	if _, err := os.Stat(filepath.Join(dir, dropped)); err == nil {
		t.Errorf("%s, of a table dropped before the first incremental backup, restored", dropped)
	}
	c := pgtest.StartDataDir(t, major, dir, nil)
	c.WaitRecoveryDone(t, 3*time.Minute)
	checkRestored(t, c, atEnd)
	c.Stop(t)

	dir, _ = restore(Target{LSN: mustLSN(target)})
	c = pgtest.StartDataDir(t, major, dir, nil)
	c.WaitRecoveryDone(t, 3*time.Minute)
	checkRestored(t, c, atTarget)
	fromChain := digest(t, c)
	c.Stop(t)

	fullDir := filepath.Join(pgtest.TempDir(t), "data")
	if _, err := Run(ctx, Options{Archive: a, TargetDir: fullDir, Backup: full2.Name, Target: Target{LSN: mustLSN(target)},
		RestoreCommand: "cp " + walDir + "/%f %p", Logger: zerolog.Nop()}); err != nil {
		t.Fatalf("restore the full backup: %v", err)
	}
	c = pgtest.StartDataDir(t, major, fullDir, nil)
	c.WaitRecoveryDone(t, 3*time.Minute)
	if fromFull := digest(t, c); !maps.Equal(fromFull, fromChain) {
		t.Errorf("restored to %s from the chain: %v; from a full backup: %v", target, fromChain, fromFull)
	}
	c.Stop(t)

	// The first incremental's control object gone: the second is refused,
	// the missing object named.
	if err := a.Store.Delete(ctx, inc1.Key); err != nil {
		t.Fatal(err)
	}
	_, err := Run(ctx, Options{Archive: a, TargetDir: filepath.Join(pgtest.TempDir(t), "data"), Backup: inc2.Name, Logger: zerolog.Nop()})
	if !errors.Is(err, ErrBrokenChain) || !strings.Contains(err.Error(), inc1.Key) {
		t.Errorf("restore without its parent: %v, want ErrBrokenChain naming %s", err, inc1.Key)
	}
}

// pgManifestListed returns backup b's manifest and the files its
// backup_manifest lists.
func pgManifestListed(ctx context.Context, t *testing.T, a *archive.Archive, b *archive.BackupInfo) (*archive.Manifest, map[string]bool) {
	t.Helper()
	pgm := &archive.ControlMember{Name: archive.ControlPGManifest, Max: archive.MaxPGManifest}
	c, err := a.ReadBackupControl(ctx, b, pgm.Check)
	if err != nil {
		t.Fatalf("backup %s: %v", b.Name, err)
	}
	data, err := pgm.Data()
	if err != nil {
		t.Fatalf("backup %s: %v", b.Name, err)
	}
	pm, err := parsePGManifest(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("backup %s: %v", b.Name, err)
	}
	return c.Manifest, pm.paths()
}

// TestRun_IncrementalChunkRetried takes a full backup of a real
// PostgreSQL 17 and an incremental one on it, and restores the
// incremental one from a store whose first read of each of its chunks
// fails at the end, as a dropped connection does: restore retries each
// chunk, applying its INCREMENTAL files again over what the failed
// attempt left, and the restored rows must be the source's.
func TestRun_IncrementalChunkRetried(t *testing.T) {
	src, walDir, a := incrSource(t, 17)
	ctx := incrContext(t)
	_, inc := fullAndIncremental(ctx, t, src, a)
	want := digest(t, src)
	archivetest.StoreArchivedWAL(t, src, walDir, a)

	// With the default limit of the files an attempt's list keeps in
	// memory, then with a limit of 2: the rest of the list, the files
	// made and the INCREMENTAL files applied, goes to the local disk.
	for _, limit := range []int{maxMadeFiles, 2} {
		t.Run(fmt.Sprintf("InMemory%d", limit), func(t *testing.T) {
			old := maxMadeFiles
			maxMadeFiles = limit
			t.Cleanup(func() { maxMadeFiles = old })
			st := &cutOnceStore{Store: a.Store, prefix: a.Layout.ChunkKey(inc.Name + "/"), seen: map[string]bool{}}
			ra := *a
			ra.Store = st
			dir := filepath.Join(pgtest.TempDir(t), "data")
			if _, err := Run(ctx, Options{Archive: &ra, TargetDir: dir, Backup: inc.Name, RestoreCommand: "cp " + walDir + "/%f %p", Logger: zerolog.Nop()}); err != nil {
				t.Fatalf("restore with each chunk of %s cut once: %v", inc.Name, err)
			}
			if len(st.seen) == 0 {
				t.Fatalf("no read of a chunk under %s was cut", st.prefix)
			}
			c := pgtest.StartDataDir(t, 17, dir, nil)
			c.WaitRecoveryDone(t, 3*time.Minute)
			checkRestored(t, c, want)
		})
	}
}

// cutOnceStore fails the first read of each object under prefix at its
// end, as a dropped connection does.
type cutOnceStore struct {
	storage.Store
	prefix string
	mu     sync.Mutex
	seen   map[string]bool
}

func (s *cutOnceStore) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	rc, obj, err := s.Store.Open(ctx, key)
	if err != nil || !strings.HasPrefix(key, s.prefix) {
		return rc, obj, err
	}
	s.mu.Lock()
	first := !s.seen[key]
	s.seen[key] = true
	s.mu.Unlock()
	if !first {
		return rc, obj, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(rc, iotest.ErrReader(errors.New("connection reset"))), rc}, obj, nil
}

// TestRun_IncrementalTablespaceChanged takes a full backup of a real
// PostgreSQL 17 with two tablespaces, one holding a table it drops with
// the tablespace, the other holding table t, then renames the second,
// takes an incremental backup, and restores it with the renamed
// tablespace moved: the full backup's files of the dropped tablespace are
// not written (there is no directory for them), those of the renamed one
// go to its new name's directory, and the rows must be the source's.
func TestRun_IncrementalTablespaceChanged(t *testing.T) {
	src, walDir, a := incrSource(t, 17)
	goneDir, keptDir := pgtest.TempDir(t), pgtest.TempDir(t)
	src.Exec(t, "create tablespace gone location '"+goneDir+"'")
	src.Exec(t, "create table in_gone (id int) tablespace gone")
	src.Exec(t, "insert into in_gone select generate_series(1, 1000)")
	src.Exec(t, "create tablespace old_name location '"+keptDir+"'")
	src.Exec(t, "create table t (id int primary key, v text) tablespace old_name")
	src.Exec(t, "insert into t select i, 'first' from generate_series(1, 5000) i")
	ctx := incrContext(t)
	full := takeBackup(ctx, t, src, a, basebackup.ModeStream, false)
	src.Exec(t, "drop table in_gone")
	src.Exec(t, "drop tablespace gone")
	src.Exec(t, "alter tablespace old_name rename to new_name")
	src.Exec(t, "update t set v = 'second' where id % 7 = 0")
	src.Exec(t, "update pgbench_accounts set abalance = abalance + 1 where aid % 50 = 0")
	inc := takeBackup(ctx, t, src, a, basebackup.ModeStream, true)
	want := digest(t, src)
	archivetest.StoreArchivedWAL(t, src, walDir, a)

	dir := filepath.Join(pgtest.TempDir(t), "data")
	moved := filepath.Join(pgtest.TempDir(t), "moved")
	res, err := Run(ctx, Options{Archive: a, TargetDir: dir, Backup: inc.Name, TablespaceDirs: map[string]string{"new_name": moved},
		RestoreCommand: "cp " + walDir + "/%f %p", Logger: zerolog.Nop()})
	if err != nil {
		t.Fatalf("restore of %s: %v", inc.Name, err)
	}
	// Every file of each backup's backup_manifest is compared but the
	// full backup's control tar files and the files of its tablespace
	// gone, which are not written.
	m, files := pgManifestListed(ctx, t, a, full)
	gone := fmt.Sprintf("pg_tblspc/%d/", m.Tablespaces["gone"].OID)
	compared := len(files)
	for k := range files {
		if k == "global/pg_control" || k == "backup_label" || k == "tablespace_map" || strings.HasPrefix(k, gone) {
			compared--
		}
	}
	goneFiles := len(files) - compared
	_, files = pgManifestListed(ctx, t, a, inc)
	compared += len(files)
	if res.PGManifestFiles != compared || goneFiles < 3 {
		t.Errorf("PGManifestFiles = %d, want %d (%d of the full backup's entries not compared, 3 or more)", res.PGManifestFiles, compared, goneFiles)
	}
	if ents, err := os.ReadDir(filepath.Join(dir, "pg_tblspc")); err != nil || len(ents) != 1 {
		t.Errorf("pg_tblspc holds %v (%v), want the one link", ents, err)
	}
	pgtest.Chown(t, moved)
	c := pgtest.StartDataDir(t, 17, dir, nil)
	c.WaitRecoveryDone(t, 3*time.Minute)
	checkRestored(t, c, want)
	if loc := c.QueryString(t, "select pg_tablespace_location(oid) from pg_tablespace where spcname = 'new_name'"); loc != moved {
		t.Errorf("tablespace new_name at %q, want %s", loc, moved)
	}
}
