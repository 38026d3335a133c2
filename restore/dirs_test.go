package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/pgtest"
)

func TestCheckEmptyDir(t *testing.T) {
	root := t.TempDir()
	mk := func(name string, files ...string) string {
		d := filepath.Join(root, name)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if err := os.MkdirAll(filepath.Join(d, f), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	for _, d := range []string{filepath.Join(root, "absent"), mk("empty"), mk("mount", "lost+found")} {
		if err := checkEmptyDir(targetDir{path: d}); err != nil {
			t.Errorf("checkEmptyDir(%s) = %v", d, err)
		}
	}
	for _, d := range []string{mk("full", "base"), mk("mountfull", "lost+found", "PG_VERSION")} {
		if err := checkEmptyDir(targetDir{path: d}); !errors.Is(err, ErrTargetNotEmpty) {
			t.Errorf("checkEmptyDir(%s) = %v, want ErrTargetNotEmpty", d, err)
		}
	}
	// The message names the directory and a file in it, once, and leaves
	// the remedy to the caller's hint (it named "overwrite", no flag).
	d := mk("named", "PG_VERSION")
	if got, want := fmt.Sprint(checkEmptyDir(targetDir{path: d})), "directory is not empty: "+d+" holds PG_VERSION"; got != want {
		t.Errorf("checkEmptyDir(%s) = %q, want %q", d, got, want)
	}
}

// TestCheckEmptyTarget_LeftoverSpool: a restore killed before it wrote any
// file of the backup leaves only what the check of the backup's WAL
// keeps for wal-fetch (pg_wal/hoard-prefetch, with its files): the same
// command must restore into it without --overwrite, as into an empty
// directory. Anything else beside it, in pg_wal or in the directory, or a
// spool that is not a directory, still counts.
func TestCheckEmptyTarget_LeftoverSpool(t *testing.T) {
	root := t.TempDir()
	mk := func(name string, files ...string) string {
		d := filepath.Join(root, name)
		for _, f := range files {
			p := filepath.Join(d, f)
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(f, "/") {
				if err := os.MkdirAll(p, 0o700); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	spool := "pg_wal/" + archive.SpoolDirName + "/"
	for _, d := range []string{
		mk("spool", spool),
		mk("spoolfiles", spool+"lock", spool+"identity", spool+"000000010000000000000002"),
		mk("mountspool", "lost+found/", spool+"lock"),
		mk("walonly", "pg_wal/"),
	} {
		if err := checkEmptyTarget(d, ""); err != nil {
			t.Errorf("checkEmptyTarget(%s) = %v", d, err)
		}
	}
	for _, d := range []string{
		mk("walfile", spool+"lock", "pg_wal/000000010000000000000002"),
		mk("waldir", spool, "pg_wal/archive_status/"),
		mk("beside", spool, "PG_VERSION"),
	} {
		if err := checkEmptyTarget(d, ""); !errors.Is(err, ErrTargetNotEmpty) {
			t.Errorf("checkEmptyTarget(%s) = %v, want ErrTargetNotEmpty", d, err)
		}
	}
	// A tablespace directory is not a data directory: no spool there.
	if d := mk("tablespace", spool); !errors.Is(checkEmptyDir(targetDir{path: d}), ErrTargetNotEmpty) {
		t.Errorf("checkEmptyDir(%s) accepts a spool in a tablespace directory", d)
	}
	link := mk("link", "pg_wal/")
	if err := os.Symlink(t.TempDir(), filepath.Join(link, "pg_wal", archive.SpoolDirName)); err != nil {
		t.Fatal(err)
	}
	if err := checkEmptyTarget(link, ""); !errors.Is(err, ErrTargetNotEmpty) {
		t.Errorf("checkEmptyTarget(%s) with the spool a link = %v, want ErrTargetNotEmpty", link, err)
	}
}

func TestPrepareDir(t *testing.T) {
	d := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(filepath.Join(d, "lost+found"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "old"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := prepareDir(targetDir{path: d}, true); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(d)
	if len(ents) != 1 || ents[0].Name() != "lost+found" {
		t.Errorf("after wipe: %v, want only lost+found", ents)
	}
	if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("mode = %v, %v; want 0700", fi.Mode(), err)
	}
}

// TestCheckNotRunning: a postmaster.pid naming a live process is refused
// with its pid; a dead process's, this process's own (as PostgreSQL's
// CreateLockFile decides) and no file at all are not; one without a pid is
// refused.
func TestCheckNotRunning(t *testing.T) {
	dir := t.TempDir()
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := checkNotRunning(dir); err != nil {
		t.Errorf("no postmaster.pid: %v", err)
	}
	if err := checkNotRunning(filepath.Join(dir, "absent")); err != nil {
		t.Errorf("no directory: %v", err)
	}
	sleep := exec.Command("sleep", "600")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	live := sleep.Process.Pid
	defer func() { sleep.Process.Kill(); sleep.Wait() }()
	write(fmt.Sprintf("%d\n%s\n1767236400\n5432\n", live, dir))
	err := checkNotRunning(dir)
	if !errors.Is(err, ErrServerRunning) || !strings.Contains(err.Error(), fmt.Sprintf("process %d", live)) {
		t.Errorf("live pid: %v, want ErrServerRunning naming %d", err, live)
	}
	done := exec.Command("true")
	if err := done.Run(); err != nil {
		t.Fatal(err)
	}
	write(fmt.Sprintf("%d\n", done.Process.Pid))
	if err := checkNotRunning(dir); err != nil {
		t.Errorf("dead pid: %v", err)
	}
	write(fmt.Sprintf("%d\n", os.Getpid()))
	if err := checkNotRunning(dir); err != nil {
		t.Errorf("own pid: %v", err)
	}
	for _, bad := range []string{"", "x\n", "0\n", "-1\n"} {
		write(bad)
		if err := checkNotRunning(dir); !errors.Is(err, ErrServerRunning) {
			t.Errorf("postmaster.pid %q: %v, want ErrServerRunning", bad, err)
		}
	}
}

// TestRun_ErrOverwriteRunning: restore --overwrite into the data directory
// of a running PostgreSQL is refused, naming the postmaster's pid, and
// leaves the cluster running and whole; once it is stopped, the same
// restore goes ahead.
func TestRun_ErrOverwriteRunning(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Major: 15})
	c.Exec(t, "create table kept (id int)")
	pidFile, err := os.ReadFile(filepath.Join(c.DataDir, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _, _ := strings.Cut(string(pidFile), "\n")
	before := hostile.Snapshot(t, c.DataDir)
	a := hostileArchive(t)
	st := hostile.Put(t, a, hostile.Benign())
	o := Options{Archive: a, TargetDir: c.DataDir, Backup: st.Name, Overwrite: true, Logger: zerolog.Nop()}
	_, err = Run(context.Background(), o)
	if !errors.Is(err, ErrServerRunning) || !strings.Contains(err.Error(), "process "+pid+",") {
		t.Fatalf("Run = %v, want ErrServerRunning naming pid %s", err, pid)
	}
	if diff := cmp.Diff(before, hostile.Snapshot(t, c.DataDir)); diff != "" {
		t.Errorf("the data directory changed (-before +after):\n%s", diff)
	}
	if got := c.QueryString(t, "select count(*)::text from kept"); got != "0" {
		t.Errorf("the running cluster answers %q", got)
	}
	c.Stop(t)
	if _, err := Run(context.Background(), o); err != nil {
		t.Fatalf("Run after the server stopped: %v", err)
	}
	if _, err := os.Stat(filepath.Join(c.DataDir, "recovery.signal")); err != nil {
		t.Errorf("not restored: %v", err)
	}
}
