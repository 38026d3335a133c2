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

// TestRestoreWALDir backs up a PostgreSQL 15 cluster made with initdb
// --waldir (pg_wal a link to another directory) twice, over the
// replication protocol (BASE_BACKUP) and with basebackup_mode local-tar,
// more rows in between. Each is restored without --wal-dir, which gives a
// plain pg_wal directory, and with --wal-dir DIR: pg_wal is then a link to
// DIR, pg_verifybackup passes, the started cluster holds the backup's rows,
// and the WAL it writes after promotion lands in DIR. A restore again
// with --overwrite empties DIR too. A bad --wal-dir (relative, not empty,
// inside the target, the target or holding it, a file) is refused with exit
// 2 before anything is written.
func TestRestoreWALDir(t *testing.T) {
	s := newSite(t, siteOptions{Encrypt: true})
	srcWAL := filepath.Join(pgtest.TempDir(t), "wal")
	src := pgtest.Start(t, pgtest.Options{Major: 15, Conf: s.clusterConf(), DataChecksums: true, InitDBArgs: []string{"--waldir", srcWAL}})
	s.use(src)
	if link, err := os.Readlink(filepath.Join(src.DataDir, "pg_wal")); err != nil || link != srcWAL {
		t.Fatalf("source pg_wal: link %q (%v), want a link to %s", link, err, srcWAL)
	}
	src.Exec(t, "create table rows (id int, pad text)")
	src.Exec(t, "insert into rows select g, repeat('x', 200) from generate_series(1, 20000) g")
	src.Exec(t, "checkpoint")
	out := s.mustHoard("basebackup", "--fast")
	if !strings.Contains(out, "over the replication protocol (BASE_BACKUP)") {
		t.Errorf("basebackup without pg_data_directory:\n%s", out)
	}
	src.Exec(t, "insert into rows select g, repeat('y', 200) from generate_series(20001, 25000) g")
	s.setSiteKey("basebackup_mode", "local-tar")
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

	t.Run("refused", func(t *testing.T) { walDirRefused(t, s, bs[0].Name) })
	for i, tc := range []struct{ source, rows string }{{"base-backup", "20000"}, {"data-directory", "25000"}} {
		t.Run(tc.source, func(t *testing.T) { restoreWALDir(t, s, bs[i].Name, tc.rows, i == 0) })
	}
}

// restoreWALDir restores backup name without --wal-dir (a plain pg_wal
// directory), then with it, checks the link, pg_verifybackup and the
// rows, and that the started cluster writes its WAL into the directory.
// With overwrite, it restores again over both with --overwrite.
func restoreWALDir(t *testing.T, s *site, name, rows string, overwrite bool) {
	plain := filepath.Join(pgtest.TempDir(t), "data")
	s.mustHoard("restore", "--target-dir", plain, "--target-immediate", "--basebackup", name)
	if fi, err := os.Lstat(filepath.Join(plain, "pg_wal")); err != nil || !fi.IsDir() {
		t.Errorf("restored without --wal-dir: pg_wal %v (%v), want a directory", fi, err)
	}

	dir := filepath.Join(pgtest.TempDir(t), "data")
	walDir := filepath.Join(pgtest.TempDir(t), "wal")
	out := s.mustHoard("restore", "--target-dir", dir, "--wal-dir", walDir, "--target-immediate", "--basebackup", name)
	if !strings.Contains(out, "pg_wal is a link to "+walDir) {
		t.Errorf("summary does not name the WAL directory %s:\n%s", walDir, out)
	}
	wantWALLink(t, dir, walDir)
	for _, d := range []string{"archive_status", "hoard-prefetch"} {
		if fi, err := os.Lstat(filepath.Join(walDir, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s/%s: %v (%v), want a directory", walDir, d, fi, err)
		}
	}
	if !strings.Contains(out, "kept in "+walDir+"/hoard-prefetch") {
		t.Errorf("summary does not say the checked WAL is kept in %s/hoard-prefetch:\n%s", walDir, out)
	}
	verify := exec.Command(pgtest.Tool(t, "pg_verifybackup"), "-n", "-i", "global/pg_control", dir)
	pgtest.RunAs(verify)
	if out, err := verify.CombinedOutput(); err != nil {
		t.Fatalf("pg_verifybackup: %v\n%s", err, out)
	}

	c := pgtest.StartDataDir(t, 15, dir, noArchiving)
	c.WaitRecoveryDone(t, 3*time.Minute)
	if got := c.QueryString(t, "select count(*)::text from rows"); got != rows {
		t.Errorf("restored rows has %s rows, want %s", got, rows)
	}
	c.Exec(t, "insert into rows select g, 'z' from generate_series(1, 1000) g")
	seg := c.QueryString(t, "select pg_walfile_name(pg_current_wal_lsn())")
	c.Exec(t, "checkpoint")
	wantWALLink(t, dir, walDir)
	for _, f := range []string{seg, seg[:8] + ".history"} {
		if fi, err := os.Lstat(filepath.Join(walDir, f)); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("the restored cluster's %s is not in %s: %v", f, walDir, err)
		}
	}
	c.Stop(t)
	if !overwrite {
		return
	}
	// Not empty now: refused without --overwrite, naming the directory.
	_, errOut, err := s.hoard("restore", "--target-dir", pgtest.TempDir(t), "--wal-dir", walDir, "--target-immediate", "--basebackup", name)
	if code := exitCode(err); code != 2 || !strings.Contains(errOut, walDir) || !strings.Contains(errOut, "--overwrite") {
		t.Errorf("restore into the used WAL directory: exit %d, want 2 naming %s and --overwrite\n%s", code, walDir, errOut)
	}
	s.mustHoard("restore", "--target-dir", dir, "--wal-dir", walDir, "--overwrite", "--target-immediate", "--basebackup", name)
	wantWALLink(t, dir, walDir)
	if _, err := os.Lstat(filepath.Join(walDir, seg)); err == nil {
		t.Errorf("--overwrite kept %s in %s", seg, walDir)
	}
}

// wantWALLink checks that dir's pg_wal is a link to walDir.
func wantWALLink(t *testing.T, dir, walDir string) {
	t.Helper()
	if link, err := os.Readlink(filepath.Join(dir, "pg_wal")); err != nil || link != walDir {
		t.Errorf("restored pg_wal: link %q (%v), want a link to %s", link, err, walDir)
	}
}

// walDirRefused checks that a bad --wal-dir is a usage error naming the
// problem, and that nothing is written: the target stays absent, and a
// WAL directory that exists keeps what it held.
func walDirRefused(t *testing.T, s *site, name string) {
	base := pgtest.TempDir(t)
	target := filepath.Join(base, "data")
	full := filepath.Join(base, "full")
	if err := os.Mkdir(full, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(full, "keep"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, base)
	for _, tc := range []struct {
		what, dir, want string
	}{
		{what: "relative", dir: "wal", want: "must be an absolute path"},
		{what: "not empty", dir: full, want: full + " holds keep"},
		{what: "inside the target", dir: filepath.Join(target, "wal"), want: "overlaps the target directory"},
		{what: "the target", dir: target, want: "overlaps the target directory"},
		{what: "holding the target", dir: base, want: "overlaps the target directory"},
		{what: "a file", dir: file, want: "is not a directory"},
	} {
		out, errOut, err := s.hoard("restore", "--target-dir", target, "--wal-dir", tc.dir, "--target-immediate", "--basebackup", name)
		if code := exitCode(err); code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("--wal-dir %s (%s): exit %d, want 2 and %q\n%s\n%s", tc.dir, tc.what, code, tc.want, out, errOut)
		}
		if _, err := os.Lstat(target); err == nil {
			t.Fatalf("--wal-dir %s (%s): the target was created", tc.dir, tc.what)
		}
	}
	if ents, _ := os.ReadDir(full); len(ents) != 1 {
		t.Errorf("the refused WAL directory %s holds %v, want only keep", full, ents)
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "x" {
		t.Errorf("the refused file %s: %q, %v", file, b, err)
	}
}
