package walstream

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hoardbackup/hoard/wal"
)

func TestDiskGuard_check(t *testing.T) {
	var free uint64
	var freeErr error
	g := &diskGuard{min: 1000, free: func() (uint64, error) { return free, freeErr }}
	steps := []struct {
		free                   uint64
		err                    error
		wantPaused, wantChange bool
	}{
		{free: 5000},
		{free: 1000},
		{free: 999, wantPaused: true, wantChange: true},
		{free: 10, wantPaused: true},
		{free: 1200, wantPaused: true}, // above min, below min*1.5: still paused
		{free: 0, err: errors.New("statfs"), wantPaused: true},
		{free: 1500, wantChange: true},
		{free: 1499},
		{free: 999, wantPaused: true, wantChange: true},
	}
	for i, s := range steps {
		free, freeErr = s.free, s.err
		paused, changed, err := g.check()
		if (err != nil) != (s.err != nil) || paused != s.wantPaused || changed != s.wantChange {
			t.Errorf("step %d (free %d): paused %v changed %v err %v; want %v %v", i, s.free, paused, changed, err, s.wantPaused, s.wantChange)
		}
	}
	// resume_multiplier 3: paused until 3000 bytes are free.
	g = &diskGuard{min: 1000, resume: 3000, free: func() (uint64, error) { return free, nil }}
	for _, s := range []struct {
		free       uint64
		wantPaused bool
	}{{999, true}, {2999, true}, {3000, false}} {
		free = s.free
		if paused, _, _ := g.check(); paused != s.wantPaused {
			t.Errorf("resume at 3000, free %d: paused %v, want %v", s.free, paused, s.wantPaused)
		}
	}
	off := &diskGuard{free: func() (uint64, error) { return 0, nil }}
	if paused, _, _ := off.check(); paused {
		t.Error("guard without a minimum paused")
	}
}

func TestResumeSegment(t *testing.T) {
	const segSize = 1 << 24
	seg := func(name string) wal.Segment {
		s, err := wal.ParseSegmentName(name, segSize)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, tc := range []struct {
		name string
		c    spoolContents
		want string // "" for nothing found
	}{
		{"Empty", spoolContents{}, ""},
		{"Partial", spoolContents{partials: []string{"000000010000000000000005.partial"}}, "000000010000000000000005"},
		{"CompleteOnly", spoolContents{uploads: []string{"000000010000000000000004", "00000002.history"}}, "000000010000000000000005"},
		{"CompleteAndPartial", spoolContents{
			uploads:  []string{"000000010000000000000003", "000000010000000000000004"},
			partials: []string{"000000010000000000000005.partial"},
		}, "000000010000000000000005"},
		{"NewerTimeline", spoolContents{
			uploads:  []string{"000000010000000000000004"},
			partials: []string{"000000010000000000000005.partial", "000000020000000000000005.partial"},
		}, "000000020000000000000005"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := resumeSegment(tc.c, segSize)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if p.found {
					t.Errorf("found %s", p.seg.Name(segSize))
				}
				return
			}
			if !p.found || p.seg != seg(tc.want) {
				t.Errorf("resume at %v (found %v), want %s", p.seg.Name(segSize), p.found, tc.want)
			}
		})
	}
}

func TestReadSpool(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"000000010000000000000004", "00000002.history", "000000010000000000000005.partial",
		"000000010000000000000003", "x.tmp", "other"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, snapshotDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := cleanSpool(dir); err != nil {
		t.Fatal(err)
	}
	c, err := readSpool(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := spoolContents{
		uploads:  []string{"000000010000000000000003", "000000010000000000000004", "00000002.history"},
		partials: []string{"000000010000000000000005.partial"},
	}
	if diff := cmp.Diff(want, c, cmp.AllowUnexported(spoolContents{})); diff != "" {
		t.Errorf("readSpool (-want +got):\n%s", diff)
	}
	for _, gone := range []string{"x.tmp", snapshotDir} {
		if _, err := os.Stat(filepath.Join(dir, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left in the spool", gone)
		}
	}
}

func TestUploadQueue(t *testing.T) {
	q := newUploadQueue()
	q.push(uploadTask{kind: taskFile, name: "a"})
	if n := q.push(uploadTask{kind: taskFile, name: "a"}); n != 1 {
		t.Errorf("duplicate queued: %d tasks", n)
	}
	q.push(uploadTask{kind: taskSnapshot, name: "b.partial", length: 10})
	if !q.hasSnapshot() {
		t.Error("snapshot not seen")
	}
	if h, _ := q.head(); h.name != "a" {
		t.Errorf("head %q", h.name)
	}
	if n := q.pop(); n != 1 {
		t.Errorf("%d left", n)
	}
}

func TestSegmentFile(t *testing.T) {
	dir := t.TempDir()
	const segSize = 1 << 20
	seg := wal.Segment{Timeline: 1, No: 7}
	s, err := openSegment(dir, seg, segSize)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.writeAt([]byte("wal"), 100); err != nil {
		t.Fatal(err)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.path())
	if err != nil || fi.Size() != segSize {
		t.Fatalf("partial: %v, %v", fi, err)
	}
	empty, err := isEmptyPartial(s.path())
	if err != nil || !empty {
		t.Errorf("isEmptyPartial = %v, %v: the first page header is zeros", empty, err)
	}

	// A truncated partial is made whole again.
	if err := os.Truncate(s.path(), 50); err != nil {
		t.Fatal(err)
	}
	s, err = openSegment(dir, seg, segSize)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.writeAt([]byte("page"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.complete(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, seg.Name(segSize)))
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != segSize || string(data[:4]) != "page" || data[100] != 0 {
		t.Errorf("complete segment: %d bytes, starts %q", len(data), data[:4])
	}
}
