package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// tailArchive is soundArchive with the .partial of segment 4 at the end
// of the archive (the archive's tail); it returns the .partial's key.
func tailArchive(t *testing.T) (*archive.Archive, string) {
	a := soundArchive(t)
	putPartial(t, a, seg(1, 4), 70000)
	return a, a.Layout.WALKey(seg(1, 4) + wal.PartialSuffix)
}

// systemEndArchive is TestRun_SystemEnd's upgraded archive: backup b1's
// system's WAL ends in the .partial of segment 5, another system's
// segments 7 and 8 follow it. It returns the .partial's key and the
// first other system's segment's.
func systemEndArchive(t *testing.T) (a *archive.Archive, partial, next string) {
	const old, upgraded = 7123456789012345678, 7000000000000000002
	a = testArchive(t)
	putBackupOf(t, a, "b1", 1, 2, 3, t0, fmt.Sprint(old))
	putSegments(t, a, 1, 1, 4)
	putPartial(t, a, seg(1, 5), 300000)
	for _, no := range []uint64{7, 8} {
		putSegment(t, a, seg(1, no), waltest.SegmentOf(t, seg(1, no), segSize, 0, upgraded))
	}
	return a, a.Layout.WALKey(seg(1, 5) + wal.PartialSuffix), a.Layout.WALKey(seg(1, 7))
}

// TestRun_ErrTailUnchecked: the .partial that ends the archive (the
// segment in progress, read for every backup's reach and the report's
// WAL end), or the .partial that ends a backup's system's WAL before
// another system's (restore.SystemEndTail), that the storage fails to
// send (a GET answered 503 past the retries, access denied, a download
// cut in the middle) ends verify with the storage's error, naming the
// object and saying that it could not be checked, with and without
// --full, as TestRun_ErrControlUnchecked for a control object. Before,
// the SystemEndTail reads' failures made the backup's WAL end in a gap
// ("missing after the backup's end"), and the tail's read stopped verify
// with the storage's error alone ("verify: read <key>: ... 503"), which
// read as a problem of the WAL. TestRun_SystemEndDamaged and
// TestRun_PartialTail: damage is still reported.
func TestRun_ErrTailUnchecked(t *testing.T) {
	unavailable := errors.New("https response error StatusCode: 503, SlowDown")
	denied := fmt.Errorf("access denied to s3 bucket %q: %w", "b", storage.ErrPermanent)
	tail := func(t *testing.T) (*archive.Archive, string) { return tailArchive(t) }
	sysPartial := func(t *testing.T) (*archive.Archive, string) { a, p, _ := systemEndArchive(t); return a, p }
	sysNext := func(t *testing.T) (*archive.Archive, string) { a, _, n := systemEndArchive(t); return a, n }
	for _, k := range []struct {
		name string
		make func(*testing.T) (*archive.Archive, string)
	}{{"Tail", tail}, {"SystemEndPartial", sysPartial}, {"SystemEndNext", sysNext}} {
		for _, c := range []struct {
			name string
			err  error
			cut  bool
		}{{"Unavailable", unavailable, false}, {"Denied", denied, false}, {"Cut", io.ErrUnexpectedEOF, true}} {
			for _, full := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s%s/full=%v", k.name, c.name, full), func(t *testing.T) {
					a, key := k.make(t)
					a.Store = failingOpen{Store: a.Store, key: key, err: c.err, cut: c.cut}
					rep, err := Run(context.Background(), Options{Archive: a, Full: full, Logger: zerolog.Nop()})
					if err == nil {
						t.Fatalf("verify: no error; report OK=%v, problems:\n%s", rep.OK(), problems(rep))
					}
					if !errors.Is(err, c.err) || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "could not be checked") {
						t.Fatalf("verify: %v, want the storage's error naming %s, saying it could not be checked", err, key)
					}
				})
			}
		}
	}
}

// TestRun_SystemEndDamaged: in systemEndArchive, a .partial or next
// segment the storage answers "not found" for, or that someone without
// the key altered, ends no system's WAL (the attacker rule beside
// TestRun_ErrTailUnchecked's storage failures): the WAL after segment 4
// is reported, recovery of b1 reaches segment 4 only, no error.
func TestRun_SystemEndDamaged(t *testing.T) {
	for _, c := range []struct {
		name   string
		key    func(partial, next string) string
		tamper bool
	}{
		{"PartialNotFound", func(p, _ string) string { return p }, false},
		{"NextNotFound", func(_, n string) string { return n }, false},
		{"PartialTampered", func(p, _ string) string { return p }, true},
		{"NextTampered", func(_, n string) string { return n }, true},
	} {
		for _, full := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/full=%v", c.name, full), func(t *testing.T) {
				a, p, n := systemEndArchive(t)
				key := c.key(p, n)
				if c.tamper {
					storetest.Tamper(t, a.Store, key)
				} else {
					a.Store = failingOpen{Store: a.Store, key: key, err: storage.ErrNotFound}
				}
				rep, err := Run(context.Background(), Options{Archive: a, Full: full, Logger: zerolog.Nop()})
				if err != nil {
					t.Fatalf("verify: %v, want a report", err)
				}
				// --full reports segments 7 and 8 themselves (another
				// system's, or damaged) rather than a gap.
				if b := rep.Backups[0]; rep.OK() || !full && len(b.Gaps) == 0 || b.ReachSegment != seg(1, 4) {
					t.Fatalf("report OK=%v, gaps %+v, reach %s; want the WAL after %s reported\n%s", rep.OK(), b.Gaps, b.ReachSegment, seg(1, 4), problems(rep))
				}
			})
		}
	}
}
