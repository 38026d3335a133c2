package verify

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/hostile"
)

// TestRun_ChecksumFailures: a backup whose control object records data
// page checksum failures (taken from a cluster with damaged pages) is
// restorable but not ok: limited, naming the files and blocks (the first
// ones) and what to do, with and without --full. Before, verify passed
// it as ok.
func TestRun_ChecksumFailures(t *testing.T) {
	a := testArchive(t)
	putBackup(t, a, "b1", 1, 2, 3, t0)
	putBackupWith(t, a, "b2", 1, 3, 4, t0.Add(time.Hour), "", func(m *archive.Manifest) {
		f := &archive.ChecksumFailures{Blocks: 12}
		for i := range 7 {
			f.Files = append(f.Files, archive.ChecksumFailure{File: fmt.Sprintf("pgdata/base/5/%d", 16384+i), Count: 1, Blocks: []uint32{uint32(i)}})
		}
		f.Files[0].Count, f.Files[0].Blocks = 6, []uint32{3, 4, 5, 6, 7, 9}
		m.Hoard = &archive.HoardManifest{ChecksumFailures: f}
	})
	putSegments(t, a, 1, 2, 4)
	for _, full := range []bool{false, true} {
		rep := run(t, a, full)
		if rep.OK() || rep.Backups[0].Status != StatusOK || rep.Backups[1].Status != StatusLimited || !rep.Backups[1].Restorable {
			t.Fatalf("full=%v: OK=%v statuses %s, %s (restorable %v), problems:\n%s", full, rep.OK(),
				rep.Backups[0].Status, rep.Backups[1].Status, rep.Backups[1].Restorable, problems(rep))
		}
		got := strings.Join(rep.Backups[1].Problems, "\n")
		for _, want := range []string{"12 data pages", "7 files", "pgdata/base/5/16384 (6 blocks: 3, 4, 5, 6, 7, ...)",
			"pgdata/base/5/16385 (block 1)", "and 2 more files", "pg_amcheck", "pg_checksums", "Damaged data pages"} {
			if !strings.Contains(got, want) {
				t.Errorf("full=%v: problem does not say %q:\n%s", full, want, got)
			}
		}
		if strings.Contains(got, "pgdata/base/5/16389") {
			t.Errorf("full=%v: more files named than the cap:\n%s", full, got)
		}
	}
}

// TestRun_ChecksumFailuresFilesUnknown: a BASE_BACKUP backup whose
// server named the damaged files in another language than English
// records the count and no file: limited, and the problem says where the
// files are named.
func TestRun_ChecksumFailuresFilesUnknown(t *testing.T) {
	a := testArchive(t)
	putBackupWith(t, a, "b1", 1, 2, 3, t0, "", func(m *archive.Manifest) {
		m.Hoard = &archive.HoardManifest{ChecksumFailures: &archive.ChecksumFailures{Blocks: 2, FilesUnknown: true}}
	})
	putSegments(t, a, 1, 2, 3)
	rep := run(t, a, false)
	if rep.OK() || rep.Backups[0].Status != StatusLimited {
		t.Fatalf("OK=%v status %s, problems:\n%s", rep.OK(), rep.Backups[0].Status, problems(rep))
	}
	got := strings.Join(rep.Backups[0].Problems, "\n")
	for _, want := range []string{"2 data pages", "another language than English", "the server's log"} {
		if !strings.Contains(got, want) {
			t.Errorf("problem does not say %q:\n%s", want, got)
		}
	}
}

// TestRun_ChecksumFailuresNone: a control object recording a check that
// found nothing (local-tar records 0) is ok.
func TestRun_ChecksumFailuresNone(t *testing.T) {
	a := testArchive(t)
	putBackupWith(t, a, "b1", 1, 2, 3, t0, "", func(m *archive.Manifest) {
		m.Hoard = &archive.HoardManifest{ChecksumFailures: &archive.ChecksumFailures{Files: []archive.ChecksumFailure{}}}
	})
	putSegments(t, a, 1, 2, 3)
	if rep := run(t, a, false); !rep.OK() {
		t.Fatalf("problems:\n%s", problems(rep))
	}
}

// TestRestoreTest_CheckChecksumsRecorded: a test restore of a backup that
// recorded checksum failures when it was taken fails pg_checksums (the
// pages are restored as they were read), and the check says that the
// backup recorded them, so the operator looks at the source cluster, not
// at the archive; without a record the detail is pg_checksums' alone.
func TestRestoreTest_CheckChecksumsRecorded(t *testing.T) {
	bin := t.TempDir()
	script := "#!/bin/sh\necho 'pg_checksums: error: checksum verification failed in file \"x/base/5/16384\", block 3'\nexit 1\n"
	if err := os.WriteFile(filepath.Join(bin, "pg_checksums"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	rec := &archive.ChecksumFailures{Blocks: 1, Files: []archive.ChecksumFailure{{File: "pgdata/base/5/16384", Count: 1, Blocks: []uint32{3}}}}
	for _, c := range []struct {
		name     string
		recorded *archive.ChecksumFailures
		want     bool
	}{{"Recorded", rec, true}, {"NotRecorded", nil, false}} {
		t.Run(c.name, func(t *testing.T) {
			rt := &restoreTest{res: &RestoreTestResult{}, binDir: bin, data: t.TempDir(), scratch: t.TempDir(), log: zerolog.Nop(),
				backupKey: "site/basebackup/b1", recorded: c.recorded}
			rt.checkChecksums(context.Background())
			if len(rt.res.Checks) != 1 || rt.res.Checks[0].Status != CheckFailed {
				t.Fatalf("checks %+v, want one failed checksums check", rt.res.Checks)
			}
			got := rt.res.Checks[0].Detail
			if !strings.Contains(got, "block 3") {
				t.Errorf("detail %q lacks pg_checksums' output", got)
			}
			for _, want := range []string{"the backup recorded them when it was taken", "pgdata/base/5/16384 (block 3)", "pg_amcheck"} {
				if strings.Contains(got, want) != c.want {
					t.Errorf("detail says %q: %v, want %v:\n%s", want, !c.want, c.want, got)
				}
			}
		})
	}
}

// TestRun_ChecksumFailuresDelta: a delta backup whose control object
// records checksum failures (hoard's delta mode reads the files as
// local-tar does and records them the same way) is limited, as a
// pghoard-bb-v2 backup is, for the quick check and the full one.
func TestRun_ChecksumFailuresDelta(t *testing.T) {
	for _, recorded := range []bool{false, true} {
		a := testArchive(t)
		hostile.Put(t, a, hostile.Backup{Name: "2026-01-02_03-00_0", DeltaDirs: []string{}, Manifest: func(m *archive.Manifest) {
			if recorded {
				m.Hoard = &archive.HoardManifest{ChecksumFailures: &archive.ChecksumFailures{Blocks: 1,
					Files: []archive.ChecksumFailure{{File: "pgdata/base/5/16384", Count: 1, Blocks: []uint32{3}}}}}
			}
		}})
		for _, full := range []bool{false, true} {
			rep := run(t, a, full)
			if len(rep.Backups) != 1 {
				t.Fatalf("recorded=%v full=%v: %d backups, want 1", recorded, full, len(rep.Backups))
			}
			got := rep.Backups[0]
			switch {
			case !recorded && got.Status != StatusOK:
				t.Errorf("full=%v: delta backup without a record: status %s, want ok:\n%s", full, got.Status, problems(rep))
			case recorded && (got.Status != StatusLimited || !got.Restorable || rep.OK()):
				t.Errorf("full=%v: delta backup recording a damaged page: status %s (restorable %v, OK %v), want limited:\n%s",
					full, got.Status, got.Restorable, rep.OK(), problems(rep))
			case recorded && !strings.Contains(problems(rep), "pgdata/base/5/16384 (block 3)"):
				t.Errorf("full=%v: problems do not name the page:\n%s", full, problems(rep))
			}
		}
	}
}
