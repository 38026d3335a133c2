package archive

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestPlanRetention_Authenticated: backups whose metadata does not
// authenticate (planted "newer" ones, one with a copied HMAC) are not
// counted: with basebackup_count 2, the two authenticated backups and
// the WAL from the older's start stay, and a PGHoard backup older than
// both is deleted on their strength. Where no backup authenticates,
// everything is planned on its metadata, as before.
func TestPlanRetention_Authenticated(t *testing.T) {
	backup := func(name, seg string, auth BackupAuth) *BackupInfo {
		b := pghoardBackup(t, name, seg)
		b.Auth = auth
		return b
	}
	old := backup("2024-03-01_10-00_0", "000000010000000000000001", AuthNone)
	r1 := backup("2024-03-07_10-00_0", "000000010000000000000003", AuthOK)
	r2 := backup("2024-03-08_10-00_0", "000000010000000000000005", AuthOK)
	planted := backup("2099-01-01_00-00_0", "000000010000001000000000", AuthNone)
	altered := backup("2098-01-01_00-00_0", "000000010000001000000000", AuthInvalid)
	wals := segs(1, 1, 6)
	p := RetentionPolicy{MaxCount: 2}
	names := func(ds []BackupDecision) []string {
		var out []string
		for _, d := range ds {
			out = append(out, d.Backup.Name)
		}
		return out
	}
	walNames := func(ds []WALDeletion) []string {
		var out []string
		for _, d := range ds {
			out = append(out, d.Name)
		}
		return out
	}
	tests := []struct {
		name              string
		backups           []*BackupInfo
		delete, deleteWAL []string
	}{
		{name: "Planted", backups: []*BackupInfo{old, r1, r2, planted},
			delete: []string{old.Name}, deleteWAL: segs(1, 1, 2)},
		{name: "AlteredKeepsAllWAL", backups: []*BackupInfo{old, r1, r2, planted, altered},
			delete: []string{old.Name}},
		{name: "NoneAuthenticated", backups: []*BackupInfo{
			backup(old.Name, old.StartWALSegment, AuthNone), backup(r1.Name, r1.StartWALSegment, AuthNone),
			backup(r2.Name, r2.StartWALSegment, AuthNone), planted},
			delete: []string{old.Name, r1.Name}, deleteWAL: segs(1, 1, 4)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan := PlanRetention(tc.backups, wals, p, retentionNow)
			if diff := cmp.Diff(tc.delete, names(plan.Delete)); diff != "" {
				t.Errorf("deleted backups (-want +got):\n%s\nnotes: %q", diff, plan.Notes)
			}
			if diff := cmp.Diff(tc.deleteWAL, walNames(plan.WAL)); diff != "" {
				t.Errorf("deleted WAL (-want +got):\n%s\nnotes: %q", diff, plan.Notes)
			}
			if len(plan.Keep)+len(plan.Delete) != len(tc.backups) {
				t.Errorf("plan keeps %v and deletes %v of %d backups", names(plan.Keep), names(plan.Delete), len(tc.backups))
			}
			if tc.name != "NoneAuthenticated" && !slices.ContainsFunc(plan.Notes, func(n string) bool {
				return strings.Contains(n, planted.Name)
			}) {
				t.Errorf("no note names %s: %q", planted.Name, plan.Notes)
			}
		})
	}
}
