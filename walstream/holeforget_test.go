package walstream

import (
	"slices"
	"testing"

	"github.com/hoardbackup/hoard/wal"
)

// TestReceiver_ForgetHolesBefore: the daemon tells the receiver after
// each basebackup where it starts, and the receiver forgets the holes
// that end before it, and does not record them again when a later check
// finds them: Status.Holes holds the holes since the last backup, not
// one for each data-loss incident for the process's life. A hole at or
// after the backup's start stays, and so does its alert in the daemon.
func TestReceiver_ForgetHolesBefore(t *testing.T) {
	const segSize = 16 << 20
	r, err := New(Options{Slot: "s", SpoolDir: t.TempDir(), Uploader: newSink(t)})
	if err != nil {
		t.Fatal(err)
	}
	name := func(tli uint32, no uint64) string { return wal.Segment{Timeline: tli, No: no}.Name(segSize) }
	hole := func(tli uint32, first, last uint64) Hole {
		return Hole{First: name(tli, first), Last: name(tli, last), Count: last - first + 1}
	}
	report := func(h Hole) {
		r.reportHole(holeCheck{start: wal.Segment{Timeline: 1, No: 100}, segSize: segSize}, h)
	}
	old, later := hole(1, 3, 5), hole(2, 20, 21)
	report(old)
	report(later)
	r.ForgetHolesBefore(name(2, 10)) // a backup on timeline 2 after the first hole
	if got, want := r.Status().Holes, []Hole{later}; !slices.Equal(got, want) {
		t.Errorf("holes after a backup at %s: %+v, want %+v", name(2, 10), got, want)
	}
	report(old) // found again by the next resume's check
	if got, want := r.Status().Holes, []Hole{later}; !slices.Equal(got, want) {
		t.Errorf("holes after the forgotten one was found again: %+v, want %+v", got, want)
	}
	r.ForgetHolesBefore(name(1, 8)) // an older start changes nothing
	report(hole(1, 6, 7))
	if got, want := r.Status().Holes, []Hole{later}; !slices.Equal(got, want) {
		t.Errorf("holes after a hole before the newest backup's start: %+v, want %+v", got, want)
	}
	r.ForgetHolesBefore(name(2, 22))
	if got := r.Status().Holes; len(got) != 0 {
		t.Errorf("holes after a backup past every hole: %+v, want none", got)
	}
}
