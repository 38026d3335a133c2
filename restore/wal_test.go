package restore

import (
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/wal"
)

func walIdx(names ...string) walIndex {
	w := walIndex{}
	a := &archive.Archive{Site: "site"}
	for _, n := range names {
		w[n] = a
	}
	return w
}

func TestTargetTimeline(t *testing.T) {
	a := &archive.Archive{Site: "site"}
	h := historyIndex{2: a, 3: a, 5: a}
	for _, tt := range []struct {
		spec  string
		start uint32
		want  uint32
	}{{"latest", 1, 3}, {"", 2, 3}, {"current", 1, 1}, {"5", 1, 5}, {"latest", 4, 5}, {"latest", 5, 5}} {
		if got := targetTimeline(tt.spec, tt.start, h); got != tt.want {
			t.Errorf("targetTimeline(%q, %d) = %d, want %d", tt.spec, tt.start, got, tt.want)
		}
	}
}

func TestCheckWAL(t *testing.T) {
	b := hoardBackup("b", 1, 0x4000100, 0)
	b.StartLSN, b.StartWALSegment = 0x2000028, "000000010000000000000002"
	one := wal.History{{Timeline: 1}}
	// Timeline 2 began at 0/5800000: segment 5 onwards is read from it.
	two := wal.History{{Timeline: 1}, {Timeline: 2, Begin: 0x5800000}}
	tests := []struct {
		name    string
		wal     walIndex
		path    wal.History
		upTo    pglogrepl.LSN
		last    string
		missing string
	}{
		{"OK", walIdx("000000010000000000000002", "000000010000000000000003", "000000010000000000000004"), one, 0,
			"000000010000000000000004", ""},
		{"RunsOn", walIdx("000000010000000000000002", "000000010000000000000003", "000000010000000000000004",
			"000000010000000000000005", "000000010000000000000007"), one, 0, "000000010000000000000005", ""},
		{"ErrStart", walIdx("000000010000000000000003", "000000010000000000000004"), one, 0, "", "000000010000000000000002"},
		{"ErrMiddle", walIdx("000000010000000000000002", "000000010000000000000004"), one, 0, "", "000000010000000000000003"},
		{"ErrEnd", walIdx("000000010000000000000002", "000000010000000000000003"), one, 0, "", "000000010000000000000004"},
		{"ErrToLSN", walIdx("000000010000000000000002", "000000010000000000000003", "000000010000000000000004"), one, 0x6000000,
			"", "000000010000000000000005"},
		{"TimelineSwitch", walIdx("000000010000000000000002", "000000010000000000000003", "000000010000000000000004",
			"000000010000000000000005", "000000020000000000000005", "000000020000000000000006"), two, 0x6000010,
			"000000020000000000000006", ""},
		// The switch segment exists only on the old timeline (PostgreSQL
		// would fall back to it); segment 6 is missing on timeline 2.
		{"ErrAfterSwitch", walIdx("000000010000000000000002", "000000010000000000000003", "000000010000000000000004",
			"000000010000000000000005", "000000010000000000000006"), two, 0x6000010, "", "000000020000000000000006"},
		// A segment of an unrelated timeline does not fill the gap.
		{"ErrOtherTimeline", walIdx("000000010000000000000002", "000000030000000000000003", "000000010000000000000004"), one, 0,
			"", "000000010000000000000003"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			last, err := checkWAL(tt.wal, b, tt.path, tt.upTo)
			if tt.missing != "" {
				if !errors.Is(err, ErrMissingWAL) || !strings.Contains(err.Error(), tt.missing) {
					t.Fatalf("checkWAL = %v, want ErrMissingWAL naming %s", err, tt.missing)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if last != tt.last {
				t.Errorf("last = %s, want %s", last, tt.last)
			}
		})
	}
}

func TestCheckWAL_PGHoard(t *testing.T) {
	// PGHoard records no end LSN: its end segment is needed. No end
	// segment (a backup of a standby): the start segment only.
	b := pghoardBackup(t, "p", 1, "000000010000000000000002", "000000010000000000000003")
	_, err := checkWAL(walIdx("000000010000000000000002"), b, wal.History{{Timeline: 1}}, 0)
	if !errors.Is(err, ErrMissingWAL) || !strings.Contains(err.Error(), "000000010000000000000003") {
		t.Fatalf("checkWAL = %v", err)
	}
	b.EndWALSegment = ""
	if _, err := checkWAL(walIdx("000000010000000000000002"), b, wal.History{{Timeline: 1}}, 0); err != nil {
		t.Fatal(err)
	}
}

// TestCheckWALGap: after the backup's end, a missing segment with stored
// WAL beyond it is a gap, named with the furthest point recovery reaches;
// the end of the stored WAL is not; WAL of a timeline recovery leaves
// behind does not count as beyond.
func TestCheckWALGap(t *testing.T) {
	b := pghoardBackup(t, "p", 1, "000000010000000000000002", "000000010000000000000003")
	one := wal.History{{Timeline: 1}}
	for _, tt := range []struct {
		name string
		wal  walIndex
		path wal.History
		want string // the gap's String, "" for none
	}{
		{"OK", walIdx("000000010000000000000002", "000000010000000000000003", "000000010000000000000004"), one, ""},
		{"ErrGap", walIdx("000000010000000000000002", "000000010000000000000003", "000000010000000000000004",
			"000000010000000000000007", "000000010000000000000008"), one,
			"000000010000000000000005 through 000000010000000000000006 missing, 000000010000000000000007 and later stored; recovery stops at LSN 0/5000000 (end of 000000010000000000000004)"},
		{"ErrGapOneSegment", walIdx("000000010000000000000002", "000000010000000000000003", "000000010000000000000005"), one,
			"000000010000000000000004 missing, 000000010000000000000005 and later stored; recovery stops at LSN 0/4000000 (end of 000000010000000000000003)"},
		// Timeline 2 forks at 0/5000000: timeline 1's later segments are
		// not on recovery's path.
		{"OtherTimeline", walIdx("000000010000000000000002", "000000010000000000000003", "000000010000000000000004",
			"000000020000000000000005", "000000010000000000000007"),
			wal.History{{Timeline: 1}, {Timeline: 2, Begin: 0x5000000}}, ""},
		{"ErrGapNewTimeline", walIdx("000000010000000000000002", "000000010000000000000003", "000000010000000000000004",
			"000000020000000000000007"),
			wal.History{{Timeline: 1}, {Timeline: 2, Begin: 0x5000000}},
			"000000020000000000000005 through 000000020000000000000006 missing, 000000020000000000000007 and later stored; recovery stops at LSN 0/5000000 (end of 000000010000000000000004)"},
		// Timeline 2 forks from 1 at 0/5000000, 3 from 2 at 0/8000000.
		{"TwoForks", movedHistoryWAL, wal.History{{Timeline: 1}, {Timeline: 2, Begin: 0x5000000}, {Timeline: 3, Begin: 0x8000000}}, ""},
		// 00000002.history copied over 00000003.history by someone who
		// can write the bucket: timeline 3 would fork from 1 at
		// 0/5000000, where none of its WAL is; recovery along that path
		// would end there, silently, without timeline 2's WAL. The gap
		// refuses the restore (ErrWALGap) instead.
		{"ErrMovedHistory", movedHistoryWAL, wal.History{{Timeline: 1}, {Timeline: 3, Begin: 0x5000000}},
			"000000030000000000000005 through 000000030000000000000007 missing, 000000030000000000000008 and later stored; recovery stops at LSN 0/5000000 (end of 000000010000000000000004)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, gap, err := checkWALGap(tt.wal, nil, b, tt.path, 0)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if gap != nil {
				got = gap.String()
			}
			if got != tt.want {
				t.Errorf("gap %q, want %q", got, tt.want)
			}
		})
	}
}

// movedHistoryWAL is the WAL of timelines 1 (to 0/5000000), 2 (to
// 0/8000000) and 3.
var movedHistoryWAL = walIdx("000000010000000000000002", "000000010000000000000003", "000000010000000000000004",
	"000000020000000000000005", "000000020000000000000006", "000000020000000000000007",
	"000000030000000000000008", "000000030000000000000009")

// TestCheckWALGap_PartialTail: the .partial that ends the archive continues
// the run and ends it; a target past its data, or a backup ending past
// it, is missing WAL; a .partial beyond a missing segment is a gap.
func TestCheckWALGap_PartialTail(t *testing.T) {
	b := hoardBackup("b", 1, 0x4000100, 0)
	b.StartLSN, b.StartWALSegment = 0x2000028, "000000010000000000000002"
	one := wal.History{{Timeline: 1}}
	run := walIdx("000000010000000000000002", "000000010000000000000003", "000000010000000000000004")
	tail := &PartialTail{Segment: "000000010000000000000005", Key: "site/xlog/000000010000000000000005.partial", End: 0x50c9a00}
	for _, tt := range []struct {
		name    string
		wal     walIndex
		tail    *PartialTail
		upTo    pglogrepl.LSN
		last    string
		missing bool
		gap     bool
	}{
		{name: "OK", wal: run, tail: tail, last: "000000010000000000000005.partial"},
		{name: "OKTargetInside", wal: run, tail: tail, upTo: 0x50c9000, last: "000000010000000000000005.partial"},
		{name: "ErrTargetPast", wal: run, tail: tail, upTo: 0x50c9a01, missing: true},
		{name: "ErrBackupEndPast", wal: walIdx("000000010000000000000002", "000000010000000000000003"),
			tail: &PartialTail{Segment: "000000010000000000000004", End: 0x4000080}, missing: true},
		{name: "OKBackupEndInside", wal: walIdx("000000010000000000000002", "000000010000000000000003"),
			tail: &PartialTail{Segment: "000000010000000000000004", End: 0x4000100}, last: "000000010000000000000004.partial"},
		{name: "ErrGapBefore", wal: run, tail: &PartialTail{Segment: "000000010000000000000007", End: 0x7000100},
			last: "000000010000000000000004", gap: true},
		{name: "NotOnPath", wal: run, tail: &PartialTail{Segment: "000000020000000000000005", End: 0x5000100},
			last: "000000010000000000000004"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			last, gap, err := checkWALGap(tt.wal, tt.tail, b, one, tt.upTo)
			if tt.missing {
				if !errors.Is(err, ErrMissingWAL) {
					t.Fatalf("checkWALGap = %v, want ErrMissingWAL", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if last != tt.last || (gap != nil) != tt.gap {
				t.Fatalf("checkWALGap = %s, gap %v; want %s, gap %v", last, gap, tt.last, tt.gap)
			}
		})
	}
}

// TestCheckWAL_ErrTargetBeyondSaysWhatToDo: an LSN or restore-point target
// past the archived WAL is refused, and the error says what to do: past a
// gap (stored WAL beyond it), where recovery would stop and how to fill
// the gap; past the end of the archive, that the WAL is not archived yet.
// It named only the first missing segment ("WAL up to the recovery target
// 0/C001C02: 000000010000000000000008 is not archived"). Past an archive
// that ends in a .partial (the daemon's copy of the segment in progress),
// it said only where the archive ends ("WAL up to the recovery target
// 9/0: the archive ends at 0/13000060, in 000000010000000000000013.partial").
func TestCheckWAL_ErrTargetBeyondSaysWhatToDo(t *testing.T) {
	b := pghoardBackup(t, "p", 1, "000000010000000000000002", "000000010000000000000003")
	one := wal.History{{Timeline: 1}}
	for _, tt := range []struct {
		name string
		wal  walIndex
		tail *PartialTail
		upTo pglogrepl.LSN
		want []string
	}{
		{name: "ErrEndPartial", wal: walIdx("000000010000000000000002", "000000010000000000000003", "000000010000000000000004"),
			tail: &PartialTail{Segment: "000000010000000000000005", Key: "p/xlog/000000010000000000000005.partial", End: 0x5000060},
			upTo: 0x6000000,
			want: []string{"the archive ends at 0/5000060, in 000000010000000000000005.partial", "pg_switch_wal()", "hoard list",
				"a target at or before LSN 0/5000060"}},
		{name: "ErrGap", wal: walIdx("000000010000000000000002", "000000010000000000000003", "000000010000000000000004",
			"000000010000000000000007", "000000010000000000000008"), upTo: 0x8000010,
			want: []string{"000000010000000000000005 through 000000010000000000000006 missing", "000000010000000000000007 and later stored",
				"0/5000000", "hoard archive-sync", "a target before LSN 0/5000000"}},
		{name: "ErrEnd", wal: walIdx("000000010000000000000002", "000000010000000000000003", "000000010000000000000004"), upTo: 0x6000000,
			want: []string{"000000010000000000000005 is not archived", "pg_switch_wal()", "hoard list"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := checkWALGap(tt.wal, tt.tail, b, one, tt.upTo)
			if !errors.Is(err, ErrMissingWAL) {
				t.Fatalf("checkWALGap = %v, want ErrMissingWAL", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestCheckWAL_ErrBackupWALSaysWhatToDo: a backup whose own WAL (start to
// end) is not archived yet (a backup of a site streamed by a daemon that
// is not running, or taken just now) is refused, and the error says what
// makes it restorable and the other way out. It said only "the backup's
// WAL: 000000010000000000000021 is not archived: WAL segment missing from
// archive".
func TestCheckWAL_ErrBackupWALSaysWhatToDo(t *testing.T) {
	b := pghoardBackup(t, "p", 1, "000000010000000000000002", "000000010000000000000003")
	_, _, err := checkWALGap(walIdx("000000010000000000000002"), nil, b, wal.History{{Timeline: 1}}, 0)
	if !errors.Is(err, ErrMissingWAL) {
		t.Fatalf("checkWALGap = %v, want ErrMissingWAL", err)
	}
	for _, w := range []string{"the backup's WAL: 000000010000000000000003 is not archived", "hoard daemon", "archive_command",
		"hoard archive-sync", "--basebackup", "hoard list"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
}
