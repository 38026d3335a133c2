package restore

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/testio"
)

// syncRecord is one syncFS call: the directory given and whether
// global/pg_control and recovery.signal existed in the target then.
type syncRecord struct {
	dir              string
	control, signals bool
}

// recordSyncs makes syncFS record its calls for a restore into target
// (and still sync), until the test ends.
func recordSyncs(t *testing.T, target string) *[]syncRecord {
	t.Helper()
	var got []syncRecord
	orig := syncFS
	t.Cleanup(func() { syncFS = orig })
	syncFS = func(d *os.File) error {
		_, cerr := os.Stat(filepath.Join(target, "global", "pg_control"))
		_, serr := os.Stat(filepath.Join(target, "recovery.signal"))
		got = append(got, syncRecord{dir: d.Name(), control: cerr == nil, signals: serr == nil})
		return orig(d)
	}
	return &got
}

// TestRun_SyncsBeforePGControl: every file system a restore writes to
// (the target's and each tablespace directory's) is synced before
// global/pg_control exists, and again after the recovery configuration
// is written. A SIGKILL leaves the page cache to the kernel, but after a
// power loss or an OS crash only what was synced is known to be on disk:
// pg_control durable before a relation file is would leave a directory
// PostgreSQL starts on from its backup_label with that file missing or
// short, and PostgreSQL checks no file against the backup. Chunked
// backups with tablespaces, a single tar and a delta backup each write
// pg_control in their own place.
func TestRun_SyncsBeforePGControl(t *testing.T) {
	t.Run("Chunks", func(t *testing.T) {
		f := newFixture(t, "basebackup_with_ts", map[string]archive.ManifestTablespace{
			"nstest1": {Path: "/var/lib/pgsql/nstest1", OID: 16395},
			"nstest2": {Path: "/var/lib/pgsql/nstest2", OID: 16396},
		})
		root := t.TempDir()
		o := f.options(filepath.Join(root, "data"))
		o.TablespaceDirs = map[string]string{"nstest1": filepath.Join(root, "ts1"), "nstest2": filepath.Join(root, "ts2")}
		checkSyncOrder(t, o, o.TargetDir, o.TablespaceDirs["nstest1"], o.TablespaceDirs["nstest2"])
	})
	for _, mode := range []string{"basic", "delta"} {
		t.Run(mode, func(t *testing.T) {
			a, _ := realPGHoard(t, mode)
			o := Options{Archive: a, TargetDir: filepath.Join(t.TempDir(), "data"), RestoreCommand: "false", Logger: zerolog.Nop()}
			checkSyncOrder(t, o, o.TargetDir)
		})
	}
}

// checkSyncOrder runs a restore with o and checks that each of dirs was
// synced before global/pg_control existed and after recovery.signal did.
func checkSyncOrder(t *testing.T, o Options, dirs ...string) {
	t.Helper()
	got := recordSyncs(t, o.TargetDir)
	if _, err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		var before, after bool
		for _, r := range *got {
			if r.dir == d {
				before = before || !r.control
				after = after || r.signals
			}
		}
		if !before {
			t.Errorf("%s was not synced before global/pg_control was written (syncs: %+v)", d, *got)
		}
		if !after {
			t.Errorf("%s was not synced after the recovery configuration was written (syncs: %+v)", d, *got)
		}
	}
}

// TestRun_OverwriteFailsMidWipe: Overwrite empties the target before it
// restores, file by file; a removal that fails halfway (here a file made
// immutable in base/, which sorts before global/) or a kill must not leave
// the old global/pg_control beside part of the old files, a directory
// PostgreSQL would start on were it not for PG_VERSION, removed first
// only because it sorts first.
func TestRun_OverwriteFailsMidWipe(t *testing.T) {
	f := newFixture(t, "basebackup", nil)
	dir := filepath.Join(t.TempDir(), "data")
	o := f.options(dir)
	if _, err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	stuck := filepath.Join(dir, "base", "1", "zz-immutable")
	if err := os.WriteFile(stuck, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chattr", "+i", stuck).CombinedOutput(); err != nil {
		testio.Unavailable(t, "chattr +i (root on a file system with immutable files): %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("chattr", "-i", stuck).Run() })
	o.Overwrite = true
	if _, err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), stuck) {
		t.Fatalf("Run over a directory whose file cannot be removed = %v, want an error naming %s", err, stuck)
	}
	if _, err := os.Stat(filepath.Join(dir, "global", "pg_control")); err == nil {
		t.Error("the failed overwrite left global/pg_control beside a half-emptied directory")
	}
}
