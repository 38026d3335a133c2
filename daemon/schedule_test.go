package daemon

import (
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
)

func at(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04", s)
	if err != nil {
		panic(err)
	}
	return t
}

// bb is a backup started at start; normalized may be "".
func bb(start, normalized, reason string) *archive.BackupInfo {
	b := &archive.BackupInfo{Name: start, StartTime: at(start), BackupReason: reason}
	if normalized != "" {
		b.NormalizedTime = at(normalized)
	}
	return b
}

func TestSchedule_Decide(t *testing.T) {
	daily := Schedule{Interval: 24 * time.Hour}
	anchored6 := Schedule{Interval: 6 * time.Hour, Anchored: true, Hour: 1, Minute: 0}
	anchoredDaily := Schedule{Interval: 24 * time.Hour, Anchored: true, Hour: 3, Minute: 30}
	sched, req := basebackup.ReasonScheduled, basebackup.ReasonRequested
	// Full backups keep their schedule whatever incremental ones are taken
	// between them; an incremental one is due an IncrementalInterval after
	// the newest backup of either kind.
	incr := Schedule{Interval: 24 * time.Hour, IncrementalInterval: 6 * time.Hour}
	inc := func(start, parent string) *archive.BackupInfo {
		b := bb(start, "", sched)
		b.Parent = parent
		return b
	}
	full := bb("2024-05-01 00:00", "", sched)
	tests := []struct {
		name       string
		s          Schedule
		now        string
		backups    []*archive.BackupInfo
		due        bool
		inc        bool   // the backup due is incremental
		next       string // "" = zero
		normalized string // "" = zero
	}{
		{name: "NoInterval", s: Schedule{}, now: "2024-05-01 12:00"},
		{name: "NoIntervalNoBackups", s: Schedule{}, now: "2024-05-01 12:00", backups: nil},
		{name: "NoBackups", s: daily, now: "2024-05-01 12:00", due: true},
		{name: "NoBackupsAnchored", s: anchored6, now: "2024-05-01 12:00", due: true, normalized: "2024-05-01 07:00"},
		{
			name: "IntervalNotYet", s: daily, now: "2024-05-01 12:00",
			backups: []*archive.BackupInfo{bb("2024-05-01 00:30", "", sched)},
			next:    "2024-05-02 00:30",
		},
		{
			name: "IntervalPassed", s: daily, now: "2024-05-02 00:30",
			backups: []*archive.BackupInfo{bb("2024-05-01 00:30", "", sched)},
			due:     true,
		},
		{
			name: "IntervalCountsRequested", s: daily, now: "2024-05-02 01:00",
			backups: []*archive.BackupInfo{bb("2024-05-01 00:30", "", sched), bb("2024-05-01 20:00", "", req)},
			next:    "2024-05-02 20:00",
		},
		{
			name: "AnchoredSameSlot", s: anchored6, now: "2024-05-01 12:59",
			backups:    []*archive.BackupInfo{bb("2024-05-01 07:02", "2024-05-01 07:00", sched)},
			normalized: "2024-05-01 07:00", next: "2024-05-01 13:00",
		},
		{
			name: "AnchoredNewSlot", s: anchored6, now: "2024-05-01 13:00",
			backups:    []*archive.BackupInfo{bb("2024-05-01 07:02", "2024-05-01 07:00", sched)},
			due:        true,
			normalized: "2024-05-01 13:00",
		},
		{
			name: "AnchoredMissedSlots", s: anchored6, now: "2024-05-03 02:00",
			backups:    []*archive.BackupInfo{bb("2024-05-01 07:02", "2024-05-01 07:00", sched)},
			due:        true,
			normalized: "2024-05-03 01:00",
		},
		{
			// The anchor moved from 01:00 to 03:30: the last backup (slot
			// 01:00) is less than half a day before the 03:30 slot, so
			// the next one waits for the following day's 03:30 instead
			// of running twice in three hours.
			name: "AnchorMovedLessThanHalf", s: anchoredDaily, now: "2024-05-01 04:00",
			backups:    []*archive.BackupInfo{bb("2024-05-01 01:05", "2024-05-01 01:00", sched)},
			normalized: "2024-05-01 03:30", next: "2024-05-02 03:30",
		},
		{
			name: "AnchorMovedMoreThanHalf", s: anchoredDaily, now: "2024-05-01 04:00",
			backups:    []*archive.BackupInfo{bb("2024-04-30 13:05", "2024-04-30 13:00", sched)},
			due:        true,
			normalized: "2024-05-01 03:30",
		},
		{
			// Today's 03:30 has not come yet: the slot is yesterday's.
			name: "AnchoredBeforeTodaysSlot", s: anchoredDaily, now: "2024-05-01 02:00",
			backups:    []*archive.BackupInfo{bb("2024-04-30 03:31", "2024-04-30 03:30", sched)},
			normalized: "2024-04-30 03:30", next: "2024-05-01 03:30",
		},
		{
			// Requested backups do not move an anchored schedule: the
			// slot counts from the last scheduled one.
			name: "AnchoredIgnoresRequested", s: anchored6, now: "2024-05-01 13:10",
			backups: []*archive.BackupInfo{
				bb("2024-05-01 07:02", "2024-05-01 07:00", sched),
				bb("2024-05-01 13:05", "2024-05-01 13:00", req),
			},
			due:        true,
			normalized: "2024-05-01 13:00",
		},
		{
			// A backup without normalized-backup-time (PGHoard before it
			// recorded one, or hoard basebackup) counts by its start.
			name: "AnchoredFallsBackToStart", s: anchored6, now: "2024-05-01 08:00",
			backups:    []*archive.BackupInfo{bb("2024-05-01 03:00", "", "")},
			due:        true,
			normalized: "2024-05-01 07:00",
		},
		{
			name: "AnchoredOnlyRequested", s: anchored6, now: "2024-05-01 08:00",
			backups:    []*archive.BackupInfo{bb("2024-05-01 07:30", "2024-05-01 07:00", req)},
			normalized: "2024-05-01 07:00", next: "2024-05-01 13:00",
		},
		{
			// Longer than a day: slots count from the epoch, so they do
			// not move from one day to the next.
			name: "AnchoredTwoDays", s: Schedule{Interval: 48 * time.Hour, Anchored: true, Hour: 0, Minute: 0}, now: "2024-05-02 10:00",
			backups:    []*archive.BackupInfo{bb("2024-05-01 00:01", "2024-05-01 00:00", sched)},
			normalized: "2024-05-01 00:00", next: "2024-05-03 00:00",
		},
		{name: "IncrementalNoBackups", s: incr, now: "2024-05-01 00:00", due: true},
		{name: "IncrementalNotYet", s: incr, now: "2024-05-01 05:00", backups: []*archive.BackupInfo{full}, next: "2024-05-01 06:00"},
		{name: "IncrementalDue", s: incr, now: "2024-05-01 06:00", backups: []*archive.BackupInfo{full}, due: true, inc: true},
		{
			name: "IncrementalFromNewestIncremental", s: incr, now: "2024-05-01 11:00",
			backups: []*archive.BackupInfo{full, inc("2024-05-01 06:00", full.Name)}, next: "2024-05-01 12:00",
		},
		{
			// Incremental backups do not push the full one back.
			name: "IncrementalFullDue", s: incr, now: "2024-05-02 00:00",
			backups: []*archive.BackupInfo{full, inc("2024-05-01 06:00", full.Name), inc("2024-05-01 18:00", "x"), inc("2024-05-01 23:00", "y")},
			due:     true,
		},
		{
			name: "IncrementalFullNextBeforeIncremental", s: incr, now: "2024-05-01 23:30",
			backups: []*archive.BackupInfo{full, inc("2024-05-01 20:00", full.Name)}, next: "2024-05-02 00:00",
		},
		{
			name: "IncrementalNoFullSchedule", s: Schedule{IncrementalInterval: time.Hour}, now: "2024-05-02 00:00",
			backups: []*archive.BackupInfo{full},
		},
		{
			name: "IncrementalOnlyIncrementalsListed", s: incr, now: "2024-05-01 07:00",
			backups: []*archive.BackupInfo{inc("2024-05-01 06:00", "gone")}, due: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.s.Decide(at(tt.now), tt.backups)
			if d.Due != tt.due || d.Incremental != tt.inc {
				t.Errorf("due = %v, incremental = %v (%s), want %v, %v", d.Due, d.Incremental, d.Why, tt.due, tt.inc)
			}
			if want := timeOrZero(tt.next); !d.Next.Equal(want) {
				t.Errorf("next = %v, want %v", d.Next, want)
			}
			if want := timeOrZero(tt.normalized); !d.Normalized.Equal(want) {
				t.Errorf("normalized = %v, want %v", d.Normalized, want)
			}
			if d.Why == "" {
				t.Error("no reason given")
			}
		})
	}
}

func timeOrZero(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	return at(s)
}

func TestSchedule_Slot(t *testing.T) {
	s := Schedule{Interval: 6 * time.Hour, Anchored: true, Hour: 1, Minute: 0}
	for now, want := range map[string]string{
		"2024-05-01 00:59": "2024-04-30 19:00",
		"2024-05-01 01:00": "2024-05-01 01:00",
		"2024-05-01 06:59": "2024-05-01 01:00",
		"2024-05-01 07:00": "2024-05-01 07:00",
		"2024-05-01 23:00": "2024-05-01 19:00",
	} {
		if got := s.Slot(at(now)); !got.Equal(at(want)) {
			t.Errorf("Slot(%s) = %s, want %s", now, got.Format("2006-01-02 15:04"), want)
		}
	}
	if got := (Schedule{Anchored: true}).Slot(at("2024-05-01 12:00")); !got.IsZero() {
		t.Errorf("Slot without an interval = %v, want zero", got)
	}
}

// TestSchedule_DecidePlanted: a planted backup that claims to have
// started after the site's real, authenticated one holds back no
// scheduled backup.
func TestSchedule_DecidePlanted(t *testing.T) {
	real := bb("2024-05-01 00:00", "", basebackup.ReasonScheduled)
	real.Auth = archive.AuthOK
	planted := bb("2099-01-01 00:00", "", basebackup.ReasonScheduled)
	for _, auth := range []archive.BackupAuth{archive.AuthNone, archive.AuthInvalid} {
		planted.Auth = auth
		d := Schedule{Interval: 24 * time.Hour}.Decide(at("2024-05-02 12:00"), []*archive.BackupInfo{real, planted})
		if !d.Due {
			t.Errorf("planted backup with metadata %q: not due (%s)", auth, d.Why)
		}
	}
}

// TestSchedule_DecideOtherSystem: the backup loop decides on the backups
// of its node's system (archive.OfSystem). After a pg_upgrade, which
// gives the cluster a new system identifier, the old cluster's backups,
// however fresh, leave the site with no backup of this system: one is due
// at once. Backups of the same system keep the schedule as before.
func TestSchedule_DecideOtherSystem(t *testing.T) {
	old := bb("2024-05-02 11:00", "", basebackup.ReasonScheduled)
	old.Auth, old.SystemID = archive.AuthOK, "7000000000000000001"
	bs := []*archive.BackupInfo{old}
	now := at("2024-05-02 12:00")
	daily := Schedule{Interval: 24 * time.Hour}
	if d := daily.Decide(now, archive.OfSystem(bs, "7000000000000000002")); !d.Due {
		t.Errorf("after a pg_upgrade: not due (%s)", d.Why)
	}
	if d := daily.Decide(now, archive.OfSystem(bs, old.SystemID)); d.Due {
		t.Errorf("same system, backup an hour old: due (%s)", d.Why)
	}
}
