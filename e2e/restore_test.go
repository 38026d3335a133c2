package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestRestoreTablespaceVerify backs up a PostgreSQL 15 cluster with a
// tablespace twice, over the replication protocol (BASE_BACKUP, no
// pg_data_directory) and with basebackup_mode local-tar (hoard reads the
// data directory itself), more rows in between. It restores each with the
// tablespace moved, checks the restored files with Debian's
// pg_verifybackup (against the backup_manifest the server wrote during
// BASE_BACKUP, or hoard wrote during local-tar), starts the cluster, counts
// the rows each backup must hold, and runs pg_checksums on the stopped
// copy. A local-tar backup whose pg_data_directory cannot be read fails
// naming it, and stores nothing. The site compresses with lz4, whose
// BASE_BACKUP chunks are compressed on a worker per CPU.
func TestRestoreTablespaceVerify(t *testing.T) {
	s := newSite(t, siteOptions{Encrypt: true, Compression: "lz4"})
	src := pgtest.Start(t, pgtest.Options{Major: 15, Conf: s.clusterConf(), DataChecksums: true})
	s.use(src)
	spcDir := pgtest.TempDir(t)
	src.Exec(t, "create tablespace ts1 location '"+spcDir+"'")
	src.Exec(t, "create table in_ts (id int, pad text) tablespace ts1")
	src.Exec(t, "insert into in_ts select g, repeat('x', 200) from generate_series(1, 20000) g")
	src.Exec(t, "checkpoint")

	out := s.mustHoard("basebackup", "--fast")
	if !strings.Contains(out, "over the replication protocol (BASE_BACKUP)") {
		t.Errorf("basebackup without pg_data_directory:\n%s", out)
	}

	// local-tar where the data directory cannot be read: a clear error,
	// nothing stored.
	s.setSiteKey("basebackup_mode", "local-tar")
	missing := filepath.Join(pgtest.TempDir(t), "not-here")
	s.setSiteKey("pg_data_directory", missing)
	out, errOut, err := s.hoard("basebackup", "--fast")
	if code := exitCode(err); code == 0 || !strings.Contains(errOut, "pg_data_directory "+missing) || !strings.Contains(errOut, "basebackup_mode") {
		t.Errorf("local-tar with an unreadable pg_data_directory: exit %d, want an error naming it and basebackup_mode\n%s\n%s", code, out, errOut)
	}
	if bs := s.listBackups(); len(bs) != 1 {
		t.Fatalf("%d backups listed after the failed one, want 1", len(bs))
	}
	// [!.]*: the store's own dot files (.hoard-create-lock) are no chunk
	// directories.
	if chunks, _ := filepath.Glob(filepath.Join(s.storeDir, s.name, "basebackup_chunk", "[!.]*")); len(chunks) != 1 {
		t.Errorf("chunk directories after the failed backup: %v", chunks)
	}

	src.Exec(t, "insert into in_ts select g, repeat('y', 200) from generate_series(20001, 25000) g")
	s.setSiteKey("pg_data_directory", src.DataDir)
	out = s.mustHoard("basebackup", "--fast")
	if !strings.Contains(out, "from the data directory (local-tar)") {
		t.Errorf("basebackup with basebackup_mode local-tar:\n%s", out)
	}
	switchAndWaitArchived(t, src)

	bs := s.listBackups()
	if len(bs) != 2 {
		t.Fatalf("%d backups, want 2", len(bs))
	}
	for i, tc := range []struct{ source, rows string }{{"base-backup", "20000"}, {"data-directory", "25000"}} {
		b := bs[i]
		if got := b.Metadata["hoard-source"]; got != tc.source {
			t.Errorf("backup %s: hoard-source %q, want %q", b.Name, got, tc.source)
		}
		t.Run(tc.source, func(t *testing.T) { restoreTablespaceVerify(t, s, src, b.Name, tc.rows) })
	}
}

// restoreTablespaceVerify restores backup name with tablespace ts1 moved,
// runs pg_verifybackup, starts the cluster, checks that in_ts holds rows
// rows, then runs pg_checksums on the stopped copy.
func restoreTablespaceVerify(t *testing.T, s *site, src *pgtest.Cluster, name, rows string) {
	dir := filepath.Join(pgtest.TempDir(t), "data")
	newSpc := filepath.Join(pgtest.TempDir(t), "ts1")
	s.mustHoard("restore", "--target-dir", dir, "--tablespace-dir", "ts1="+newSpc, "--target-immediate", "--basebackup", name)

	link, err := os.Readlink(filepath.Join(dir, "pg_tblspc", src.QueryString(t, "select oid::text from pg_tablespace where spcname = 'ts1'")))
	if err != nil {
		t.Fatalf("tablespace link: %v", err)
	}
	if link != newSpc {
		t.Errorf("pg_tblspc link points to %s, want %s", link, newSpc)
	}

	// pg_verifybackup checks every file against the backup's manifest.
	// -n: the restored pg_wal is empty (WAL comes from the archive).
	// tablespace_map is rewritten with the new location, so it differs
	// from the manifest by design; so does global/pg_control, whose
	// checkpoint location restore sets to 0/DEAD so that PostgreSQL
	// refuses to start without backup_label: pg_controldata checks it
	// below, and PostgreSQL checks its CRC at startup.
	verify := exec.Command(pgtest.Tool(t, "pg_verifybackup"), "-n", "-i", "tablespace_map", "-i", "global/pg_control", dir)
	pgtest.RunAs(verify)
	if out, err := verify.CombinedOutput(); err != nil {
		t.Fatalf("pg_verifybackup: %v\n%s", err, out)
	} else {
		t.Logf("pg_verifybackup: %s", out)
	}
	controldata := exec.Command(pgtest.Tool(t, "pg_controldata"), "-D", dir)
	pgtest.RunAs(controldata)
	if out, err := controldata.CombinedOutput(); err != nil || !strings.Contains(string(out), "Latest checkpoint location:           0/DEAD\n") || strings.Contains(string(out), "WARNING") {
		t.Errorf("pg_controldata of the restored directory (%v): want checkpoint location 0/DEAD and no warning:\n%s", err, out)
	}

	c := pgtest.StartDataDir(t, 15, dir, noArchiving)
	c.WaitRecoveryDone(t, 3*time.Minute)
	if got := c.QueryString(t, "select count(*)::text from in_ts"); got != rows {
		t.Errorf("restored in_ts has %s rows, want %s", got, rows)
	}
	if got := c.QueryString(t, "select pg_tablespace_location(oid) from pg_tablespace where spcname = 'ts1'"); got != newSpc {
		t.Errorf("restored tablespace location %s, want %s", got, newSpc)
	}
	checksums := exec.Command(filepath.Join(pgtest.DebianBinDir, "pg_checksums"), "--check", "-D", dir)
	c.Stop(t)
	pgtest.RunAs(checksums)
	if out, err := checksums.CombinedOutput(); err != nil {
		t.Errorf("pg_checksums --check on the restored cluster: %v\n%s", err, out)
	}
}

// TestRestoreRefusesDamage checks that a tampered chunk and a missing WAL
// segment each make hoard restore fail, naming the object, and never leave
// a directory PostgreSQL could start on.
func TestRestoreRefusesDamage(t *testing.T) {
	major := pgtest.Versions()[len(pgtest.Versions())-1]
	s := newSite(t, siteOptions{Encrypt: true})
	src := pgtest.Start(t, pgtest.Options{Major: major, Conf: s.clusterConf()})
	s.use(src)
	pgtest.Pgbench(t, src, "-i", "-s", "1", "-q")
	s.mustHoard("basebackup", "--fast")
	switchAndWaitArchived(t, src)
	b := s.listBackups()[0]

	t.Run("TamperedChunk", func(t *testing.T) {
		victim, undo := s.tamperChunk(t, b.Name)
		defer undo()

		dir := filepath.Join(pgtest.TempDir(t), "data")
		_, errOut, err := s.hoard("restore", "--target-dir", dir)
		if code := exitCode(err); code != 1 {
			t.Fatalf("restore of a tampered backup: exit %d, want 1\n%s", code, errOut)
		}
		if key := filepath.Base(victim); !strings.Contains(errOut, key) {
			t.Errorf("error does not name the tampered object %s:\n%s", key, errOut)
		}
		if _, err := os.Stat(filepath.Join(dir, "global", "pg_control")); err == nil {
			t.Errorf("a failed restore left global/pg_control: PostgreSQL could start on it")
		}
	})

	t.Run("MissingWAL", func(t *testing.T) {
		seg := filepath.Join(s.storeDir, s.name, "xlog", b.StartWALSegment)
		orig := readFile(t, seg)
		md := readFile(t, seg+".metadata")
		if err := os.Remove(seg); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(seg + ".metadata"); err != nil {
			t.Fatal(err)
		}
		defer func() { s.writeFile(seg, orig); s.writeFile(seg+".metadata", md) }()

		dir := filepath.Join(pgtest.TempDir(t), "data")
		_, errOut, err := s.hoard("restore", "--target-dir", dir)
		if code := exitCode(err); code != 1 {
			t.Fatalf("restore with a missing WAL segment: exit %d, want 1\n%s", code, errOut)
		}
		if !strings.Contains(errOut, b.StartWALSegment) {
			t.Errorf("error does not name the missing segment %s:\n%s", b.StartWALSegment, errOut)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("restore touched %s before finding the WAL gap (stat: %v)", dir, err)
		}
	})
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
