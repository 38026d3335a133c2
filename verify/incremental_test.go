package verify

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/restore"
	"github.com/hoardbackup/hoard/storage"
)

func TestCheckChains(t *testing.T) {
	full := &archive.BackupInfo{Name: "2026-01-01_00-00_0"}
	inc1 := &archive.BackupInfo{Name: "2026-01-02_00-00_0", Parent: full.Name}
	inc2 := &archive.BackupInfo{Name: "2026-01-03_00-00_0", Parent: inc1.Name}
	orphan := &archive.BackupInfo{Name: "2026-01-04_00-00_0", Parent: "2025-12-31_00-00_0"}
	full2 := &archive.BackupInfo{Name: "2026-01-05_00-00_0"}
	inc3 := &archive.BackupInfo{Name: "2026-01-06_00-00_0", Parent: full2.Name}
	backups := []*archive.BackupInfo{full, inc1, inc2, orphan, full2, inc3}
	reps := make([]BackupReport, len(backups))
	for i, b := range backups {
		reps[i] = newBackupReport(b)
	}
	// inc1's objects are broken: inc2 cannot restore either. full2's WAL
	// is missing: inc3, which needs only its own WAL, still restores.
	reps[1].Restorable, reps[1].objectsBroken = false, true
	reps[4].Restorable = false
	checkChains(&archive.Archive{}, backups, nil, reps)
	want := []bool{true, false, false, false, false, true}
	for i, r := range reps {
		if r.Restorable != want[i] {
			t.Errorf("%s restorable %v, want %v (problems %q)", r.Name, r.Restorable, want[i], r.Problems)
		}
	}
	if p := strings.Join(reps[2].Problems, "; "); !strings.Contains(p, inc1.Name+", which it needs, is broken") {
		t.Errorf("inc2's problems: %s", p)
	}
	if p := strings.Join(reps[3].Problems, "; "); !strings.Contains(p, "2025-12-31_00-00_0, which is not stored") {
		t.Errorf("orphan's problems: %s", p)
	}
	if reps[5].Parent != full2.Name {
		t.Errorf("report's parent %q", reps[5].Parent)
	}
}

// TestRun_IncrementalChainTampered takes a full backup of a real
// PostgreSQL 17 and 18 and an incremental one on it, with their WAL, and checks
// that verify reports both sound, with --full too (each compared with
// its own backup_manifest); then it changes only what someone who
// can write to the bucket but holds no key can change, and verify must
// report the incremental backup broken, as restore refuses it: its
// metadata naming no parent (its control object records one), and its
// parent's control object recording another system (a backup of another
// cluster with the same start swapped in under the parent's name), with
// the system identifier of the parent's metadata set to match. (The
// child's metadata set to it too is refused before the chain is read, as
// not its control object's: archive.CheckControl.)
func TestRun_IncrementalChainTampered(t *testing.T) {
	if testing.Short() {
		t.Skip("real cluster")
	}
	for _, major := range []int{17, 18} {
		t.Run(fmt.Sprint(major), func(t *testing.T) { testIncrementalChainTampered(t, major) })
	}
}

// takeBackup takes a streamed basebackup of src into a, incremental or
// full, with a fast checkpoint, not waiting for its WAL to be archived,
// in chunks of chunkSize bytes (0: basebackup.DefaultChunkSize).
func takeBackup(ctx context.Context, t testing.TB, src *pgtest.Cluster, a *archive.Archive, chunkSize int64, incremental bool) *archive.BackupInfo {
	t.Helper()
	b, err := basebackup.Run(ctx, basebackup.Options{
		ConnString: src.ConnString("postgres"), Archive: a, Fast: true, NoWait: true, ChunkSize: chunkSize,
		Mode: basebackup.ModeStream, Incremental: incremental, Logger: zerolog.Nop(),
	})
	if err != nil {
		t.Fatalf("basebackup (incremental %v): %v", incremental, err)
	}
	return b
}

func testIncrementalChainTampered(t *testing.T, major int) {
	src, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: major, Conf: map[string]string{"summarize_wal": "on"}})
	pgtest.Pgbench(t, src, "-i", "-s", "1")
	a := testArchive(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	full := takeBackup(ctx, t, src, a, 0, false)
	src.Exec(t, "update pgbench_accounts set abalance = abalance + 1 where aid % 50 = 0")
	inc := takeBackup(ctx, t, src, a, 0, true)
	if inc.Parent != full.Name {
		t.Fatalf("parent of %s: %q, want %s", inc.Name, inc.Parent, full.Name)
	}
	archivetest.StoreArchivedWAL(t, src, walDir, a)

	check := func(what, want string) {
		t.Helper()
		rep := run(t, a, false)
		if len(rep.Backups) != 2 {
			t.Fatalf("%s: %d backups", what, len(rep.Backups))
		}
		r := rep.Backups[1]
		if rep.Backups[0].Status != StatusOK {
			t.Errorf("%s: full backup %s, problems:\n%s", what, rep.Backups[0].Status, problems(rep))
		}
		switch {
		case want == "" && r.Status != StatusOK:
			t.Errorf("%s: incremental backup %s, problems:\n%s", what, r.Status, problems(rep))
		case want != "" && (r.Status != StatusBroken || r.Restorable || !strings.Contains(strings.Join(r.Problems, "\n"), want)):
			t.Errorf("%s: incremental backup %s (restorable %v), problems:\n%s\nwant broken, saying %q", what, r.Status, r.Restorable, problems(rep), want)
		}
		_, err := restore.Run(ctx, restore.Options{Archive: a, TargetDir: filepath.Join(pgtest.TempDir(t), "data"), Backup: inc.Name,
			RestoreCommand: "false", Logger: zerolog.Nop()})
		if want != "" && !errors.Is(err, restore.ErrBrokenChain) {
			t.Errorf("%s: restore of %s: %v, want ErrBrokenChain", what, inc.Name, err)
		}
	}
	check("as taken", "")
	// Each backup's files, the incremental one's INCREMENTAL files too,
	// are those its own backup_manifest lists.
	if rep := run(t, a, true); !rep.OK() {
		t.Errorf("verify --full of the chain as taken: not ok:\n%s", problems(rep))
	}

	setMetadata := func(key, k, v string) {
		t.Helper()
		storetest.Rewrite(t, a.Store, key, func(data []byte, md storage.Metadata) []byte {
			if v == "" {
				delete(md, k)
			} else {
				md[k] = v
			}
			return data
		})
	}
	setMetadata(inc.Key, archive.MetaParent, "")
	check("metadata without the parent", `its metadata names parent "", its control object "`+full.Name+`"`)
	setMetadata(inc.Key, archive.MetaParent, full.Name)

	foreign := full.SystemID[:len(full.SystemID)-1] + "0"
	if foreign == full.SystemID {
		foreign = full.SystemID[:len(full.SystemID)-1] + "1"
	}
	archivetest.ForeignSystem(t, a, full, foreign)
	check("parent of another system", "backup "+full.Name+", its parent, is not the backup it was taken against")
}

// TestCheckChains_ParentFormat: an incremental backup (its control object
// records its parent) whose parent is listed with a format other than
// pghoard-bb-v2, as a bucket writer can set it, is broken, as restore
// refuses it; its parent, checked as a single tar, may look sound.
func TestCheckChains_ParentFormat(t *testing.T) {
	full := &archive.BackupInfo{Name: "2026-01-01_00-00_0", Format: ""}
	inc := &archive.BackupInfo{Name: "2026-01-02_00-00_0", Parent: full.Name, Format: archive.FormatBBv2}
	backups := []*archive.BackupInfo{full, inc}
	reps := []BackupReport{newBackupReport(full), newBackupReport(inc)}
	reps[1].controlRead = true
	reps[1].hoard = &archive.HoardManifest{SystemID: "1", Incremental: &archive.IncrementalParent{Parent: full.Name, StartLSN: "0/2000028", Timeline: 1}}
	checkChains(&archive.Archive{}, backups, nil, reps)
	if reps[1].Restorable || !strings.Contains(strings.Join(reps[1].Problems, "; "), `is of format "", not pghoard-bb-v2`) {
		t.Errorf("restorable %v, problems %q", reps[1].Restorable, reps[1].Problems)
	}
	if !reps[0].Restorable {
		t.Errorf("the parent: problems %q", reps[0].Problems)
	}
}

// TestCheckChains_MovedFromCopied: the site and the site it moved from
// both hold the same chain under the same names (archive-copy, both
// kept). The site's own incremental backup is checked against the site's
// own parent, which restore takes (archive.Archive.FirstCopies): broken
// there, the child is broken, though the old site's copy of the parent
// is sound. The old site's copy of the child is judged on the same
// parent: restore never reads the old site's copy of a backup the site
// holds, so the old child's chain through the old parent is one no
// restore takes (the row names the copy it was judged on).
func TestCheckChains_MovedFromCopied(t *testing.T) {
	old := &archive.Archive{Site: "old"}
	a := &archive.Archive{Site: "new", MovedFrom: []*archive.Archive{old}}
	var backups []*archive.BackupInfo
	for _, s := range []*archive.Archive{a, old} {
		backups = append(backups, &archive.BackupInfo{Name: "2026-01-01_00-00_0", Archive: s})
	}
	for _, s := range []*archive.Archive{a, old} {
		backups = append(backups, &archive.BackupInfo{Name: "2026-01-02_00-00_0", Parent: "2026-01-01_00-00_0", Archive: s})
	}
	reps := make([]BackupReport, len(backups))
	for i, b := range backups {
		reps[i] = newBackupReport(b)
		reps[i].Site = b.Archive.Site // as Run sets it for a site with moved_from
	}
	reps[0].Restorable, reps[0].objectsBroken = false, true // the site's own parent
	checkChains(a, backups, nil, reps)
	if p := strings.Join(reps[2].Problems, "; "); reps[2].Restorable || !strings.HasSuffix(p, "2026-01-01_00-00_0, which it needs, is broken") {
		t.Errorf("the site's own child: restorable %v, problems %q", reps[2].Restorable, reps[2].Problems)
	}
	if reps[3].Restorable || !strings.Contains(strings.Join(reps[3].Problems, "; "), "2026-01-01_00-00_0, which it needs, is broken (its copy in site new, the one restore takes)") {
		t.Errorf("the old site's child: restorable %v, problems %q", reps[3].Restorable, reps[3].Problems)
	}
}
