package walstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pglogrepl"
	"golang.org/x/sys/unix"

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
		paused, changed, err := g.check(0)
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
		if paused, _, _ := g.check(0); paused != s.wantPaused {
			t.Errorf("resume at 3000, free %d: paused %v, want %v", s.free, paused, s.wantPaused)
		}
	}
	off := &diskGuard{free: func() (uint64, error) { return 0, nil }}
	if paused, _, _ := off.check(0); paused {
		t.Error("guard without a minimum paused")
	}
}

func TestDiskGuard_loud(t *testing.T) {
	g := &diskGuard{min: 1000}
	t0 := time.Unix(1_000_000, 0)
	steps := []struct {
		at     time.Duration
		paused bool
		want   bool
	}{
		{0, true, true},                // first pause: warn
		{time.Second, false, true},     // and its resume: info
		{2 * time.Second, true, false}, // flapping within the minute: debug
		{3 * time.Second, false, false},
		{50 * time.Second, true, false},
		{61 * time.Second, false, false},
		{62 * time.Second, true, true}, // a minute after the last loud pause
		{63 * time.Second, false, true},
	}
	for i, s := range steps {
		if got := g.loud(s.paused, t0.Add(s.at)); got != s.want {
			t.Errorf("step %d (paused %v at %v): loud %v, want %v", i, s.paused, s.at, got, s.want)
		}
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

// TestUploadQueue_QueuedSince: the queue's QueuedSince is when the
// oldest file task still queued was queued, the one in progress
// included; a snapshot of the segment being received does not count,
// and a duplicate push does not make a file younger.
func TestUploadQueue_QueuedSince(t *testing.T) {
	q := newUploadQueue()
	if s := q.queuedSince(); !s.IsZero() {
		t.Fatalf("empty queue: queuedSince %s", s)
	}
	q.push(uploadTask{kind: taskSnapshot, name: "s.partial", length: 8})
	if s := q.queuedSince(); !s.IsZero() {
		t.Errorf("only a snapshot queued: queuedSince %s, want zero", s)
	}
	before := time.Now()
	q.push(uploadTask{kind: taskFile, name: "a"})
	after := time.Now()
	time.Sleep(20 * time.Millisecond)
	q.push(uploadTask{kind: taskFile, name: "b"})
	q.push(uploadTask{kind: taskFile, name: "a"})
	if s := q.queuedSince(); s.Before(before) || s.After(after) {
		t.Errorf("queuedSince %s, want a's queueing, between %s and %s", s, before, after)
	}
	q.pop() // the snapshot
	q.pop() // a
	if s := q.queuedSince(); !s.After(after) {
		t.Errorf("a stored: queuedSince %s, want b's, after %s", s, after)
	}
	q.pop()
	if s := q.queuedSince(); !s.IsZero() {
		t.Errorf("nothing queued: queuedSince %s, want zero", s)
	}
}

func TestSegmentFile(t *testing.T) {
	dir := t.TempDir()
	const segSize = 1 << 20
	seg := wal.Segment{Timeline: 1, No: 7}
	s, err := openSegment(dir, seg, segSize, nil)
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
	s, err = openSegment(dir, seg, segSize, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.writeAt([]byte("page"), 0); err != nil {
		t.Fatal(err)
	}
	// Only a fully written and fsynced segment is renamed complete.
	if err := s.rename(); err == nil {
		t.Fatal("a segment with 4 bytes written was renamed complete")
	}
	s, err = openSegment(dir, seg, segSize, nil)
	if err != nil {
		t.Fatal(err)
	}
	full := make([]byte, segSize)
	copy(full, "page")
	if err := s.writeAt(full, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.rename(); err != nil {
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

// A new segment file whose fsync, or its directory's, failed is not left
// in the spool: the next open creates it again and fsyncs both. Left in
// place, it was opened as an existing file, with neither fsync, and the
// WAL fsynced into it was reported flushed although its directory entry
// never reached the disk (a crash could take the file with it).
func TestOpenSegment_SyncNewError(t *testing.T) {
	const segSize = 1 << 20
	seg := wal.Segment{Timeline: 1, No: 7}
	for _, tc := range []struct {
		name string
		file bool // the file's fsync fails, else the directory's
	}{
		{"File", true},
		{"Dir", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var synced []string
			fail := true
			fl := &faults{syncNew: func(path string) error {
				synced = append(synced, path)
				if fail && (path == dir) != tc.file {
					fail = false
					return errInjectedEIO
				}
				return nil
			}}
			if _, err := openSegment(dir, seg, segSize, fl); !errors.Is(err, errInjectedEIO) {
				t.Fatalf("open: %v, want the injected error", err)
			}
			p := filepath.Join(dir, seg.Name(segSize)+wal.PartialSuffix)
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s left after its fsync failed: %v", filepath.Base(p), err)
			}
			synced = nil
			s, err := openSegment(dir, seg, segSize, fl)
			if err != nil {
				t.Fatal(err)
			}
			defer s.close()
			if want := []string{p, dir}; !slices.Equal(synced, want) {
				t.Errorf("the open after the failure fsynced %q, want %q", synced, want)
			}
		})
	}
}

// A new segment file whose fsync failed with ENOSPC and that cannot be
// removed ends the session with a fatal error, as any other failed fsync
// whose file cannot be removed: receiving does not pause as for a full
// disk, since the file stays, and the open after the pause would find it
// and take it as made durable (no fsync of the file or its directory).
func TestSession_openNext_SyncNewNotRemoved(t *testing.T) {
	const segSize = 1 << 20
	spool := t.TempDir()
	seg := wal.Segment{Timeline: 1, No: 7}
	r, err := New(Options{Slot: "hoard", SpoolDir: spool, Uploader: newSink(t)})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(spool, seg.Name(segSize)+wal.PartialSuffix)
	moved := filepath.Join(t.TempDir(), "moved")
	var synced []string
	fail := true
	r.faults.syncNew = func(path string) error {
		synced = append(synced, path)
		if !fail || path != p {
			return nil
		}
		fail = false
		// The file cannot be removed: a directory that is not empty
		// takes its name, and the file is put back after the removal.
		if err := os.Rename(p, moved); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(p, "x"), 0o700); err != nil {
			t.Fatal(err)
		}
		return fmt.Errorf("injected: %w", unix.ENOSPC)
	}
	s := &session{r: r, segSize: segSize, tli: 1, pos: seg.StartLSN(segSize), flushed: seg.StartLSN(segSize)}
	err = s.openNext()
	var fe *fatalError
	if errors.As(err, &fe) && errors.Is(err, unix.ENOSPC) {
		return
	}
	paused := s.full
	// Show what the open after the pause does with the file left.
	if err := os.RemoveAll(p); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(moved, p); err != nil {
		t.Fatal(err)
	}
	synced = nil
	again := s.openNext()
	if s.cur != nil {
		defer s.cur.close()
	}
	t.Fatalf("openNext after a new file's fsync failed (ENOSPC) and its removal failed = %v (paused %v), want a fatal error; the next open = %v, opened %v, fsynced %q",
		err, paused, again, s.cur != nil, synced)
}

// A new segment file that cannot be preallocated and cannot be removed
// stops Run too: the open after the pause would find it, preallocate it
// and take it as made durable, fsyncing neither it nor its directory.
func TestSession_openNext_PreallocateNotRemoved(t *testing.T) {
	const segSize = 1 << 20
	spool := t.TempDir()
	seg := wal.Segment{Timeline: 1, No: 7}
	r, err := New(Options{Slot: "hoard", SpoolDir: spool, Uploader: newSink(t)})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(spool, seg.Name(segSize)+wal.PartialSuffix)
	moved := filepath.Join(t.TempDir(), "moved")
	var synced []string
	r.faults.syncNew = func(path string) error {
		synced = append(synced, path)
		return nil
	}
	fail := true
	r.faults.preallocate = func(path string) error {
		if !fail {
			return nil
		}
		fail = false
		// The file cannot be removed: a directory that is not empty
		// takes its name, and the file is put back after the removal.
		if err := os.Rename(p, moved); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(p, "x"), 0o700); err != nil {
			t.Fatal(err)
		}
		return fmt.Errorf("injected: %w", unix.ENOSPC)
	}
	s := &session{r: r, segSize: segSize, tli: 1, pos: seg.StartLSN(segSize), flushed: seg.StartLSN(segSize)}
	err = s.openNext()
	var fe *fatalError
	if errors.As(err, &fe) && errors.Is(err, unix.ENOSPC) {
		return
	}
	paused := s.full
	// Show what the open after the pause does with the file left.
	if err := os.RemoveAll(p); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(moved, p); err != nil {
		t.Fatal(err)
	}
	again := s.openNext()
	if s.cur != nil {
		defer s.cur.close()
	}
	t.Fatalf("openNext after a new file's preallocation failed (ENOSPC) and its removal failed = %v (paused %v), want a fatal error; the next open = %v, opened %v, fsynced %q",
		err, paused, again, s.cur != nil, synced)
}

// After an fsync error a segment file never counts as fsynced again, and
// is never renamed complete: Linux reports a lost write once, and a second
// fsync would succeed with the bytes gone.
func TestSegmentFile_SyncError(t *testing.T) {
	dir := t.TempDir()
	const segSize = 1 << 20
	fails := 1
	fl := &faults{sync: func(string) error {
		if fails > 0 {
			fails--
			return errors.New("injected EIO")
		}
		return nil
	}}
	s, err := openSegment(dir, wal.Segment{Timeline: 1, No: 7}, segSize, fl)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if err := s.writeAt(make([]byte, segSize), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.sync(); err == nil {
		t.Fatal("injected fsync error not returned")
	}
	for i := range 2 {
		if err := s.sync(); err == nil || s.synced != 0 {
			t.Fatalf("sync %d after the error: %v, %d bytes counted as fsynced", i+2, err, s.synced)
		}
	}
	if err := s.rename(); err == nil {
		t.Error("renamed complete after an fsync error")
	}
	if err := s.writeAt([]byte("x"), 0); err == nil {
		t.Error("written after an fsync error")
	}
}

// After a write error the bytes written since the last fsync count as
// lost, as after an fsync error: sync fails instead of fsyncing them as
// if the write had not failed, and the file is never renamed complete.
func TestSegmentFile_WriteError(t *testing.T) {
	dir := t.TempDir()
	const segSize = 1 << 20
	failing := false
	fl := &faults{write: func(string, uint64) error {
		if failing {
			return errInjectedEIO
		}
		return nil
	}}
	s, err := openSegment(dir, wal.Segment{Timeline: 1, No: 7}, segSize, fl)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if err := s.writeAt(make([]byte, segSize/2), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.writeAt(make([]byte, segSize/4), segSize/2); err != nil {
		t.Fatal(err)
	}
	failing = true
	if err := s.writeAt(make([]byte, segSize/4), 3*segSize/4); !errors.Is(err, errInjectedEIO) {
		t.Fatalf("write: %v, want the injected error", err)
	}
	failing = false
	for i := range 2 {
		if err := s.sync(); err == nil || s.synced != segSize/2 {
			t.Fatalf("sync %d after the write error: %v, %d bytes counted as fsynced, want %d", i+1, err, s.synced, segSize/2)
		}
	}
	if err := s.writeAt(make([]byte, segSize/4), 3*segSize/4); err == nil {
		t.Error("written again after a write error")
	}
	if err := s.rename(); err == nil {
		t.Error("renamed complete after a write error")
	}
}

func TestFindHole(t *testing.T) {
	const segSize = 1 << 24
	start := wal.Segment{Timeline: 2, No: 10}
	name := func(tli uint32, no uint64) string { return wal.Segment{Timeline: tli, No: no}.Name(segSize) }
	for _, tc := range []struct {
		name              string
		archived, spooled []string
		want              Hole
	}{
		{"OKEmptyArchive", nil, nil, Hole{}},
		{"OKContinuous", []string{name(2, 8), name(2, 9)}, nil, Hole{}},
		{"OKSpooled", []string{name(2, 7)}, []string{name(2, 8), name(2, 9)}, Hole{}},
		{"OKEarlierTimeline", []string{name(1, 9)}, nil, Hole{}},
		{"OKLaterSegmentsIgnored", []string{name(2, 9), name(2, 10), name(2, 12), "00000002.history", "x"}, nil, Hole{}},
		{"ErrOne", []string{name(2, 8)}, nil, Hole{First: name(2, 9), Last: name(2, 9), Count: 1}},
		{"ErrRun", []string{name(2, 3), name(2, 4)}, []string{name(2, 5)}, Hole{First: name(2, 6), Last: name(2, 9), Count: 4}},
		{"ErrLaterTimelineDoesNotCount", []string{name(2, 4), name(3, 9)}, nil, Hole{First: name(2, 5), Last: name(2, 9), Count: 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := findHole(t.Context(), holeCheck{start: start, segSize: segSize, spooled: tc.spooled}, tc.archived, nil)
			if err != nil || got != tc.want {
				t.Errorf("findHole = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestFindHole_OtherSystem: after a pg_upgrade into the same site the
// archive holds the old cluster's WAL (another database system) below
// the upgraded cluster's, which starts further on. The old cluster's
// segments are not the newest before the resume point: no hole where
// the streamed system never had WAL, with or without the old cluster's
// timeline 2, while a hole in the streamed system's own WAL above the old
// cluster's is still found, and a segment whose system is not known
// counts as the streamed system's.
func TestFindHole_OtherSystem(t *testing.T) {
	const segSize = 1 << 24
	const oldSys, newSys = 7001, 7002
	name := func(tli uint32, no uint64) string { return wal.Segment{Timeline: tli, No: no}.Name(segSize) }
	// The old cluster: timeline 1 through segment 4, timeline 2 from 4
	// to 0xC (its promotion), unless noTLI2.
	systems := map[string]uint64{}
	old := func(tli2 bool) []string {
		var out []string
		for no := uint64(1); no <= 4; no++ {
			out = append(out, name(1, no))
			systems[name(1, no)] = oldSys
		}
		for no := uint64(4); tli2 && no <= 0xC; no++ {
			out = append(out, name(2, no))
			systems[name(2, no)] = oldSys
		}
		return out
	}
	own := func(nos ...uint64) []string {
		var out []string
		for _, no := range nos {
			out = append(out, name(1, no))
			systems[name(1, no)] = newSys
		}
		return out
	}
	var asked []string
	foreign := func(ctx context.Context, n string, system uint64) (bool, error) {
		asked = append(asked, n)
		s, ok := systems[n]
		return ok && s != system, nil
	}
	for _, tc := range []struct {
		name              string
		start             uint64
		archived, spooled []string
		want              Hole
	}{
		{"OKUpgradedAfterTimeline2", 0xA, old(true), nil, Hole{}},
		{"OKUpgradedOnTimeline1Only", 0xA, old(false), nil, Hole{}},
		{"OKOwnContinuous", 0xE, append(old(true), own(0xA, 0xB, 0xC, 0xD)...), nil, Hole{}},
		{"OKOwnSpooled", 0xE, append(old(true), own(0xA)...), []string{name(1, 0xB), name(1, 0xC), name(1, 0xD)}, Hole{}},
		{"ErrOwnHole", 0xE, append(old(true), own(0xA, 0xB)...), nil, Hole{First: name(1, 0xC), Last: name(1, 0xD), Count: 2}},
		{"ErrOwnHoleOnTimeline1Only", 0xE, append(old(false), own(0xA)...), nil, Hole{First: name(1, 0xB), Last: name(1, 0xD), Count: 3}},
		{"ErrOwnBelowForeign", 0xE, append(own(0x9), name(1, 0xB)), nil, Hole{First: name(1, 0xA), Last: name(1, 0xD), Count: 4}},
		{"ErrSystemUnknown", 0xA, append(old(false), name(1, 5)), nil, Hole{First: name(1, 6), Last: name(1, 9), Count: 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "ErrOwnBelowForeign" {
				systems[name(1, 0xB)] = oldSys
			} else {
				delete(systems, name(1, 0xB))
			}
			asked = nil
			got, err := findHole(t.Context(), holeCheck{start: wal.Segment{Timeline: 1, No: tc.start}, segSize: segSize, spooled: tc.spooled, system: newSys}, tc.archived, foreign)
			if err != nil || got != tc.want {
				t.Errorf("findHole = %+v, %v; want %+v (first pages read: %v)", got, err, tc.want, asked)
			}
		})
	}
	t.Run("ErrContext", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		stop := func(ctx context.Context, n string, system uint64) (bool, error) { return false, ctx.Err() }
		if _, err := findHole(ctx, holeCheck{start: wal.Segment{Timeline: 1, No: 0xA}, segSize: segSize, system: newSys}, old(true), stop); err == nil {
			t.Error("findHole with ctx ended: no error")
		}
	})
}

// TestReceiver_UnstoredSince follows the arrival times of WAL not stored:
// UnstoredSince is when the oldest WAL after Stored arrived, never later
// than that, and zero once everything received is stored.
func TestReceiver_UnstoredSince(t *testing.T) {
	r := &Receiver{}
	t0 := time.Date(2026, 5, 4, 8, 0, 0, 0, time.UTC)
	r.status.Stored = 100
	arrive := func(end pglogrepl.LSN, at time.Duration) {
		r.mu.Lock()
		r.status.Received = max(r.status.Received, end)
		r.noteArrival(end, t0.Add(at))
		r.mu.Unlock()
	}
	arrive(50, 0) // stored already
	if s := r.Status(); !s.UnstoredSince.IsZero() || s.StoredBytesBehind != 0 {
		t.Fatalf("nothing unstored: %+v", s)
	}
	arrive(200, 1*time.Second)
	arrive(300, 1500*time.Millisecond) // within the grain: one run from 1 s
	arrive(400, 3*time.Second)
	arrive(500, 5*time.Second)
	if s := r.Status(); !s.UnstoredSince.Equal(t0.Add(time.Second)) || s.StoredBytesBehind != 400 {
		t.Fatalf("UnstoredSince %s, %d bytes behind; want 1 s, 400", s.UnstoredSince.Sub(t0), s.StoredBytesBehind)
	}
	r.storedThrough(250) // part of the first run: its time stays
	if s := r.Status(); !s.UnstoredSince.Equal(t0.Add(time.Second)) || s.StoredBytesBehind != 250 {
		t.Fatalf("UnstoredSince %s, %d bytes behind; want 1 s, 250", s.UnstoredSince.Sub(t0), s.StoredBytesBehind)
	}
	r.storedThrough(300)
	if s := r.Status(); !s.UnstoredSince.Equal(t0.Add(3 * time.Second)) {
		t.Fatalf("UnstoredSince %s, want 3 s", s.UnstoredSince.Sub(t0))
	}
	r.storedThrough(200) // never backwards
	r.storedThrough(500)
	if s := r.Status(); !s.UnstoredSince.IsZero() || s.StoredBytesBehind != 0 || s.Stored != 500 {
		t.Fatalf("all stored: %+v", s)
	}
	// Many runs are merged, keeping the oldest time.
	for i := range maxArrivals + 10 {
		arrive(pglogrepl.LSN(1000+i), time.Duration(10+2*i)*time.Second)
	}
	if s := r.Status(); !s.UnstoredSince.Equal(t0.Add(10*time.Second)) || len(r.arrivals) != maxArrivals {
		t.Fatalf("UnstoredSince %s with %d runs, want 10 s with %d", s.UnstoredSince.Sub(t0), len(r.arrivals), maxArrivals)
	}
}

// TestSession_reportable: in synchronous mode the server hears as flushed
// only what is stored, never more than is fsynced.
func TestSession_reportable(t *testing.T) {
	r := &Receiver{}
	s := &session{r: r, flushed: 500}
	r.status.Stored = 300
	if got := s.reportable(); got != 500 {
		t.Errorf("asynchronous: %d, want the fsynced 500", got)
	}
	r.opts.Synchronous = true
	if got := s.reportable(); got != 300 {
		t.Errorf("synchronous: %d, want the stored 300", got)
	}
	r.storedThrough(800)
	if got := s.reportable(); got != 500 {
		t.Errorf("synchronous, stored ahead: %d, want the fsynced 500", got)
	}
}

// TestReceive_PausedWakesOnUpload: a receive loop paused for room in the
// spool looks at the free space again as soon as an upload removes a file
// from it, not at its next DiskCheckInterval (an hour here). Looked at on
// the timer only, a spool on a small disk takes a segment or two per
// interval and then waits again, however fast the uploads drain it, while
// the WAL the slot holds on the server keeps growing.
func TestReceive_PausedWakesOnUpload(t *testing.T) {
	const segSize = 1 << 20
	spool := t.TempDir()
	done := wal.Segment{Timeline: 1, No: 5}
	if err := os.WriteFile(filepath.Join(spool, done.Name(segSize)), []byte("complete segment"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := New(Options{Slot: "hoard", SpoolDir: spool, Uploader: newSink(t), MinFreeBytes: 4 << 20,
		DiskCheckInterval: time.Hour, StatusInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// The disk stays nearly full: asked again, the guard keeps the loop
	// paused, so it never reads from the (absent) connection.
	asked := make(chan struct{}, 1)
	r.guard.free = func() (uint64, error) {
		select {
		case asked <- struct{}{}:
		default:
		}
		return 1 << 20, nil
	}
	r.guard.paused = true
	now := time.Now()
	s := &session{r: r, segSize: segSize, tli: 1, pos: done.Next().StartLSN(segSize), flushed: done.Next().StartLSN(segSize),
		nextStatus: now.Add(time.Hour), nextDiskCheck: now.Add(time.Hour)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ended := make(chan error, 1)
	go func() { ended <- s.receive(ctx) }()

	if !r.runTask(ctx, make(chan struct{}), uploadTask{kind: taskFile, name: done.Name(segSize)}) {
		t.Fatal("upload gave up")
	}
	if _, err := os.Stat(filepath.Join(spool, done.Name(segSize))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("uploaded segment still in the spool: %v", err)
	}
	// testTimeout is only the safety net: without the wake-up the next
	// look is an hour away.
	select {
	case <-asked:
	case err := <-ended:
		t.Fatalf("receive ended while paused: %v", err)
	case <-time.After(testTimeout):
		t.Fatal("an upload freed the spool, but the paused receive loop did not look at the free space again")
	}
	cancel()
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Errorf("receive = %v, want context.Canceled", err)
	}
	if s.cur != nil {
		t.Errorf("segment %s opened with the disk still nearly full", s.cur.name())
	}
}

// partialCall is one UploadPartial call a partialRecorder received.
type partialCall struct {
	name   string
	size   int64 // of the file offered
	stored int64
}

// partialRecorder is an Uploader that records UploadPartial calls and
// fails them while fail is set.
type partialRecorder struct {
	fail  bool
	calls []partialCall
	bad   []string // snapshots whose content was wrong
}

func (p *partialRecorder) Upload(context.Context, string) error { return nil }

func (p *partialRecorder) UploadPartial(_ context.Context, path string, stored int64, _ bool) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	p.calls = append(p.calls, partialCall{name: filepath.Base(path), size: fi.Size(), stored: stored})
	if dir := filepath.Dir(path); filepath.Base(dir) == snapshotDir {
		// A snapshot must hold the head of the spool's .partial.
		got, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		want, err := os.ReadFile(filepath.Join(filepath.Dir(dir), filepath.Base(path)))
		if err != nil {
			return err
		}
		if !bytes.Equal(got, want[:len(got)]) {
			p.bad = append(p.bad, fmt.Sprintf("%s of %d bytes is not the head of the spool's file", path, len(got)))
		}
	}
	if p.fail {
		return errors.New("injected failure")
	}
	return nil
}

// A snapshot upload is the fsynced head of the .partial only (trimmed,
// not padded), and tells the Uploader the size of the copy it stored last
// (so the Uploader need not ask the storage) only when that copy is known
// to be the stored one: not for a session's first copy, not after a
// failed call (it may have stored its copy, or not), not for another
// segment, not for an ended timeline's final copy.
func TestUploadSnapshot_stored(t *testing.T) {
	const segSize = 1 << 20
	ctx := context.Background()
	spool := t.TempDir()
	up := &partialRecorder{}
	r, err := New(Options{Slot: "hoard", SpoolDir: spool, Uploader: up})
	if err != nil {
		t.Fatal(err)
	}
	r.segSize.Store(segSize)
	seg := wal.Segment{Timeline: 1, No: 5}
	name := seg.Name(segSize) + wal.PartialSuffix
	next := seg.Next().Name(segSize) + wal.PartialSuffix
	rng := rand.New(rand.NewSource(1))
	for _, n := range []string{name, next} {
		b := make([]byte, segSize)
		rng.Read(b)
		if err := os.WriteFile(filepath.Join(spool, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	snap := func(name string, length uint64) error {
		return r.uploadSnapshot(ctx, uploadTask{kind: taskSnapshot, name: name, length: length})
	}
	steps := []struct {
		do   func() error
		want partialCall // with want.stored: what the Uploader heard
	}{
		{func() error { return snap(name, 100) }, partialCall{name, 100, 0}},
		{func() error { return snap(name, 200) }, partialCall{name, 200, 100}},
		{func() error { up.fail = true; return snap(name, 300) }, partialCall{name, 300, 200}},
		{func() error { up.fail = false; return snap(name, 300) }, partialCall{name, 300, 0}},
		{func() error { return snap(name, 400) }, partialCall{name, 400, 300}},
		{func() error { return snap(name, 400) }, partialCall{name, 400, 400}},
		{func() error { return snap(name, 450<<10) }, partialCall{name, 450 << 10, 400}},
		{func() error { return snap(name, 460<<10) }, partialCall{name, 460 << 10, 450 << 10}},
		{func() error { // a copy gone (cleanSpool) is made again whole
			if err := os.RemoveAll(filepath.Join(spool, snapshotDir)); err != nil {
				return err
			}
			return snap(name, 470<<10)
		}, partialCall{name, 470 << 10, 460 << 10}},
		{func() error { // one of another size too
			if err := os.Truncate(filepath.Join(spool, snapshotDir, name), 10); err != nil {
				return err
			}
			return snap(name, 480<<10)
		}, partialCall{name, 480 << 10, 470 << 10}},
		{func() error { r.forgetSnapshot(); return snap(name, 500) }, partialCall{name, 500, 0}},
		{func() error { return snap(next, 600) }, partialCall{next, 600, 0}},
		{func() error { return r.uploadFile(ctx, uploadTask{kind: taskPartial, name: next}) }, partialCall{next, segSize, 0}},
	}
	for i, st := range steps {
		err := st.do()
		if (err != nil) != up.fail {
			t.Fatalf("step %d: err %v", i, err)
		}
		if got := up.calls[len(up.calls)-1]; got != st.want {
			t.Errorf("step %d: UploadPartial got %+v, want %+v", i, got, st.want)
		}
	}
	for _, b := range up.bad {
		t.Error(b)
	}
	if _, err := os.Stat(filepath.Join(spool, snapshotDir, name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the copy of %s is left after the next segment's: %v", name, err)
	}
	if got, want := r.stored(), seg.Next().StartLSN(segSize)+600; got != want {
		t.Errorf("stored through %s, want %s", got, want)
	}
}

// TestReceive_SynchronousWakesOnUpload: in synchronous mode, the receive
// loop queues the next copy of the growing segment as soon as the copy on
// its way is stored, not at its next status update or disk check (an hour
// here): a commit waits for the storage, not for a timer.
func TestReceive_SynchronousWakesOnUpload(t *testing.T) {
	const segSize = 1 << 20
	spool := t.TempDir()
	s0 := newSink(t)
	r, err := New(Options{Slot: "hoard", SpoolDir: spool, Uploader: s0, Synchronous: true,
		DiskCheckInterval: time.Hour, StatusInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	r.segSize.Store(segSize)
	seg := wal.Segment{Timeline: 1, No: 5}
	now := time.Now()
	// sentFlush is past anything stored here: the loop sends no status
	// update, which needs a connection.
	s := &session{r: r, segSize: segSize, tli: 1, pos: seg.StartLSN(segSize), flushed: seg.StartLSN(segSize),
		sentFlush: seg.Next().StartLSN(segSize), nextStatus: now.Add(time.Hour), nextDiskCheck: now.Add(time.Hour)}
	if err := s.openNext(); err != nil {
		t.Fatal(err)
	}
	defer s.cur.close()
	if err := s.writeData(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	// The first copy is queued; the loop is paused (it reads nothing from
	// the absent connection) and waits.
	if err := s.snapshot(); err != nil {
		t.Fatal(err)
	}
	if err := s.writeData(make([]byte, 50)); err != nil {
		t.Fatal(err)
	}
	r.guard.paused = true
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ended := make(chan error, 1)
	go func() { ended <- s.receive(ctx) }()

	stop := make(chan struct{})
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		r.uploadLoop(ctx, stop)
	}()
	name := seg.Name(segSize) + wal.PartialSuffix
	// testTimeout is only the safety net: without the wake-up the next
	// copy is an hour away.
	deadline := time.After(testTimeout)
	for r.snapshotUploaded(name) != 150 {
		select {
		case err := <-ended:
			t.Fatalf("receive ended: %v", err)
		case <-deadline:
			t.Fatalf("the first copy was stored, but the loop did not queue the next one (stored %d bytes)", r.snapshotUploaded(name))
		case <-time.After(time.Millisecond):
		}
	}
	close(stop)
	cancel()
	<-loopDone
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Errorf("receive = %v, want context.Canceled", err)
	}
	if got := r.stored(); got != seg.StartLSN(segSize)+150 {
		t.Errorf("stored through %s, want %s", got, seg.StartLSN(segSize)+150)
	}
}

// chainUploader is an Uploader that takes each upload a little while and,
// before it returns, has the next file completed and queued: the upload
// queue is never empty, yet no file waits for long, as on a busy server
// whose uploads keep up.
type chainUploader struct {
	r     *Receiver
	spool string
	next  int
	took  time.Duration
}

func (c *chainUploader) Upload(context.Context, string) error {
	c.next++
	name := fmt.Sprintf("%08X%016X", 1, c.next)
	if err := os.WriteFile(filepath.Join(c.spool, name), nil, 0o600); err != nil {
		return err
	}
	c.r.enqueue(uploadTask{kind: taskFile, name: name})
	time.Sleep(c.took)
	return nil
}

func (c *chainUploader) UploadPartial(context.Context, string, int64, bool) error { return nil }

// TestReceiver_QueuedSince: Status.QueuedSince is when the oldest file
// waiting for upload was queued, not when the queue was last empty: on a
// busy server whose uploads keep up, the queue is never empty, but no
// file waits longer than an upload or two, and hoard_wal_lag_seconds
// (which the daemon derives from it) must not grow.
func TestReceiver_QueuedSince(t *testing.T) {
	spool := t.TempDir()
	up := &chainUploader{spool: spool, took: 10 * time.Millisecond}
	r, err := New(Options{Slot: "hoard", SpoolDir: spool, Uploader: up})
	if err != nil {
		t.Fatal(err)
	}
	up.r = r
	if s := r.Status(); !s.QueuedSince.IsZero() {
		t.Fatalf("nothing queued: QueuedSince %s", s.QueuedSince)
	}
	first := fmt.Sprintf("%08X%016X", 1, 0)
	if err := os.WriteFile(filepath.Join(spool, first), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r.enqueue(uploadTask{kind: taskFile, name: first})
	// A snapshot of the segment being received is no file waiting for
	// upload: the stored lag covers it.
	r.enqueue(uploadTask{kind: taskSnapshot, name: fmt.Sprintf("%08X%016X.partial", 1, 1000), length: 8})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.uploadLoop(ctx, stop)
	}()
	var worst time.Duration
	for time.Since(start) < 2500*time.Millisecond {
		time.Sleep(20 * time.Millisecond)
		s := r.Status()
		if s.QueueDepth == 0 {
			t.Fatal("the queue emptied: the test needs it busy")
		}
		if s.QueuedSince.IsZero() {
			t.Fatalf("QueuedSince zero with %d files queued", s.QueueDepth)
		}
		worst = max(worst, time.Since(s.QueuedSince))
	}
	close(stop)
	<-done
	// Each file waits for the one before it: about 10 ms. A second
	// leaves room for a loaded machine, and is still well below the
	// 2.5 s the queue has not been empty.
	if worst > time.Second {
		t.Errorf("oldest queued file waited up to %s, with each upload taking %s", worst, up.took)
	}
	if up.next < 10 {
		t.Errorf("only %d uploads in 2.5 s", up.next)
	}
}
