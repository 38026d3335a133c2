package restore

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/storetest"
)

// controlLog puts a store over a's that records the reads of control
// objects (basebackup/...) and returns it.
func controlLog(a *archive.Archive) *storetest.OpenLog {
	log := &storetest.OpenLog{Store: a.Store, Match: func(key string) bool { return strings.Contains(key, "/basebackup/") }}
	a.Store = log
	return log
}

// TestRun_ControlReadOnce: restore reads the control object of a backup
// that carries backup_manifest once before its chunks (its manifest,
// backup_label and backup_manifest in one pass), and the restored
// backup's once more after them (extractControl writes it), and each
// parent of an incremental chain once. Before, backup_manifest was read
// by a pass of its own (readPGManifest), and an incremental level's file
// list by a third (ReadControlMember): for a cluster of a million files
// each a download, decryption and decompression of some 150 MB.
func TestRun_ControlReadOnce(t *testing.T) {
	const parent, child = "2026-01-02_03-00_0", "2026-01-02_03-00_1"
	t.Run("Full", func(t *testing.T) {
		files := newChainFiles().parent
		maps.DeleteFunc(files, func(k string, _ string) bool { return strings.HasPrefix(k, "pg_tblspc/") })
		a := hostileArchive(t)
		st := hostile.Put(t, a, chainBackup(t, parent, "", files, files, nil))
		log := controlLog(a)
		e := hostile.NewEnv(t)
		if _, err := Run(context.Background(), Options{Archive: a, TargetDir: e.Target(), Backup: parent,
			RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop()}); err != nil {
			t.Fatalf("restore of %s: %v", parent, err)
		}
		if got, want := log.Count(st.ControlKey), 2; got != want {
			t.Errorf("control object of %s opened %d times, want %d (once before the chunks, once to extract it): %v", parent, got, want, log.Keys())
		}
	})
	t.Run("Chain", func(t *testing.T) {
		_, a, pst, cst := putChain(t, parent, child)
		log := controlLog(a)
		e := hostile.NewEnv(t)
		if _, err := Run(context.Background(), Options{Archive: a, TargetDir: e.Target(), Backup: child,
			TablespaceDirs: map[string]string{"new": e.Parent + "/new"},
			RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop()}); err != nil {
			t.Fatalf("restore of %s: %v", child, err)
		}
		if got, want := log.Count(pst.ControlKey), 1; got != want {
			t.Errorf("control object of the parent %s opened %d times, want %d: %v", parent, got, want, log.Keys())
		}
		if got, want := log.Count(cst.ControlKey), 2; got != want {
			t.Errorf("control object of %s opened %d times, want %d (once before the chunks, once to extract it): %v", child, got, want, log.Keys())
		}
	})
}

// TestRun_ChainControlSwapped: the control object of the restored
// incremental backup is replaced by its parent's (copied under its name)
// for one of restore's reads of it after the first: restore either
// refuses (ErrSizeMismatch: the object changed since it was first read;
// ErrPGManifest: a member the extraction compares first differs),
// leaving no pg_control, or restores the backup's files, never a
// directory without some of them.
// Before, a third read (of its backup_manifest's paths, for the files to
// remove that the backup does not have) compared nothing with the first:
// given the parent's, restore removed the file the incremental backup
// added (base/1/4444) and succeeded.
func TestRun_ChainControlSwapped(t *testing.T) {
	const parent, child = "2026-01-02_03-00_0", "2026-01-02_03-00_1"
	for at := 2; at <= 4; at++ {
		t.Run(strconv.Itoa(at), func(t *testing.T) {
			f, a, pst, cst := putChain(t, parent, child)
			a.Store = &storetest.SwapOpen{Store: a.Store, Key: cst.ControlKey, Other: pst.ControlKey, At: at}
			e := hostile.NewEnv(t)
			_, err := Run(context.Background(), Options{Archive: a, TargetDir: e.Target(), Backup: child,
				TablespaceDirs: map[string]string{"new": e.Parent + "/new"},
				RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop()})
			if err != nil {
				// Refused as changed, or as differing from its
				// backup_manifest when the extraction compares a member
				// before the object's end: pg_control is not written.
				if !errors.Is(err, ErrSizeMismatch) && !errors.Is(err, ErrPGManifest) {
					t.Fatalf("restore: %v, want ErrSizeMismatch or ErrPGManifest", err)
				}
				if _, serr := os.Stat(filepath.Join(e.Target(), "global/pg_control")); !errors.Is(serr, os.ErrNotExist) {
					t.Errorf("restore refused, but pg_control: %v, want it absent", serr)
				}
				return
			}
			got, err := os.ReadFile(filepath.Join(e.Target(), "base/1/4444"))
			if err != nil || string(got) != f.child["base/1/4444"] {
				t.Errorf("restore succeeded; base/1/4444: %d bytes (%v), want %d", len(got), err, len(f.child["base/1/4444"]))
			}
		})
	}
}

// putChain stores in a new archive a full backup parent with tablespaces
// old and gone, and its incremental backup child, with tablespace new
// instead (newChainFiles).
func putChain(t *testing.T, parent, child string) (chainFiles, *archive.Archive, hostile.Stored, hostile.Stored) {
	t.Helper()
	f := newChainFiles()
	a := hostileArchive(t)
	pst := hostile.Put(t, a, chainBackup(t, parent, "", f.parent, f.parent,
		map[string]string{"pg_tblspc/16400/": "old", "pg_tblspc/16500/": "gone"}))
	cst := hostile.Put(t, a, chainBackup(t, child, parent, f.child, f.child,
		map[string]string{"pg_tblspc/16400/": "new"}))
	return f, a, pst, cst
}
