package restore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestRestoreSpace_Check plans restores whose tablespaces lie on an 8 MiB
// tmpfs while the data directory lies on a large file system: with
// tablespace_sizes, each file system is checked against the parts
// restored there, two tablespaces on one file system adding up; without
// the record (PGHoard's backups, older hoard's) only the sum of the free
// space counts, and the small file system is reported by warn.
func TestRestoreSpace_Check(t *testing.T) {
	mnt := pgtest.MountTmpfs(t, 8)
	target := pgtest.TempDir(t)
	dirs := map[string]string{"one": filepath.Join(mnt, "one"), "two": filepath.Join(mnt, "two")}
	for _, d := range dirs {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	const mb = 1 << 20
	manifest := func(sizes map[string]int64) *archive.Manifest {
		m := &archive.Manifest{Tablespaces: map[string]archive.ManifestTablespace{"one": {OID: 16400}, "two": {OID: 16401}}}
		if sizes != nil {
			m.Hoard = &archive.HoardManifest{TablespaceSizes: sizes}
		}
		return m
	}
	check := func(t *testing.T, total int64, m *archive.Manifest, chain ...*chainLevel) ([]string, error) {
		t.Helper()
		sp, err := planSpace(&archive.BackupInfo{Name: testBackup, TotalSizePlain: total}, m, chain, target, dirs, "")
		if err != nil {
			t.Fatal(err)
		}
		var warned []string
		err = sp.check(testBackup, func(f *fsSpace) { warned = append(warned, f.dirs...) })
		return warned, err
	}

	t.Run("OK", func(t *testing.T) {
		if _, err := check(t, 40*mb, manifest(map[string]int64{"one": 3 * mb, "two": 3 * mb})); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ErrTablespaceTooLarge", func(t *testing.T) {
		_, err := check(t, 40*mb, manifest(map[string]int64{"one": 12 * mb, "two": 0}))
		if !errors.Is(err, ErrNoSpace) {
			t.Fatalf("check = %v, want ErrNoSpace", err)
		}
		want := dirs["one"] + " and " + dirs["two"] + " need about 12 MiB on their file system and had 8 MiB free"
		if !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), target) {
			t.Errorf("error %q, want it to say %q and not to name %s", err, want, target)
		}
	})
	t.Run("ErrTwoAddUp", func(t *testing.T) {
		// Each fits alone; together they do not.
		_, err := check(t, 40*mb, manifest(map[string]int64{"one": 5 * mb, "two": 5 * mb}))
		if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "need about 10 MiB") {
			t.Fatalf("check = %v, want ErrNoSpace for 10 MiB", err)
		}
	})
	t.Run("OKNoRecord", func(t *testing.T) {
		// The parts are unknown: the free space of both file systems
		// together is enough, and the small one is only warned about.
		warned, err := check(t, 40*mb, manifest(nil))
		if err != nil {
			t.Fatal(err)
		}
		if len(warned) != 2 || warned[0] != dirs["one"] {
			t.Errorf("warned about %q, want the tmpfs's directories", warned)
		}
	})
	level := func(total int64, m *archive.Manifest) *chainLevel {
		return &chainLevel{info: &archive.BackupInfo{TotalSizePlain: total}, ctrl: &archive.Control{Manifest: m}}
	}
	t.Run("ErrChainFullLarger", func(t *testing.T) {
		// An incremental backup's files are rebuilt as large as its
		// full backup's: each part is the largest of the chain's.
		incr := manifest(map[string]int64{"one": 1 * mb, "two": 0})
		_, err := check(t, 10*mb, incr, level(40*mb, manifest(map[string]int64{"one": 9 * mb, "two": 0})), level(10*mb, incr))
		if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "need about 9 MiB") {
			t.Fatalf("check = %v, want ErrNoSpace for 9 MiB", err)
		}
	})
	t.Run("OKPartialRecord", func(t *testing.T) {
		// A record that leaves a tablespace out does not split.
		if _, err := check(t, 40*mb, manifest(map[string]int64{"one": 12 * mb})); err != nil {
			t.Fatal(err)
		}
	})
}
