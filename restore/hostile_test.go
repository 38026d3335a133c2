package restore

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/storage"
)

// hostileArchive is an archive in a mem store, zstd-compressed.
func hostileArchive(t testing.TB) *archive.Archive {
	t.Helper()
	return archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: compress.Zstd})
}

// restoreHostile stores b in a new archive and restores it into e's
// target.
func restoreHostile(t *testing.T, e hostile.Env, b hostile.Backup, spcDirs map[string]string) (hostile.Stored, *Result, error) {
	t.Helper()
	a := hostileArchive(t)
	st := hostile.Put(t, a, b)
	res, err := Run(context.Background(), Options{
		Archive: a, TargetDir: e.Target(), Backup: st.Name, TablespaceDirs: spcDirs,
		RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop(),
	})
	return st, res, err
}

// TestRun_HostileBenign: the hostile backups' harness makes a backup that
// restores, and a delta backup that does, so that the refusals below are the hostile members' doing.
func TestRun_HostileBenign(t *testing.T) {
	for _, b := range []hostile.Backup{hostile.Benign(), hostile.BenignDelta()} {
		e := hostile.NewEnv(t)
		before := e.Snapshot(t)
		if _, _, err := restoreHostile(t, e, b, nil); err != nil {
			t.Fatalf("benign backup %s: %v", b.Name, err)
		}
		for _, name := range []string{"PG_VERSION", "base/1/1259", "global/pg_control", "backup_label", "recovery.signal", "postgresql.auto.conf"} {
			if fi, err := os.Lstat(filepath.Join(e.Target(), name)); err != nil || !fi.Mode().IsRegular() {
				t.Errorf("%s: %s: %v", b.Name, name, err)
			}
		}
		if diff := cmp.Diff(before, e.Snapshot(t)); diff != "" {
			t.Errorf("%s: outside the target (-before +after):\n%s", b.Name, diff)
		}
	}
}

// TestRun_Hostile restores each hostile backup into a target inside a
// fresh parent directory: each is refused with an error that names the
// backup, the object and the member (or manifest entry) at fault, and
// nothing outside the target changes.
func TestRun_Hostile(t *testing.T) {
	for _, c := range hostile.Cases(hostile.NewEnv(t)) {
		t.Run(c.Name, func(t *testing.T) {
			e := hostile.NewEnv(t)
			c = hostile.Named(t, e, c.Name)
			before := e.Snapshot(t, c.Owned()...)
			st, _, err := restoreHostile(t, e, c.Backup, c.TablespaceDirs)
			if why := c.Check(err, st); why != "" {
				t.Error(why)
			}
			if diff := cmp.Diff(before, e.Snapshot(t, c.Owned()...)); diff != "" {
				t.Errorf("outside the target (-before +after):\n%s", diff)
			}
		})
	}
}
