package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestRecoveryStopsOnFullPgWAL restores a backup whose pg_wal is on a
// full tmpfs and starts PostgreSQL on it: hoard wal-fetch cannot write
// the segment and must exit 255, so that PostgreSQL stops with an error
// instead of taking the segment as missing and promoting without the rows
// after it; nothing may be left in pg_wal. Once space is freed, the same
// directory recovers every row.
func TestRecoveryStopsOnFullPgWAL(t *testing.T) {
	const major = 15
	s := backedUpSite(t, major, "create table t as select generate_series(1, 1000) as id")

	dir := filepath.Join(pgtest.TempDir(t), "data")
	s.mustHoard("restore", "--target-dir", dir)
	// pg_wal on a tmpfs (as initdb --waldir makes it) with 256 KiB free.
	walDir := pgtest.MountTmpfs(t, 96)
	if err := os.RemoveAll(filepath.Join(dir, "pg_wal")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(walDir, filepath.Join(dir, "pg_wal")); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(walDir, "filler")
	pgtest.FillDisk(t, filler, 256<<10)

	c, err := pgtest.TryStartDataDir(t, major, dir, noArchiving)
	if err == nil {
		if promoted := waitRecoveryEnd(t, c, 3*time.Minute); promoted {
			t.Fatalf("PostgreSQL promoted with %s rows of 1000 while pg_wal was full", c.QueryString(t, "select count(*) from t"))
		}
		c.Stop(t)
	}
	log := c.Log()
	if !strings.Contains(log, "no space left on device") || !strings.Contains(log, "exit code 255") {
		t.Errorf("recovery stopped, but the log does not show wal-fetch failing on the full disk with 255:\n%s", tailLines(log, 30))
	}
	if strings.Contains(log, "database system is ready to accept connections") {
		t.Errorf("PostgreSQL came up as a primary:\n%s", tailLines(log, 30))
	}
	ents, err := os.ReadDir(walDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "filler" && e.Name() != "hoard-prefetch" && e.Name() != "archive_status" {
			t.Errorf("pg_wal holds %s after the failed fetches", e.Name())
		}
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	c.Start(t)
	c.WaitRecoveryDone(t, 3*time.Minute)
	if got := c.QueryString(t, "select count(*) from t"); got != "1000" {
		t.Errorf("restored rows = %s, want 1000", got)
	}
}

// TestRestore_DiskFull runs hoard restore into a tmpfs too small for the
// backup: it refuses before writing, exit 1, naming the directory and
// --skip-space-check; with that flag it fills the disk, exit 1, saying the
// directory is incomplete; after the tmpfs grows, --overwrite restores a
// cluster that starts with every row.
func TestRestore_DiskFull(t *testing.T) {
	const major = 15
	s := backedUpSite(t, major, "create table t as select i, repeat(md5(i::text), 4) as pad from generate_series(1, 100000) i")

	mnt := pgtest.MountTmpfs(t, 16)
	dir := filepath.Join(mnt, "data")
	for _, c := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"does not fit", dir, "MiB free", "--skip-space-check"}},
		{[]string{"--skip-space-check"}, []string{"no space left on device", "incomplete", "MiB free"}},
	} {
		_, stderr, err := s.hoard(append([]string{"restore", "--target-dir", dir, "--overwrite"}, c.args...)...)
		if code := exitCode(err); code != 1 {
			t.Errorf("restore %v: exit %d, want 1", c.args, code)
		}
		for _, w := range c.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("restore %v: the error does not say %q:\n%s", c.args, w, tailLines(stderr, 5))
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "global", "pg_control")); err == nil {
		t.Error("the failed restore left global/pg_control")
	}
	pgtest.Remount(t, mnt, "size=256m")
	s.mustHoard("restore", "--target-dir", dir, "--overwrite")
	c := pgtest.StartDataDir(t, major, dir, noArchiving)
	c.WaitRecoveryDone(t, 3*time.Minute)
	if got := c.QueryString(t, "select count(*) from t"); got != "100000" {
		t.Errorf("restored rows = %s, want 100000", got)
	}
}

// backedUpSite starts a cluster of major archiving through a new site,
// runs sql on it, takes a basebackup and waits until the WAL after it is
// archived.
func backedUpSite(t *testing.T, major int, sql string) *site {
	t.Helper()
	s := newSite(t, siteOptions{})
	src := pgtest.Start(t, pgtest.Options{Major: major, Conf: s.clusterConf()})
	s.use(src)
	src.Exec(t, sql)
	s.mustHoard("basebackup", "--fast")
	switchAndWaitArchived(t, src)
	return s
}
