package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// hostileSite is a site whose storage holds hostile backups, written
// there directly, as someone who can write to the storage but holds no key
// could.
type hostileSite struct {
	*site
	a *archive.Archive
}

// newHostileSite writes a configuration for a site stored in c, and
// opens c for the test.
func newHostileSite(t *testing.T, c storage.Config) *hostileSite {
	t.Helper()
	s := newSite(t, siteOptions{})
	s.setSiteKey("object_storage", storetest.ObjectStorage(c))
	st, err := storage.Open(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &hostileSite{site: s, a: &archive.Archive{
		Store: st, Codec: &archive.Codec{Compression: "snappy"}, Layout: archive.Layout{Prefix: s.name}, Site: s.name,
	}}
}

// env makes a hostile.Env the server's user can use: hoard runs as that
// user, and the victims are its files, so that only confinement stops a
// restore from changing them.
func (s *hostileSite) env() hostile.Env {
	s.t.Helper()
	e := hostile.EnvAt(s.t, pgtest.TempDir(s.t))
	pgtest.Chown(s.t, e.Parent)
	return e
}

// TestRestoreHostile stores every hostile backup of internal/hostile in a
// real storage server (a local store, MinIO) and restores each with the
// built hoard into a target inside a fresh parent directory: each is
// refused (exit 1) with an error naming the backup, the object and the
// member, and nothing outside the target changes. The benign backup the
// same harness builds restores. Then hoard verify --restore on hostile
// backups fails without touching anything outside its scratch directory.
func TestRestoreHostile(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs the built binary and storage servers")
	}
	t.Run("local", func(t *testing.T) {
		dir := pgtest.TempDir(t)
		s := newHostileSite(t, storage.Config{Type: "local", Directory: dir})
		s.restoreAll(t, func() { pgtest.Chown(t, dir) })
		s.verifyRestore(t)
	})
	t.Run("minio", func(t *testing.T) {
		c := storetest.MinIO(t)
		s := newHostileSite(t, c)
		s.restoreAll(t, func() {})
	})
}

// restoreAll stores the benign backup and every hostile one, then restores
// each. stored runs after the objects are written.
func (s *hostileSite) restoreAll(t *testing.T, stored func()) {
	t.Helper()
	type run struct {
		c hostile.Case
		e hostile.Env
		s hostile.Stored
	}
	var runs []run
	for _, c := range hostile.Cases(hostile.Env{Parent: "/nonexistent"}) {
		e := s.env()
		cc := hostile.Named(t, e, c.Name)
		runs = append(runs, run{c: cc, e: e, s: hostile.Put(t, s.a, cc.Backup)})
	}
	benign := hostile.Put(t, s.a, hostile.Benign())
	stored()

	e := s.env()
	before := e.Snapshot(t)
	s.mustHoard("restore", "--target-dir", e.Target(), "--basebackup", benign.Name)
	if fi, err := os.Stat(filepath.Join(e.Target(), "recovery.signal")); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("benign backup not restored: %v", err)
	}
	if diff := cmp.Diff(before, e.Snapshot(t)); diff != "" {
		t.Errorf("benign: outside the target (-before +after):\n%s", diff)
	}

	for _, r := range runs {
		t.Run(r.c.Name, func(t *testing.T) {
			before := r.e.Snapshot(t, r.c.Owned()...)
			args := []string{"restore", "--target-dir", r.e.Target(), "--basebackup", r.s.Name}
			for name, dir := range r.c.TablespaceDirs {
				args = append(args, "--tablespace-dir", name+"="+dir)
			}
			_, errOut, err := s.hoard(args...)
			// 2 when the fix is the user's (map the tablespace elsewhere).
			if code := exitCode(err); code != 1 && code != 2 {
				t.Errorf("hoard restore exited %d, want 1 or 2", code)
			}
			if why := r.c.Check(errors.New(errorLine(errOut)), r.s); why != "" {
				t.Error(why)
			}
			if diff := cmp.Diff(before, r.e.Snapshot(t, r.c.Owned()...)); diff != "" {
				t.Errorf("outside the target (-before +after):\n%s", diff)
			}
		})
	}
}

// verifyRestore runs hoard verify --restore on hostile backups already in
// the site's storage: each test restore fails, naming the member, and
// nothing outside the scratch directory changes.
func (s *hostileSite) verifyRestore(t *testing.T) {
	t.Helper()
	binDir := pgtest.BinDir(t, pgtest.DebianMajor, true)
	for _, name := range []string{"SymlinkRecoverySignal", "SymlinksInnerFirst", "SymlinkPrefetchSpool", "HardLinkOutside", "GNUSparse"} {
		t.Run("verify-restore/"+name, func(t *testing.T) {
			e := s.env()
			c := hostile.Named(t, e, name)
			c.Backup.Name = strings.Replace(c.Backup.Name, "03-00", "04-00", 1)
			st := hostile.Put(t, s.a, c.Backup)
			pgtest.Chown(t, s.storeDirOf(t))
			if err := os.Mkdir(e.Target(), 0o711); err != nil {
				t.Fatal(err)
			}
			pgtest.Chown(t, e.Target())
			before := e.Snapshot(t)
			_, errOut, err := s.hoard("verify", "--restore", "--basebackup", st.Name, "--scratch-dir", e.Target(), "--pg-bin-dir", binDir)
			if err == nil {
				t.Fatal("verify --restore passed a hostile backup")
			}
			if why := c.Check(errors.New(errOut), st); why != "" {
				t.Error(why)
			}
			if diff := cmp.Diff(before, e.Snapshot(t)); diff != "" {
				t.Errorf("outside the scratch directory (-before +after):\n%s", diff)
			}
		})
	}
}

// storeDirOf returns the local store's directory of the site.
func (s *hostileSite) storeDirOf(t *testing.T) string {
	t.Helper()
	_, site := s.readConfig()
	return site["object_storage"].(map[string]any)["directory"].(string)
}

// errorLine is the line of a command's stderr that holds its error
// ("hoard: ..."), "" when there is none.
func errorLine(s string) string {
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, "hoard: ") {
			return line
		}
	}
	return ""
}
