package archive

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// walOf is a segment or .partial (name with its suffix) of a database
// system.
type walOf struct {
	name   string
	system uint64
}

// upgradedSite returns a site (with keys or without) after a pg_upgrade
// in place into it: the old system's segments 2 to 4 of timeline 1 and
// its unfinished segment 5 as a .partial (its first 300000 bytes, whose
// content it returns), then next's segments 7 and 8 of timeline 1.
func upgradedSite(tb testing.TB, keys bool, old, next uint64) (*Archive, []byte) {
	tb.Helper()
	return partialSite(tb, keys, old, walOf{"000000010000000000000007", next}, walOf{"000000010000000000000008", next})
}

// partialSite returns a site (with keys or without) holding the old
// system's segments 2 to 4 of timeline 1 and its segment 5 as a .partial
// only (its first 300000 bytes, whose content it returns), then after.
func partialSite(tb testing.TB, keys bool, old uint64, after ...walOf) (*Archive, []byte) {
	tb.Helper()
	a := walTestArchive(tb, keys)
	a.Codec.RequireEncryption = keys
	for _, n := range []string{"000000010000000000000002", "000000010000000000000003", "000000010000000000000004"} {
		pushSegmentOf(tb, a, n, old)
	}
	const name = "000000010000000000000005"
	data := waltest.SegmentOf(tb, name, testSegSize, 1, old)[:300000]
	putPartialOf(tb, a, name, data)
	for _, w := range after {
		if !wal.IsPartialName(w.name) {
			pushSegmentOf(tb, a, w.name, w.system)
			continue
		}
		putPartialOf(tb, a, w.name[:24], waltest.SegmentOf(tb, w.name[:24], testSegSize, 1, w.system)[:200000])
	}
	return a, data
}

// putPartialOf stores data as the .partial of segment name.
func putPartialOf(tb testing.TB, a *Archive, name string, data []byte) {
	tb.Helper()
	if _, err := a.PutPartialWAL(context.Background(), writeWALFile(tb, tb.TempDir(), name+wal.PartialSuffix, data), PushOptions{}); err != nil {
		tb.Fatal(err)
	}
}

// TestWALListing_SystemEndAt: after a pg_upgrade into the same site, the
// old system's last segment, stored only as a .partial, is followed by
// the upgraded system's WAL on the same timeline. For a reader of the old
// system the .partial ends its WAL: SystemEndAt names both objects and
// systems, and wal-fetch of the segment delivers the .partial, padded to
// the segment size. For the upgraded system, a reader that names no
// system, where the WAL after it is the old system's own (a real gap), or
// where that WAL does not authenticate (altered by someone without the
// key), or where any WAL of the old system is stored after it (someone
// who can write to the bucket planted the other system's): no end, and
// wal-fetch answers not archived, as before.
func TestWALListing_SystemEndAt(t *testing.T) {
	testio.WithAndWithoutKeys(t, testSystemEndAt)
}

func testSystemEndAt(t *testing.T, keys bool) {
	ctx := context.Background()
	const sysOld, sysNew = 7000000000000000001, 7000000000000000002
	const name = "000000010000000000000005"
	a, data := upgradedSite(t, keys, sysOld, sysNew)
	end := func(a *Archive, system uint64) *SystemEnd {
		t.Helper()
		l, err := a.ListStoredWAL(ctx)
		if err != nil {
			t.Fatal(err)
		}
		e, err := l.SystemEndAt(ctx, name, system)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	fetch := func(a *Archive, system uint64) ([]byte, error) {
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		if err := a.FetchWAL(ctx, name, dest, FetchOptions{SystemID: system}); err != nil {
			return nil, err
		}
		return os.ReadFile(dest)
	}

	e := end(a, sysOld)
	if e == nil {
		t.Fatalf("SystemEndAt(%s, the old system) = nil, want the end of its WAL", name)
	}
	if e.Partial.Key != a.Layout.WALKey(name+wal.PartialSuffix) || e.Next.Name != "000000010000000000000007" || e.NextSystem != sysNew {
		t.Errorf("SystemEndAt = %+v, want %s.partial followed by the new system's 000000010000000000000007", e, name)
	}
	for _, w := range []string{name + wal.PartialSuffix, "000000010000000000000007", "7000000000000000001", "7000000000000000002", "pg_upgrade", "prefix"} {
		if !strings.Contains(e.String(), w) {
			t.Errorf("%q does not say %s", e, w)
		}
	}
	got, err := fetch(a, sysOld)
	if err != nil {
		t.Fatalf("wal-fetch %s for the old system: %v, want its .partial", name, err)
	}
	if len(got) != testSegSize || !bytes.Equal(got[:len(data)], data) || !bytes.Equal(got[len(data):], make([]byte, testSegSize-len(data))) {
		t.Errorf("wal-fetch %s delivered %d bytes, want the .partial's %d padded with zeros to %d", name, len(got), len(data), testSegSize)
	}

	for _, sys := range []uint64{sysNew, 0} {
		if e := end(a, sys); e != nil {
			t.Errorf("SystemEndAt(%s, %d) = %+v, want nil", name, sys, e)
		}
		if _, err := fetch(a, sys); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("wal-fetch %s for system %d: %v, want not archived", name, sys, err)
		}
	}

	// The old system's own WAL after the .partial: a gap, not its end,
	// told from the next segment's first page alone (one read).
	gap, _ := upgradedSite(t, keys, sysOld, sysOld)
	opens := &storetest.OpenLog{Store: gap.Store}
	gap.Store = opens
	if e := end(gap, sysOld); e != nil {
		t.Errorf("SystemEndAt with the same system's WAL after it = %+v, want nil", e)
	}
	if keys := opens.Keys(); len(keys) != 1 {
		t.Errorf("SystemEndAt with the same system's WAL after it read %v, want the next segment's first page only", keys)
	}
	if _, err := fetch(gap, sysOld); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("wal-fetch %s with the same system's WAL after it: %v, want not archived", name, err)
	}

	// The next object altered: its first page is not trusted.
	storetest.Tamper(t, a.Store, a.Layout.WALKey("000000010000000000000007"))
	if e := end(a, sysOld); e != nil {
		t.Errorf("SystemEndAt with the next segment altered = %+v, want nil", e)
	}
	if _, err := fetch(a, sysOld); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("wal-fetch %s with the next segment altered: %v, want not archived", name, err)
	}

	// Someone who can write to the bucket and holds no key deletes
	// segment 5 (its .partial stays, as the daemon's periodic uploads
	// leave it) and copies another system's segment, from a site sharing
	// the key pair, under the name 6, while the old system's own WAL
	// after it stays stored. That is no end of the old system's WAL:
	// SystemEndAt returns nil and wal-fetch answers not archived, so that
	// restore reports the gap at 5 instead of ending recovery there and
	// skipping the WAL stored after it. The old system's WAL after it
	// vetoes as a segment, as a .partial, or on a later timeline; the
	// veto reads first pages only, in name order, and stops at the first
	// of the old system's.
	for _, tc := range []struct {
		name  string
		after []walOf
		reads []string // the objects SystemEndAt opens
	}{
		{"ErrOwnSegmentAfter", []walOf{
			{"000000010000000000000006", sysNew},
			{"000000010000000000000007", sysOld},
			{"000000010000000000000008", sysOld},
		}, []string{"000000010000000000000006", "000000010000000000000007"}},
		{"ErrOwnPartialAfter", []walOf{
			{"000000010000000000000006", sysNew},
			{"000000010000000000000007", sysNew},
			{"000000010000000000000009.partial", sysOld},
		}, []string{"000000010000000000000006", "000000010000000000000007", "000000010000000000000009.partial"}},
		{"ErrOwnLaterTimeline", []walOf{
			{"000000010000000000000006", sysNew},
			{"000000020000000000000004", sysOld},
			{"000000020000000000000005", sysOld},
		}, []string{"000000010000000000000006", "000000020000000000000004"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := partialSite(t, keys, sysOld, tc.after...)
			opens := &storetest.OpenLog{Store: a.Store}
			a.Store = opens
			l, err := a.ListStoredWAL(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if e, err := l.SystemEndAt(ctx, name, sysOld); e != nil || err != nil {
				t.Errorf("SystemEndAt(%s) with the old system's WAL stored after it = %+v, %v; want nil: a gap", name, e, err)
			}
			want := make([]string, len(tc.reads))
			for i, n := range tc.reads {
				want[i] = a.Layout.WALKey(n)
			}
			if got := opens.Keys(); !slices.Equal(got, want) {
				t.Errorf("SystemEndAt read %v, want the first pages of %v only", got, want)
			}
			dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
			if err := a.FetchWAL(ctx, name, dest, FetchOptions{SystemID: sysOld}); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("wal-fetch %s: %v, want not archived", name, err)
			}
		})
	}
}
