package restore

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/wal"
)

// ofSystem is b with its metadata's system identifier set to sys.
func ofSystem(b *archive.BackupInfo, sys string) *archive.BackupInfo {
	b.SystemID = sys
	return b
}

// TestSystemSwitch: after a pg_upgrade into the same site, old (system A)
// reached timeline 2, forked at 0/2800000, and the upgraded cluster
// (system B, timeline 1, its WAL after the old one's) has backup b2. The
// automatic choice to the latest timeline passes b2 over for a1, which
// systemSwitch refuses; a target before the upgrade, which only A's
// backups reach, chooses A's legitimately; several other systems
// reaching it is ambiguous.
func TestSystemSwitch(t *testing.T) {
	a1 := ofSystem(hoardBackup("a1", 1, 0x1000100, 0), "A")
	b2 := ofSystem(hoardBackup("b2", 5, 0x9000100, 0), "B")
	c0 := ofSystem(hoardBackup("c0", 0, 0x800100, 0), "C")
	pg := hoardBackup("pg", 0, 0x800100, 0) // records no system (PGHoard's)
	latest := map[uint32]wal.History{1: {{Timeline: 1}, {Timeline: 2, Begin: 0x2800000}}}
	before := t0.Add(2 * time.Hour) // after a1's end, before b2's
	for _, tc := range []struct {
		name       string
		candidates []*archive.BackupInfo
		chosen     *archive.BackupInfo
		t          Target
		wantOK     bool
		wantErr    string // "" for nil
	}{
		{"SameSystem", []*archive.BackupInfo{a1, b2}, b2, Target{}, false, ""},
		{"ChosenRecordsNone", []*archive.BackupInfo{pg, b2}, pg, Target{latest: latest}, false, ""},
		{"ErrLatestTimeline", []*archive.BackupInfo{a1, b2}, a1, Target{latest: latest},
			false, "its backup b2 was passed over: the latest timeline, 2, does not descend from it"},
		{"ErrImmediate", []*archive.BackupInfo{a1, b2}, a1, Target{Immediate: true, latest: latest},
			false, "--target-timeline 1 (with --basebackup b2"},
		{"TimeBeforeUpgrade", []*archive.BackupInfo{a1, b2}, a1, Target{Time: before, latest: latest}, true, ""},
		{"ErrTimeTwoOtherSystems", []*archive.BackupInfo{c0, a1, b2}, a1, Target{Time: before, latest: latest},
			false, "are of several other database systems (C, A)"},
		{"TimeOtherWithoutSystem", []*archive.BackupInfo{pg, a1, b2}, a1, Target{Time: before, latest: latest}, true, ""},
		{"ErrNoneLeftOfSystem", []*archive.BackupInfo{a1}, a1, Target{latest: latest}, false, "incremental chains are broken"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, err := systemSwitch(tc.candidates, b2, tc.chosen, tc.t)
			if ok != tc.wantOK {
				t.Errorf("ok = %v, want %v", ok, tc.wantOK)
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("not refused, want %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrSystemSwitch) {
				t.Errorf("refusal %q does not say %q or wrap ErrSystemSwitch", err, tc.wantErr)
			}
		})
	}
}

// TestSystemSwitchError_Others: where history files above the newest
// system's backup are bound to another system, the refusal says that
// backup cannot be recovered here instead of suggesting its timeline.
func TestSystemSwitchError_Others(t *testing.T) {
	e := &SystemSwitchError{
		Chosen: ofSystem(hoardBackup("a1", 1, 0x1000100, 0), "A"),
		Newest: ofSystem(hoardBackup("b2", 5, 0x9000100, 0), "B"),
		Why:    "the latest timeline, 2, does not descend from it",
		Others: []*archive.OtherSystemHistoryError{{Key: "s/timeline/00000002.history", Timeline: 2, System: "A", Want: 7}},
	}
	e.Own = e.Newest
	msg := e.Error()
	for _, w := range []string{"would restore backup a1, of database system A", "the newest backup, b2, is of database system B",
		"pg_upgrade", "--basebackup a1", "recovery asks for s/timeline/00000002.history, bound to database system A",
		"backup_sites.<site>.prefix"} {
		if !strings.Contains(msg, w) {
			t.Errorf("refusal does not say %q:\n%s", w, msg)
		}
	}
	if strings.Contains(msg, "--target-timeline") {
		t.Errorf("refusal suggests --target-timeline, which wal-fetch's refusal defeats:\n%s", msg)
	}
	// In a site without keys, by the files' claim: it says so.
	e.Others[0].Claimed = true
	if w := "recovery asks for s/timeline/00000002.history, by its metadata's claim (not authenticated: this site has no keys) of " +
		"database system A"; !strings.Contains(e.Error(), w) {
		t.Errorf("refusal does not say %q:\n%s", w, e.Error())
	}
}
