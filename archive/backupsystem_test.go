package archive

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestPlanRetention_ForeignSystem: another cluster's backups (system B),
// signed with the same key pair and copied into this site (system A), are
// newer than A's. With A's system identifier known they count for
// nothing: A's backups and the WAL from the oldest one's start stay.
// Unknown, they count (today's behaviour, the Unknown case). Backups
// from before a pg_upgrade age out among the new system's, as PGHoard's
// do; with no backup of this system at all, no WAL is deleted.
func TestPlanRetention_ForeignSystem(t *testing.T) {
	backup := func(name, seg string, auth BackupAuth, system string) *BackupInfo {
		b := pghoardBackup(t, name, seg)
		b.Auth, b.SystemID = auth, system
		return b
	}
	a1 := backup("2024-03-05_10-00_0", "000000010000000000000003", AuthOK, "A")
	a2 := backup("2024-03-06_10-00_0", "000000010000000000000005", AuthOK, "A")
	b1 := backup("2024-03-08_10-00_0", "000000010000000000000007", AuthOK, "B")
	b2 := backup("2024-03-09_10-00_0", "000000010000000000000009", AuthOK, "B")
	pghoard := backup("2024-03-01_10-00_0", "000000010000000000000002", AuthNone, "")
	wals := segs(1, 1, 10)
	tests := []struct {
		name              string
		backups           []*BackupInfo
		p                 RetentionPolicy
		delete, deleteWAL []string
		note              string
	}{
		{name: "Copied", backups: []*BackupInfo{a1, a2, b1, b2}, p: RetentionPolicy{MaxCount: 2, SystemID: "A"},
			deleteWAL: segs(1, 1, 2), note: b1.Name + " (system B)"},
		{name: "CopiedCountOne", backups: []*BackupInfo{a1, a2, b1, b2}, p: RetentionPolicy{MaxCount: 1, SystemID: "A"},
			delete: []string{a1.Name}, deleteWAL: segs(1, 1, 4), note: b2.Name + " (system B)"},
		{name: "Unknown", backups: []*BackupInfo{a1, a2, b1, b2}, p: RetentionPolicy{MaxCount: 2},
			delete: []string{a1.Name, a2.Name}, deleteWAL: segs(1, 1, 6)},
		{name: "OnlyForeign", backups: []*BackupInfo{b1, b2}, p: RetentionPolicy{MaxCount: 1, SystemID: "A"},
			note: "no basebackup of database system A"},
		{name: "PGHoardBefore", backups: []*BackupInfo{pghoard, b1, b2}, p: RetentionPolicy{MaxCount: 1, SystemID: "A"},
			deleteWAL: segs(1, 1, 1), note: b1.Name + " (system B)"},
		// After a pg_upgrade from B to A: B's backups are older and
		// leave as A's alone make them surplus.
		{name: "PgUpgrade", backups: []*BackupInfo{b1, b2,
			backup("2024-03-09_11-00_0", "00000001000000000000000A", AuthOK, "A"),
			backup("2024-03-10_10-00_0", "00000001000000000000000B", AuthOK, "A")},
			p: RetentionPolicy{MaxCount: 2, SystemID: "A"}, delete: []string{b1.Name, b2.Name}, deleteWAL: segs(1, 1, 9)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan := PlanRetention(tc.backups, wals, tc.p, retentionNow)
			var deleted, deletedWAL []string
			for _, d := range plan.Delete {
				deleted = append(deleted, d.Backup.Name)
			}
			for _, d := range plan.WAL {
				deletedWAL = append(deletedWAL, d.Name)
			}
			if diff := cmp.Diff(tc.delete, deleted); diff != "" {
				t.Errorf("deleted backups (-want +got):\n%s\nnotes: %q", diff, plan.Notes)
			}
			if diff := cmp.Diff(tc.deleteWAL, deletedWAL); diff != "" {
				t.Errorf("deleted WAL (-want +got):\n%s\nnotes: %q", diff, plan.Notes)
			}
			if len(plan.Keep)+len(plan.Delete) != len(tc.backups) {
				t.Errorf("plan keeps %d and deletes %d of %d backups", len(plan.Keep), len(plan.Delete), len(tc.backups))
			}
			if tc.note != "" && !slices.ContainsFunc(plan.Notes, func(n string) bool { return strings.Contains(n, tc.note) }) {
				t.Errorf("no note says %q: %q", tc.note, plan.Notes)
			}
		})
	}
}

// TestOfSystem: only backups whose authenticated metadata names another
// system are left out; unauthenticated ones and those that record no
// system stay, and with the system unknown every backup does.
func TestOfSystem(t *testing.T) {
	own := &BackupInfo{Name: "own", Auth: AuthOK, SystemID: "A"}
	other := &BackupInfo{Name: "other", Auth: AuthOK, SystemID: "B"}
	claims := &BackupInfo{Name: "claims", Auth: AuthNone, SystemID: "B"}
	altered := &BackupInfo{Name: "altered", Auth: AuthInvalid, SystemID: "B"}
	unrecorded := &BackupInfo{Name: "unrecorded", Auth: AuthOK}
	bs := []*BackupInfo{own, other, claims, altered, unrecorded}
	if diff := cmp.Diff([]*BackupInfo{own, claims, altered, unrecorded}, OfSystem(bs, "A")); diff != "" {
		t.Errorf("OfSystem(A) (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]*BackupInfo{other}, Foreign(bs, "A")); diff != "" {
		t.Errorf("Foreign(A) (-want +got):\n%s", diff)
	}
	if got := OfSystem(bs, ""); len(got) != len(bs) || len(Foreign(bs, "")) != 0 {
		t.Errorf("with the system unknown: OfSystem kept %d of %d, Foreign %d", len(got), len(bs), len(Foreign(bs, "")))
	}
	// Trusted after OfSystem: the own authenticated ones only; with none
	// of this system authenticated, the others but never a foreign one.
	if got := Trusted(OfSystem(bs, "A")); len(got) != 2 || got[0] != own || got[1] != unrecorded {
		t.Errorf("Trusted(OfSystem(A)) = %v", backupNames(got))
	}
	if got := Trusted(OfSystem([]*BackupInfo{other, claims}, "A")); len(got) != 1 || got[0] != claims {
		t.Errorf("Trusted(OfSystem(A)) of a foreign and an unauthenticated backup = %v", backupNames(got))
	}
}

// TestTrustedOfSystem: a choice of one backup goes by this system's
// authenticated backups; where another system's authenticate and none of
// this one's do, by none, never by an unauthenticated one (a planted
// backup); where none authenticates, by all.
func TestTrustedOfSystem(t *testing.T) {
	own := &BackupInfo{Name: "own", Auth: AuthOK, SystemID: "A"}
	other := &BackupInfo{Name: "other", Auth: AuthOK, SystemID: "B"}
	claims := &BackupInfo{Name: "claims", Auth: AuthNone, SystemID: "B"}
	planted := &BackupInfo{Name: "planted", Auth: AuthNone}
	for _, tc := range []struct {
		name     string
		bs       []*BackupInfo
		systemID string
		want     string
	}{
		{"OK", []*BackupInfo{own, other, planted}, "A", "own"},
		{"OnlyForeign", []*BackupInfo{other, claims, planted}, "A", ""},
		{"NoneAuthenticates", []*BackupInfo{claims, planted}, "A", "claims, planted"},
		{"Unknown", []*BackupInfo{own, other, planted}, "", "own, other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := backupNames(TrustedOfSystem(tc.bs, tc.systemID)); got != tc.want {
				t.Errorf("TrustedOfSystem(%q) = %v, want %v", tc.systemID, got, tc.want)
			}
		})
	}
}
