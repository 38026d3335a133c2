package restore

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// TestSystemEndTail: after a pg_upgrade into the same site, backup b's
// WAL (segments 2 to 4, its system) ends in 000000010000000000000005.partial
// and the upgraded cluster's WAL (segments 7 and 8) follows. checkWALGap
// finds a gap from segment 5; SystemEndTail makes the .partial the tail
// that ends b's system's WAL, and checkWALGap with it reaches the
// .partial's end with no gap. Where the WAL after it is b's own system's,
// it stays a gap, and where segment 5 has no .partial but the WAL after
// the gap is another system's, the refusal (otherSystemGap) says so
// instead of pointing at archive-sync.
func TestSystemEndTail(t *testing.T) {
	ctx := context.Background()
	const segSize = 1 << 20
	const old, upgraded = 7000000000000000001, 7000000000000000002
	b := hoardBackup("b", 1, 0x4000100, 0)
	b.StartLSN, b.StartWALSegment, b.EndWALSegment, b.WALSegmentSize = 0x200028, "000000010000000000000002", "000000010000000000000004", segSize
	b.EndLSN, b.SystemID = 0x400100, "7000000000000000001"
	var siteOf func(t *testing.T, partial bool, after map[string]uint64) (*archive.WALListing, walIndex)
	// site stores b's system's segments 2 to 4, segment 5 as a .partial
	// of it (with partial), then segments 7 and 8 of after.
	site := func(t *testing.T, partial bool, after uint64) (*archive.WALListing, walIndex) {
		return siteOf(t, partial, map[string]uint64{"000000010000000000000007": after, "000000010000000000000008": after})
	}
	siteOf = func(t *testing.T, partial bool, after map[string]uint64) (*archive.WALListing, walIndex) {
		a := archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: compress.Snappy})
		put := func(name string, data []byte) {
			p := filepath.Join(t.TempDir(), name)
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			var err error
			if wal.IsPartialName(name) {
				_, err = a.PutPartialWAL(ctx, p, archive.PushOptions{})
			} else {
				_, err = a.PushWAL(ctx, p, archive.PushOptions{})
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		for _, n := range []string{"000000010000000000000002", "000000010000000000000003", "000000010000000000000004"} {
			put(n, waltest.SegmentOf(t, n, segSize, 1, old))
		}
		if partial {
			put("000000010000000000000005.partial", waltest.SegmentOf(t, "000000010000000000000005", segSize, 1, old)[:300000])
		}
		for n, sys := range after {
			put(n, waltest.SegmentOf(t, n, segSize, 1, sys))
		}
		l, err := a.ListStoredWAL(ctx)
		if err != nil {
			t.Fatal(err)
		}
		w, err := listWAL(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		return l, w
	}
	one := wal.History{{Timeline: 1}}

	t.Run("OK", func(t *testing.T) {
		l, w := site(t, true, upgraded)
		_, gap, err := checkWALGap(w, nil, b, one, 0)
		if err != nil || gap == nil || gap.First != "000000010000000000000005" {
			t.Fatalf("checkWALGap = gap %v, %v; want a gap from 000000010000000000000005", gap, err)
		}
		tail, end, err := SystemEndTail(ctx, l, b, old, gap.First)
		if err != nil || tail == nil || end == nil {
			t.Fatalf("SystemEndTail = %+v, %+v, %v; want the .partial", tail, end, err)
		}
		// The end of its content's last non-zero page data (waltest
		// fills half of each page), within the 300000 bytes stored.
		if tail.End <= 5*segSize || tail.End > 5*segSize+300000 || end.NextSystem != upgraded {
			t.Errorf("tail ends at %s, next system %d; want within the .partial's 300000 bytes, %d", tail.End, end.NextSystem, uint64(upgraded))
		}
		last, gap, err := checkWALGap(w, tail, b, one, 0)
		if err != nil || gap != nil || last != "000000010000000000000005.partial" {
			t.Errorf("checkWALGap with the tail = %s, gap %v, %v; want the .partial, no gap", last, gap, err)
		}
		if tail, end, err := SystemEndTail(ctx, l, b, upgraded, gap0(t, w, b)); tail != nil || end != nil || err != nil {
			t.Errorf("SystemEndTail for the upgraded system = %+v, %+v, %v; want none", tail, end, err)
		}
	})
	// noEnd checks that the gap after b in w is no end of its system's
	// WAL, and returns otherSystemGap's why.
	noEnd := func(t *testing.T, l *archive.WALListing, w walIndex) string {
		t.Helper()
		g := gap0(t, w, b)
		if tail, end, err := SystemEndTail(ctx, l, b, old, g); tail != nil || end != nil || err != nil {
			t.Errorf("SystemEndTail = %+v, %+v, %v; want none: a gap", tail, end, err)
		}
		_, gap, _ := checkWALGap(w, nil, b, one, 0)
		return otherSystemGap(ctx, l, b, gap)
	}
	t.Run("ErrSameSystem", func(t *testing.T) {
		l, w := site(t, true, old)
		if why := noEnd(t, l, w); why != "" {
			t.Errorf("otherSystemGap of the same system's WAL = %q, want none", why)
		}
	})
	// Someone who can write to the bucket deleted segment 5 (its
	// .partial stays) and stored another system's segment as 6, before
	// b's system's own segments 7 and 8: a gap from 5, not the end of
	// b's system's WAL, and the refusal says nothing of another cluster.
	t.Run("ErrOwnWALAfter", func(t *testing.T) {
		for _, partial := range []bool{true, false} {
			l, w := siteOf(t, partial, map[string]uint64{
				"000000010000000000000006": upgraded, "000000010000000000000007": old, "000000010000000000000008": old,
			})
			if g := gap0(t, w, b); g != "000000010000000000000005" {
				t.Errorf("gap from %s, want 000000010000000000000005", g)
			}
			if why := noEnd(t, l, w); why != "" {
				t.Errorf("otherSystemGap with b's system's WAL after the gap = %q, want none", why)
			}
		}
	})
	t.Run("ErrNoPartial", func(t *testing.T) {
		l, w := site(t, false, upgraded)
		why := noEnd(t, l, w)
		for _, want := range []string{"000000010000000000000007", "7000000000000000001", "7000000000000000002", "pg_upgrade"} {
			if !strings.Contains(why, want) {
				t.Errorf("otherSystemGap = %q, does not say %s", why, want)
			}
		}
	})
}

// gap0 returns the first missing segment of the gap after b in w.
func gap0(t *testing.T, w walIndex, b *archive.BackupInfo) string {
	t.Helper()
	_, gap, err := checkWALGap(w, nil, b, wal.History{{Timeline: 1}}, 0)
	if err != nil || gap == nil {
		t.Fatalf("checkWALGap = gap %v, %v; want a gap", gap, err)
	}
	return gap.First
}
