package restore

import (
	"archive/tar"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/hostile"
)

// TestOptions_ValidateWALDir: a WAL directory that is relative, the
// target, inside it or holding it, or a file is refused with ErrBadWALDir;
// an absent one, or a directory elsewhere, is accepted and cleaned.
func TestOptions_ValidateWALDir(t *testing.T) {
	root := t.TempDir()
	target := filepath.Join(root, "data")
	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"wal", "./wal", target, filepath.Join(target, "pg_wal"), root, file} {
		o := Options{TargetDir: target, WALDir: d}
		if err := o.validateWALDir(); !errors.Is(err, ErrBadWALDir) || !strings.Contains(err.Error(), d) {
			t.Errorf("validateWALDir(%s) = %v, want ErrBadWALDir naming it", d, err)
		}
	}
	for _, d := range []string{filepath.Join(root, "wal") + "/", filepath.Join(root, "data2"), t.TempDir()} {
		o := Options{TargetDir: target, WALDir: d}
		if err := o.validateWALDir(); err != nil {
			t.Errorf("validateWALDir(%s) = %v", d, err)
		}
		if o.WALDir != filepath.Clean(d) {
			t.Errorf("WALDir %s, want %s", o.WALDir, filepath.Clean(d))
		}
	}
	o := Options{TargetDir: target, WALDir: filepath.Join(root, "spc", "wal")}
	if err := o.checkWALDirShared(map[string]string{"ts1": filepath.Join(root, "spc")}, nil); !errors.Is(err, ErrBadWALDir) {
		t.Errorf("checkWALDirShared with the WAL directory in a tablespace's = %v, want ErrBadWALDir", err)
	}
	o.WALDir = filepath.Join(root, "wal")
	if err := o.checkWALDirShared(map[string]string{"ts1": filepath.Join(root, "wal", "spc")}, nil); !errors.Is(err, ErrBadWALDir) {
		t.Errorf("checkWALDirShared with a tablespace in the WAL directory = %v, want ErrBadWALDir", err)
	}
	if err := o.checkWALDirShared(map[string]string{"ts1": filepath.Join(root, "spc")}, nil); err != nil {
		t.Errorf("checkWALDirShared apart = %v", err)
	}
}

// TestCheckEmpty_WALDir: what a restore with a WAL directory killed
// before it wrote a file of the backup leaves (the target's pg_wal a link
// to it, the spool in it) lets the same restore run again without
// overwrite; a link elsewhere, a WAL file or a link for the spool do not.
func TestCheckEmpty_WALDir(t *testing.T) {
	root := t.TempDir()
	walDir := filepath.Join(root, "wal")
	target := filepath.Join(root, "data")
	if err := os.MkdirAll(filepath.Join(walDir, archive.SpoolDirName), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(walDir, filepath.Join(target, "pg_wal")); err != nil {
		t.Fatal(err)
	}
	if err := checkEmptyTarget(target, walDir); err != nil {
		t.Errorf("checkEmptyTarget with pg_wal a link to the WAL directory = %v", err)
	}
	if err := checkEmptyWALDir(walDir); err != nil {
		t.Errorf("checkEmptyWALDir with the spool = %v", err)
	}
	for _, other := range []string{"", filepath.Join(root, "other")} {
		if err := checkEmptyTarget(target, other); !errors.Is(err, ErrTargetNotEmpty) {
			t.Errorf("checkEmptyTarget(walDir %q) with pg_wal a link to %s = %v, want ErrTargetNotEmpty", other, walDir, err)
		}
	}
	if err := os.WriteFile(filepath.Join(walDir, "000000010000000000000002"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := checkEmptyWALDir(walDir); !errors.Is(err, ErrTargetNotEmpty) || !strings.Contains(err.Error(), walDir) {
		t.Errorf("checkEmptyWALDir with a segment = %v, want ErrTargetNotEmpty naming %s", err, walDir)
	}
	linked := filepath.Join(root, "linked")
	if err := os.Mkdir(linked, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(t.TempDir(), filepath.Join(linked, archive.SpoolDirName)); err != nil {
		t.Fatal(err)
	}
	if err := checkEmptyWALDir(linked); !errors.Is(err, ErrTargetNotEmpty) {
		t.Errorf("checkEmptyWALDir with the spool a link = %v, want ErrTargetNotEmpty", err)
	}
}

// TestOptions_LinkWAL: pg_wal becomes a link to the WAL directory; a
// pg_wal directory holding the spool is replaced, the same link kept.
func TestOptions_LinkWAL(t *testing.T) {
	root := t.TempDir()
	o := Options{TargetDir: filepath.Join(root, "data"), WALDir: filepath.Join(root, "wal")}
	if err := os.MkdirAll(filepath.Join(o.TargetDir, "pg_wal", archive.SpoolDirName), 0o700); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := o.linkWAL(); err != nil {
			t.Fatal(err)
		}
		if link, err := os.Readlink(filepath.Join(o.TargetDir, "pg_wal")); err != nil || link != o.WALDir {
			t.Errorf("pg_wal: link %q, %v; want a link to %s", link, err, o.WALDir)
		}
	}
}

// TestExtractor_WALDir: pg_wal's directories are made in the WAL
// directory, the target's pg_wal link is not replaced, and a file the
// backup holds under pg_wal (none does) is refused, written nowhere.
func TestExtractor_WALDir(t *testing.T) {
	root := t.TempDir()
	ex := testExtractor(t, root)
	walDir := filepath.Join(root, "wal")
	if err := os.Mkdir(walDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(walDir, filepath.Join(root, "pg", "pg_wal")); err != nil {
		t.Fatal(err)
	}
	var err error
	if ex.wal, err = os.OpenRoot(walDir); err != nil {
		t.Fatal(err)
	}
	err = extractAll(t, ex, hostile.Tar(t,
		hostile.Member{Name: "pgdata", Type: tar.TypeDir},
		hostile.Member{Name: "pgdata/pg_wal", Type: tar.TypeDir},
		hostile.Member{Name: "pgdata/pg_wal/archive_status", Type: tar.TypeDir},
		hostile.Member{Name: "pgdata/pg_wal/summaries", Type: tar.TypeDir},
	))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"archive_status", "summaries"} {
		if fi, err := os.Lstat(filepath.Join(walDir, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s in the WAL directory: %v", d, err)
		}
	}
	if link, err := os.Readlink(filepath.Join(root, "pg", "pg_wal")); err != nil || link != walDir {
		t.Errorf("pg_wal: link %q, %v; want a link to %s", link, err, walDir)
	}
	err = extractAll(t, ex, hostile.Tar(t, hostile.Member{Name: "pgdata/pg_wal/000000010000000000000001", Body: "wal"}))
	if err == nil {
		t.Error("a file under pg_wal was written")
	}
	if ents, _ := os.ReadDir(walDir); len(ents) != 2 {
		t.Errorf("the WAL directory holds %v, want archive_status and summaries", ents)
	}
}

// TestPlanSpace_WALDir: the WAL directory's file system is measured, and
// is where the spool goes (walRoom); on the target's, it adds a
// segment, the first recovery fetches there, to the need.
func TestPlanSpace_WALDir(t *testing.T) {
	root := t.TempDir()
	target, walDir := filepath.Join(root, "data"), filepath.Join(root, "wal")
	for _, d := range []string{target, walDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	sp, err := planSpace(&archive.BackupInfo{Name: testBackup, TotalSizePlain: 1 << 20}, &archive.Manifest{}, nil, target, nil, walDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(sp.fs) != 1 || sp.wal != sp.fs[0] || sp.fs[0].need != 1<<20+16<<20 || len(sp.fs[0].dirs) != 2 || sp.fs[0].dirs[1] != walDir {
		t.Errorf("planSpace on one file system: %+v, wal %p", sp.fs, sp.wal)
	}
	// Alone on its file system, the WAL directory's room is half its
	// free space: the backup takes none of it.
	sp.fs = append(sp.fs, &fsSpace{dirs: []string{walDir}, free: 64 << 20})
	sp.wal = sp.fs[1]
	sp.split = false
	if got, want := walRoom(sp, 16<<20), 2; got != want {
		t.Errorf("walRoom on the WAL directory's own file system = %d, want %d", got, want)
	}
}

// TestRestoreSpace_CheckWALDir: the WAL directory's own file system holds
// no part of the backup, so its free space does not count toward it; and
// it must hold what recovery first writes there, a segment.
func TestRestoreSpace_CheckWALDir(t *testing.T) {
	const mb = 1 << 20
	data := func(free int64) *fsSpace {
		return &fsSpace{dirs: []string{"/data"}, free: free, need: 100 * mb, data: true}
	}
	wal := func(free int64) *fsSpace { return &fsSpace{dirs: []string{"/wal"}, free: free, need: 16 * mb} }
	for _, tc := range []struct {
		name string
		sp   *restoreSpace
		ok   bool
	}{
		{"Fits", &restoreSpace{need: 100 * mb, fs: []*fsSpace{data(200 * mb), wal(20 * mb)}}, true},
		{"FitsSplit", &restoreSpace{need: 100 * mb, split: true, fs: []*fsSpace{data(200 * mb), wal(20 * mb)}}, true},
		{"BackupOnWALDisk", &restoreSpace{need: 100 * mb, fs: []*fsSpace{data(60 * mb), wal(60 * mb)}}, false},
		{"WALDiskFull", &restoreSpace{need: 100 * mb, fs: []*fsSpace{data(200 * mb), wal(1 * mb)}}, false},
		{"WALDiskFullSplit", &restoreSpace{need: 100 * mb, split: true, fs: []*fsSpace{data(200 * mb), wal(1 * mb)}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.sp.wal = tc.sp.fs[1]
			err := tc.sp.check(testBackup, func(f *fsSpace) { t.Errorf("warned of %v", f.dirs) })
			if tc.ok && err != nil || !tc.ok && !errors.Is(err, ErrNoSpace) {
				t.Errorf("check = %v, want ok %v", err, tc.ok)
			}
			if !tc.ok && err != nil && !strings.Contains(err.Error(), "/wal") {
				t.Errorf("check = %v, want it to name /wal", err)
			}
		})
	}
}
