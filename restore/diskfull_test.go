package restore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// diskFullBackup takes a basebackup of a real PostgreSQL 15 cluster
// holding table t (about 20 MB, in tablespace extra when tablespace) and
// stores its WAL, for the disk-full tests. mode is how the backup reads
// the cluster (basebackup.ModeAuto: BASE_BACKUP). It returns the archive
// and the cp archive of the WAL.
func diskFullBackup(t *testing.T, tablespace bool, mode basebackup.Mode) (*archive.Archive, string) {
	t.Helper()
	src, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: 15})
	in := ""
	if tablespace {
		src.Exec(t, "create tablespace extra location '"+pgtest.TempDir(t)+"'")
		in = " tablespace extra"
	}
	src.Exec(t, "create table t (id int primary key, pad text)"+in)
	src.Exec(t, "insert into t select i, repeat(md5(i::text), 4) from generate_series(1, 100000) i")
	ctx := context.Background()
	a := archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: "zstd"})
	o := basebackup.Options{
		ConnString: src.ConnString("postgres"), Archive: a, Fast: true, NoWait: true, ChunkSize: 1 << 20, Logger: zerolog.Nop(), Mode: mode,
	}
	if mode != basebackup.ModeAuto {
		o.PGData = src.DataDir
		o.TempDir = pgtest.TempDir(t)
	}
	if _, err := basebackup.Run(ctx, o); err != nil {
		t.Fatal(err)
	}
	archivetest.StoreArchivedWAL(t, src, walDir, a)
	return a, walDir
}

// TestRun_DiskFull restores into a tmpfs too small for the backup: the
// space check refuses before writing anything, naming the directory and
// both sizes; with SkipSpaceCheck the restore fills the file system
// halfway and fails saying so, leaving a directory PostgreSQL refuses to
// start on even once space is freed; a second restore with Overwrite,
// after the file system grew, gives a working cluster.
func TestRun_DiskFull(t *testing.T) {
	mnt := pgtest.MountTmpfs(t, 16)
	a, walDir := diskFullBackup(t, false, basebackup.ModeAuto)
	dir := filepath.Join(mnt, "data")
	ctx := context.Background()
	o := Options{Archive: a, TargetDir: dir, RestoreCommand: "cp " + walDir + "/%f %p", Logger: zerolog.Nop()}

	t.Run("ErrSpaceCheck", func(t *testing.T) {
		_, err := Run(ctx, o)
		if !errors.Is(err, ErrNoSpace) {
			t.Fatalf("Run = %v, want ErrNoSpace", err)
		}
		for _, want := range []string{dir, "free", "--skip-space-check"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("the refused restore wrote %d entries into %s", len(ents), dir)
		}
	})

	t.Run("ErrFullHalfway", func(t *testing.T) {
		o := o
		o.SkipSpaceCheck = true
		o.Overwrite = true
		_, err := Run(ctx, o)
		if !errors.Is(err, unix.ENOSPC) || !errors.Is(err, ErrIncomplete) {
			t.Fatalf("Run = %v, want ENOSPC and ErrIncomplete", err)
		}
		for _, want := range []string{"full", dir, "MiB free", "overwrite"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
		t.Log(err)
		for _, name := range []string{"global/pg_control", "recovery.signal"} {
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				t.Errorf("the failed restore left %s", name)
			}
		}
		pgtest.Remount(t, mnt, "size=256m")
		if c, err := pgtest.TryStartDataDir(t, 15, dir, nil); err == nil {
			c.Stop(t)
			t.Fatal("PostgreSQL started on the half-restored directory")
		}
	})

	t.Run("OKAfterFreeing", func(t *testing.T) {
		o := o
		o.Overwrite = true
		if _, err := Run(ctx, o); err != nil {
			t.Fatal(err)
		}
		c := pgtest.StartDataDir(t, 15, dir, nil)
		c.WaitRecoveryDone(t, 3*time.Minute)
		if got := c.QueryString(t, "select count(*)::text from t"); got != "100000" {
			t.Errorf("restored t has %s rows, want 100000", got)
		}
		c.Stop(t)
	})

	// The inodes run out right after pg_control: the tablespace links and
	// the recovery configuration that come after it fail, and the
	// directory must not keep a pg_control PostgreSQL would start on.
	t.Run("ErrFullAfterControl", func(t *testing.T) {
		pgtest.Remount(t, mnt, "size=256m")
		o := o
		o.Overwrite = true
		if _, err := Run(ctx, o); err != nil {
			t.Fatal(err)
		}
		var st unix.Statfs_t
		if err := unix.Statfs(mnt, &st); err != nil {
			t.Fatal(err)
		}
		used := st.Files - st.Ffree
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		pgtest.Remount(t, mnt, "size=256m", "nr_inodes="+strconv.FormatUint(used-1, 10))
		_, err := Run(ctx, o)
		if !errors.Is(err, unix.ENOSPC) || !errors.Is(err, ErrIncomplete) {
			t.Fatalf("Run = %v, want ENOSPC and ErrIncomplete", err)
		}
		t.Log(err)
		if _, err := os.Stat(filepath.Join(dir, "global", "pg_control")); err == nil {
			t.Error("the failed restore left global/pg_control")
		}
	})
}

// TestRun_DiskFullTablespace restores backups whose tablespace, which
// holds table t, is mapped to an 8 MiB tmpfs while the data directory lies
// on a large file system: the backup records the tablespace's size
// (tablespace_sizes), so the space check refuses before anything is
// written, naming the tablespace's directory and both sizes, for backups
// taken over BASE_BACKUP, in local-tar and in delta mode. With
// SkipSpaceCheck the restore fills the tmpfs and fails saying so; once the
// file system grew, a restore with Overwrite gives a working cluster.
func TestRun_DiskFullTablespace(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode basebackup.Mode
	}{{"BaseBackup", basebackup.ModeAuto}, {"LocalTar", basebackup.ModeLocal}, {"Delta", basebackup.ModeDelta}} {
		t.Run(tc.name, func(t *testing.T) { testDiskFullTablespace(t, tc.mode) })
	}
}

func testDiskFullTablespace(t *testing.T, mode basebackup.Mode) {
	mnt := pgtest.MountTmpfs(t, 8)
	a, walDir := diskFullBackup(t, true, mode)
	spc := filepath.Join(mnt, "extra")
	dir := filepath.Join(pgtest.TempDir(t), "data")
	ctx := context.Background()
	o := Options{Archive: a, TargetDir: dir, TablespaceDirs: map[string]string{"extra": spc},
		RestoreCommand: "cp " + walDir + "/%f %p", Logger: zerolog.Nop()}

	_, err := Run(ctx, o)
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Run = %v, want ErrNoSpace", err)
	}
	t.Log(err)
	if want := regexp.MustCompile(regexp.QuoteMeta(spc) + ` needs about (2[0-9]|1[5-9]) MiB on its file system and had 8 MiB free`); !want.MatchString(err.Error()) {
		t.Errorf("error %q does not say %s needs 15-29 MiB and had 8 MiB free", err, spc)
	}
	if strings.Contains(err.Error(), dir) {
		t.Errorf("error %q names the data directory, which has room", err)
	}
	for _, d := range []string{dir, spc} {
		if ents, _ := os.ReadDir(d); len(ents) != 0 {
			t.Errorf("the refused restore wrote %d entries into %s", len(ents), d)
		}
	}

	if mode == basebackup.ModeAuto {
		o := o
		o.SkipSpaceCheck = true
		_, err := Run(ctx, o)
		if !errors.Is(err, unix.ENOSPC) || !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), spc) || !strings.Contains(err.Error(), "had 8 MiB free") {
			t.Fatalf("Run = %v, want ENOSPC and ErrIncomplete naming %s and its free space", err, spc)
		}
		t.Log(err)
		if _, err := os.Stat(filepath.Join(dir, "global", "pg_control")); err == nil {
			t.Error("the failed restore left global/pg_control")
		}
	}

	pgtest.Remount(t, mnt, "size=256m")
	o.Overwrite = true
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	// Every file, the tablespace's under pg_tblspc/<oid>/ included, was
	// compared with the backup's backup_manifest (a delta backup's too:
	// delta objects, embedded files and bundles).
	if res.PGManifestFiles < 900 {
		t.Errorf("restore compared %d files with backup_manifest, want every file of the cluster (900 or more)", res.PGManifestFiles)
	}
	pgtest.Chown(t, spc)
	c := pgtest.StartDataDir(t, 15, dir, nil)
	c.WaitRecoveryDone(t, 3*time.Minute)
	if got := c.QueryString(t, "select count(*)::text from t"); got != "100000" {
		t.Errorf("restored t has %s rows, want 100000", got)
	}
	c.Stop(t)
}
