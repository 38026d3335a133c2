package verify

import (
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
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
	checkChains(backups, reps)
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
