package wal

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pglogrepl"
)

func TestParseHistory(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		data := "1\t0/5000000\tno recovery target specified\n\n# comment\n2\t0/7000100\tat restore point \"x\"\n"
		h, err := ParseHistory(3, []byte(data))
		if err != nil {
			t.Fatal(err)
		}
		want := History{{1, 0}, {2, 0x5000000}, {3, 0x7000100}}
		if diff := cmp.Diff(want, h); diff != "" {
			t.Errorf("ParseHistory (-want +got):\n%s", diff)
		}
		if got := h.Timeline(); got != 3 {
			t.Errorf("Timeline() = %d, want 3", got)
		}
	})
	t.Run("OKFirstTimeline", func(t *testing.T) {
		h, err := ParseHistory(1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(History{{1, 0}}, h); diff != "" {
			t.Errorf("ParseHistory (-want +got):\n%s", diff)
		}
	})
	for _, bad := range []string{
		"1",                      // no switch point
		"1\n",                    // likewise
		"x\t0/1\tr",              // bad timeline
		"1\tzz\tr",               // bad switch point
		"2\t0/1\n1\t0/2",         // timelines go back
		"2\t0/5\tr\n1\t0/6\tr\n", // likewise
		"1\t0/6\tr\n2\t0/5\tr\n", // switch points go back
		"1\t0/5\tr\n3\t0/6\tr\n", // an ancestor above the timeline
	} {
		if _, err := ParseHistory(3, []byte(bad)); err == nil {
			t.Errorf("ParseHistory(%q) succeeded", bad)
		}
	}
}

func TestHistory_TimelineAt(t *testing.T) {
	h := History{{1, 0}, {2, 0x3000160}, {3, 0x5000000}}
	for _, tc := range []struct {
		lsn  pglogrepl.LSN
		want uint32
	}{{0, 1}, {0x300015F, 1}, {0x3000160, 2}, {0x4FFFFFF, 2}, {0x5000000, 3}, {0x9000000, 3}} {
		if got := h.TimelineAt(tc.lsn); got != tc.want {
			t.Errorf("TimelineAt(%s) = %d, want %d", tc.lsn, got, tc.want)
		}
	}
}

func TestHistory_Switch(t *testing.T) {
	h := History{{1, 0}, {2, 0x3000160}, {3, 0x5000000}}
	if end, next, ok := h.Switch(1); !ok || end != 0x3000160 || next != 2 {
		t.Errorf("Switch(1) = %s, %d, %v", end, next, ok)
	}
	if end, next, ok := h.Switch(2); !ok || end != 0x5000000 || next != 3 {
		t.Errorf("Switch(2) = %s, %d, %v", end, next, ok)
	}
	if _, _, ok := h.Switch(3); ok {
		t.Error("Switch(current) found an end")
	}
	if _, _, ok := h.Switch(4); ok {
		t.Error("Switch(unknown) found an end")
	}
}

func TestHistory_Contains(t *testing.T) {
	h := History{{1, 0}, {2, 0x5000000}, {3, 0x7000100}}
	for _, tc := range []struct {
		tli  uint32
		lsn  pglogrepl.LSN
		want bool
	}{{1, 0x4000000, true}, {1, 0x5000000, true}, {1, 0x6000000, false}, {2, 0x7000100, true}, {3, 0x9000000, true}, {4, 0, false}} {
		if got := h.Contains(tc.tli, tc.lsn); got != tc.want {
			t.Errorf("Contains(%d, %s) = %v, want %v", tc.tli, tc.lsn, got, tc.want)
		}
	}
}

func TestHistory_Timelines(t *testing.T) {
	const segSize = 16 << 20
	// Timeline 2 began at 0/5800000, in segment 5: segment 5 is on both.
	h := History{{1, 0}, {2, 0x5800000}}
	for _, tc := range []struct {
		no   uint64
		want []uint32
	}{{0, []uint32{1}}, {4, []uint32{1}}, {5, []uint32{2, 1}}, {6, []uint32{2}}} {
		if diff := cmp.Diff(tc.want, h.Timelines(tc.no, segSize)); diff != "" {
			t.Errorf("Timelines(%d) (-want +got):\n%s", tc.no, diff)
		}
	}
}
