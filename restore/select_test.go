package restore

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

var t0 = time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)

// hoardBackup is a backup as hoard's basebackup records it: LSNs, end time
// and end snapshot, ending at hour h after t0 and at LSN end.
func hoardBackup(name string, h int, end pglogrepl.LSN, xmax uint64) *archive.BackupInfo {
	return &archive.BackupInfo{
		Name: name, Format: archive.FormatBBv2,
		StartTime: t0.Add(time.Duration(h)*time.Hour - time.Minute), EndTime: t0.Add(time.Duration(h) * time.Hour),
		StartLSN: end - 0x100, EndLSN: end, StartTimeline: 1, EndTimeline: 1,
		StartWALSegment: wal.SegmentOf(1, end-0x100, 16<<20).Name(16 << 20),
		EndWALSegment:   wal.SegmentOf(1, end, 16<<20).Name(16 << 20),
		EndXmax:         xmax,
	}
}

// pghoardBackup is a backup as PGHoard records it: segment names, times,
// no LSNs (ParseBackupInfo derives the start LSN) and no snapshot.
func pghoardBackup(t *testing.T, name string, h int, startSeg, endSeg string) *archive.BackupInfo {
	t.Helper()
	md := storage.Metadata{
		"format": "pghoard-bb-v2", "start-wal-segment": startSeg, "end-wal-segment": endSeg,
		"start-time":       t0.Add(time.Duration(h)*time.Hour - time.Minute).Format(time.RFC3339),
		"end-time":         t0.Add(time.Duration(h) * time.Hour).Format("2006-01-02 15:04:05.000000-07:00"),
		"total-size-plain": "1", "total-size-enc": "1",
	}
	b, err := archive.ParseBackupInfo("site/basebackup/"+name+archive.ControlSuffix, 10, md)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSelectBackup(t *testing.T) {
	hoard := []*archive.BackupInfo{
		hoardBackup("b1", 1, 0x1000100, 1000),
		hoardBackup("b2", 2, 0x2000100, 2000),
		hoardBackup("b3", 3, 0x3000100, 3000),
	}
	pgh := []*archive.BackupInfo{
		pghoardBackup(t, "p1", 1, "000000010000000000000001", "000000010000000000000001"),
		pghoardBackup(t, "p2", 2, "000000010000000000000002", "000000010000000000000003"),
	}
	noXmax := []*archive.BackupInfo{hoardBackup("n1", 1, 0x1000100, 0), hoardBackup("n2", 2, 0x2000100, 0)}
	tli2 := hoardBackup("t2", 4, 0x4000100, 4000)
	tli2.StartTimeline, tli2.EndTimeline = 2, 2
	withTLI := append(append([]*archive.BackupInfo{}, hoard...), tli2)
	tests := []struct {
		name    string
		backups []*archive.BackupInfo
		backup  string
		target  Target
		want    string // "" = ErrNoBackup
	}{
		{"NoTarget", hoard, "", Target{}, "b3"},
		{"Latest", hoard, "latest", Target{}, "b3"},
		{"Immediate", hoard, "", Target{Immediate: true}, "b3"},
		{"ByName", hoard, "b1", Target{}, "b1"},
		{"ByKey", hoard, "site/basebackup/b2" + archive.ControlSuffix, Target{}, "b2"},
		{"ErrUnknownName", hoard, "b9", Target{}, ""},
		{"TimeBetween", hoard, "", Target{Time: t0.Add(150 * time.Minute)}, "b2"},
		{"TimeAtEndQualifies", hoard, "", Target{Time: t0.Add(2 * time.Hour)}, "b2"},
		{"TimeJustBeforeEnd", hoard, "", Target{Time: t0.Add(2*time.Hour - time.Nanosecond)}, "b1"},
		{"ErrTimeBeforeAll", hoard, "", Target{Time: t0}, ""},
		{"ErrNamedEndsAfterTime", hoard, "b3", Target{Time: t0.Add(150 * time.Minute)}, ""},
		{"NamedEndsBeforeTime", hoard, "b1", Target{Time: t0.Add(150 * time.Minute)}, "b1"},
		{"LSNBetween", hoard, "", Target{LSN: 0x2800000}, "b2"},
		{"LSNAtEndQualifies", hoard, "", Target{LSN: 0x2000100}, "b2"},
		{"LSNJustBeforeEnd", hoard, "", Target{LSN: 0x20000FF}, "b1"},
		{"ErrLSNBeforeAll", hoard, "", Target{LSN: 0x100}, ""},
		{"LSNTimelineLimit", withTLI, "", Target{LSN: 0x5000000, Timeline: "1"}, "b3"},
		{"LSNLatestTimeline", withTLI, "", Target{LSN: 0x5000000}, "t2"},
		{"XIDAfterXmax", hoard, "", Target{XID: 2500}, "b2"},
		{"XIDAtXmaxQualifies", hoard, "", Target{XID: 2000}, "b2"},
		{"XIDBelowXmax", hoard, "", Target{XID: 1999}, "b1"},
		{"XID64Bit", hoard, "", Target{XID: 1<<32 + 5}, "b3"},
		{"ErrXIDBeforeAll", hoard, "", Target{XID: 10}, ""},
		{"XIDNoSnapshotOldest", noXmax, "", Target{XID: 10}, "n1"},
		{"NameFound", hoard, "", Target{Name: "rp", nameLSN: 0x3000200}, "b3"},
		{"NameFoundBetween", hoard, "", Target{Name: "rp", nameLSN: 0x2000200}, "b2"},
		{"ErrNameNotFound", hoard, "", Target{Name: "rp"}, ""},
		{"NameWithBackup", hoard, "b1", Target{Name: "rp"}, "b1"},
		// PGHoard records the end segment only: its end is taken as the
		// end of that segment, never earlier.
		{"PGHoardTime", pgh, "", Target{Time: t0.Add(90 * time.Minute)}, "p1"},
		{"PGHoardTimeAtEnd", pgh, "", Target{Time: t0.Add(2 * time.Hour)}, "p2"},
		{"PGHoardLSNInEndSegment", pgh, "", Target{LSN: 0x3800000}, "p1"},
		{"PGHoardLSNAfterEndSegment", pgh, "", Target{LSN: 0x4000000}, "p2"},
		{"PGHoardXIDOldest", pgh, "", Target{XID: 5}, "p1"},
		{"ErrEmpty", nil, "", Target{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := SelectBackup(tt.backups, tt.backup, tt.target)
			if tt.want == "" {
				if !errors.Is(err, archive.ErrNoBackup) {
					t.Fatalf("SelectBackup = %v, %v; want ErrNoBackup", b, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.Name != tt.want {
				t.Errorf("SelectBackup = %s, want %s", b.Name, tt.want)
			}
		})
	}
}

func TestSelectBackup_ErrBadTarget(t *testing.T) {
	_, err := SelectBackup([]*archive.BackupInfo{hoardBackup("b1", 1, 0x1000100, 0)}, "", Target{XID: 5, LSN: 6})
	if !errors.Is(err, ErrBadTarget) {
		t.Fatalf("err = %v, want ErrBadTarget", err)
	}
}

func TestXIDAtOrAfter(t *testing.T) {
	tests := []struct {
		xid, xmax uint64
		want      bool
	}{
		{100, 100, true}, {99, 100, false}, {101, 100, true},
		{5, 1<<32 + 3, true},          // low 32 bits compared: 5 follows 3
		{2, 1<<32 + 3, false},         // 2 precedes 3
		{1<<32 + 2, 1<<32 + 3, false}, // full xids compare in full
		{1<<33 + 2, 1<<32 + 3, true},  // a later epoch
		{3, 0xFFFFFFF0, true},         // wrapped around past xmax
	}
	for _, tt := range tests {
		if got := xidAtOrAfter(tt.xid, tt.xmax); got != tt.want {
			t.Errorf("xidAtOrAfter(%d, %d) = %v, want %v", tt.xid, tt.xmax, got, tt.want)
		}
	}
}

// TestSelectBackup_TargetTimeline: with a numeric target timeline, every
// target kind chooses among the backups that timeline descends from.
// Timeline 2 forks from 1 at 0/2800000; b3 is on timeline 2, b2 ended on
// timeline 1 before the fork, b2x ended on timeline 1 after it.
func TestSelectBackup_TargetTimeline(t *testing.T) {
	b1 := hoardBackup("b1", 1, 0x1000100, 1000)
	b2 := hoardBackup("b2", 2, 0x2000100, 2000)
	b2x := hoardBackup("b2x", 3, 0x3000100, 3000)
	b3 := hoardBackup("b3", 4, 0x3800100, 4000)
	b3.StartTimeline, b3.EndTimeline = 2, 2
	backups := []*archive.BackupInfo{b1, b2, b2x, b3}
	two := wal.History{{Timeline: 1}, {Timeline: 2, Begin: 0x2800000}}
	one := wal.History{{Timeline: 1}}
	late := t0.Add(10 * time.Hour)
	for _, tt := range []struct {
		name string
		t    Target
		want string
	}{
		{"TimeOnTimeline1", Target{Time: late, Timeline: "1", path: one}, "b2x"},
		{"XIDOnTimeline1", Target{XID: 5000, Timeline: "1", path: one}, "b2x"},
		{"NoneOnTimeline1", Target{Timeline: "1", path: one}, "b2x"},
		{"ImmediateOnTimeline1", Target{Immediate: true, Timeline: "1", path: one}, "b2x"},
		{"TimeOnTimeline2", Target{Time: late, Timeline: "2", path: two}, "b3"},
		{"XIDOnTimeline2BeforeFork", Target{XID: 3500, Timeline: "2", path: two}, "b2"},
		{"TimeOnTimeline2BeforeB3", Target{Time: t0.Add(3 * time.Hour), Timeline: "2", path: two}, "b2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, err := SelectBackup(backups, "", tt.t)
			if err != nil {
				t.Fatal(err)
			}
			if b.Name != tt.want {
				t.Errorf("chose %s, want %s", b.Name, tt.want)
			}
		})
	}
	if _, err := SelectBackup(backups, "b3", Target{Time: late, Timeline: "1", path: one}); !errors.Is(err, archive.ErrNoBackup) {
		t.Errorf("explicit backup on timeline 2 for target timeline 1: %v, want ErrNoBackup", err)
	}
}

// TestSelectBackup_ExplicitXID: a named backup whose end snapshot cannot
// rule the xid out (xid below its xmax: the transaction may have been
// running at the end) is taken; the automatic choice passes it over.
func TestSelectBackup_ExplicitXID(t *testing.T) {
	b1 := hoardBackup("b1", 1, 0x1000100, 1000)
	b2 := hoardBackup("b2", 2, 0x2000100, 2000)
	backups := []*archive.BackupInfo{b1, b2}
	tgt := Target{XID: 1500}
	if b, err := SelectBackup(backups, "", tgt); err != nil || b.Name != "b1" {
		t.Fatalf("automatic choice for xid 1500: %v %v, want b1", b, err)
	}
	b, err := SelectBackup(backups, "b2", tgt)
	if err != nil || b.Name != "b2" {
		t.Fatalf("explicit b2 for xid 1500: %v %v, want b2", b, err)
	}
}

// TestSelectBackup_LatestTimeline: after a point-in-time restore from b1
// forked timeline 2 from timeline 1 at 0/2800000, b2 (timeline 1, ended
// after the fork) lies on the abandoned timeline: with the default target
// timeline, latest, the automatic choice passes it over for b1, unless a
// backup on timeline 2 is newer.
func TestSelectBackup_LatestTimeline(t *testing.T) {
	b1 := hoardBackup("b1", 1, 0x1000100, 1000)
	b2 := hoardBackup("b2", 2, 0x3000100, 2000)
	b3 := hoardBackup("b3", 3, 0x3800100, 3000)
	b3.StartTimeline, b3.EndTimeline = 2, 2
	two := wal.History{{Timeline: 1}, {Timeline: 2, Begin: 0x2800000}}
	latest := map[uint32]wal.History{1: two, 2: two}
	late := t0.Add(10 * time.Hour)
	for _, tt := range []struct {
		name    string
		backups []*archive.BackupInfo
		t       Target
		want    string
	}{
		{"None", []*archive.BackupInfo{b1, b2}, Target{latest: latest}, "b1"},
		{"Immediate", []*archive.BackupInfo{b1, b2}, Target{Immediate: true, latest: latest}, "b1"},
		{"Time", []*archive.BackupInfo{b1, b2}, Target{Time: late, latest: latest}, "b1"},
		{"XID", []*archive.BackupInfo{b1, b2}, Target{XID: 2500, latest: latest}, "b1"},
		{"NewerOnTimeline2", []*archive.BackupInfo{b1, b2, b3}, Target{latest: latest}, "b3"},
		{"NoFork", []*archive.BackupInfo{b1, b2}, Target{latest: map[uint32]wal.History{1: {{Timeline: 1}}}}, "b2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, err := SelectBackup(tt.backups, "", tt.t)
			if err != nil {
				t.Fatal(err)
			}
			if b.Name != tt.want {
				t.Errorf("chose %s, want %s", b.Name, tt.want)
			}
		})
	}
	_, err := SelectBackup([]*archive.BackupInfo{b2}, "", Target{latest: latest})
	if !errors.Is(err, archive.ErrNoBackup) {
		t.Errorf("only a backup on the abandoned timeline: %v, want ErrNoBackup", err)
	}
}

// TestCandidates: the automatic choice goes by the authenticated backups
// and, where the system identifier is known, by that system's only; a
// backup named explicitly is looked for among all.
func TestCandidates(t *testing.T) {
	own := &archive.BackupInfo{Name: "own", Auth: archive.AuthOK, SystemID: "A"}
	other := &archive.BackupInfo{Name: "other", Auth: archive.AuthOK, SystemID: "B"}
	planted := &archive.BackupInfo{Name: "planted", Auth: archive.AuthNone, SystemID: "A"}
	bs := []*archive.BackupInfo{own, other, planted}
	for _, tc := range []struct {
		name, backup, systemID string
		want                   []*archive.BackupInfo
	}{
		{"OK", "", "A", []*archive.BackupInfo{own}},
		{"Latest", "latest", "A", []*archive.BackupInfo{own}},
		{"SystemUnknown", "", "", []*archive.BackupInfo{own, other}},
		{"Named", "other", "A", bs},
		// Another system's authenticate and none of this one's: a
		// planted unsigned backup is not chosen instead.
		{"NoneOfSystem", "", "C", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Candidates(bs, tc.backup, tc.systemID)
			var names, want []string
			for _, b := range got {
				names = append(names, b.Name)
			}
			for _, b := range tc.want {
				want = append(want, b.Name)
			}
			if !slices.Equal(names, want) {
				t.Errorf("Candidates(%q, %q) = %v, want %v", tc.backup, tc.systemID, names, want)
			}
		})
	}
}

// TestSelectBackup_ErrNameNotFound: a restore point that is not in the
// archived WAL is most often one made since the last segment was stored.
// The error says so and what to do next, and still offers --basebackup.
func TestSelectBackup_ErrNameNotFound(t *testing.T) {
	_, err := SelectBackup([]*archive.BackupInfo{hoardBackup("b1", 1, 0x1000100, 0)}, "", Target{Name: "rp"})
	if !errors.Is(err, archive.ErrNoBackup) {
		t.Fatalf("err = %v, want ErrNoBackup", err)
	}
	for _, want := range []string{`restore point "rp"`, "not archived yet", "pg_switch_wal()", "hoard list", "--basebackup"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// basicBackup is a backup as PGHoard's basic and pipe modes record it:
// its start (segment and time) only, no end, starting at hour h after t0.
func basicBackup(t *testing.T, name string, h int, startSeg string) *archive.BackupInfo {
	t.Helper()
	md := storage.Metadata{
		"basebackup-mode": "basic", "start-wal-segment": startSeg,
		"start-time":         t0.Add(time.Duration(h) * time.Hour).Format("2006-01-02T15:04:05-07:00"),
		"original-file-size": "1",
	}
	b, err := archive.ParseBackupInfo("site/basebackup/"+name, 10, md)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSelectBackup_NamedEndUnrecorded: a backup that records no end
// (PGHoard's basic and pipe modes) named with
// --basebackup is taken for a time or LSN target after its start, as for
// an xid or a restore point: PostgreSQL itself stops ("requested recovery
// stop point is before consistent recovery point") if the target comes
// before the backup's end, and Run logs a warning. The automatic choice
// still passes it over, naming the way out; a target before the named
// backup's start is still refused.
func TestSelectBackup_NamedEndUnrecorded(t *testing.T) {
	backups := []*archive.BackupInfo{basicBackup(t, "p1", 1, "000000010000000000000002")}
	for _, tc := range []struct {
		name   string
		backup string
		target Target
		ok     bool
	}{
		{"TimeNamed", "p1", Target{Time: t0.Add(90 * time.Minute)}, true},
		{"LSNNamed", "p1", Target{LSN: 0x3000000}, true},
		{"ErrTimeBeforeStart", "p1", Target{Time: t0.Add(30 * time.Minute)}, false},
		{"ErrLSNBeforeStart", "p1", Target{LSN: 0x1000000}, false},
		{"ErrTimeAutomatic", "", Target{Time: t0.Add(90 * time.Minute)}, false},
		{"ErrLSNAutomatic", "", Target{LSN: 0x3000000}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := SelectBackup(backups, tc.backup, tc.target)
			if tc.ok {
				if err != nil || b.Name != "p1" {
					t.Fatalf("SelectBackup = %v, %v; want p1", b, err)
				}
				return
			}
			if !errors.Is(err, archive.ErrNoBackup) {
				t.Fatalf("SelectBackup = %v, %v; want ErrNoBackup", b, err)
			}
			if tc.backup == "" && !strings.Contains(err.Error(), "--basebackup NAME") {
				t.Errorf("error %q does not say how to restore such a backup", err)
			}
		})
	}
}
