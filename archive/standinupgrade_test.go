package archive

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// upgradedTailSite returns a site (with keys or without) holding two
// systems, before and after a pg_upgrade into it: the old one reached
// timeline 2 (segments 1 and 2 of timeline 1, its 00000002.history,
// segments 3 and 4 of timeline 2), the upgraded one is on timeline 1 from
// segment 0x20 on, its segment 0x23 in progress stored as a .partial (its
// first 300000 bytes, whose content it returns).
func upgradedTailSite(tb testing.TB, keys bool, sysOld, sysNew uint64) (*Archive, []byte) {
	tb.Helper()
	a := walTestArchive(tb, keys)
	a.Codec.RequireEncryption = keys
	pushSegmentOf(tb, a, "000000010000000000000001", sysOld)
	pushSegmentOf(tb, a, "000000010000000000000002", sysOld)
	if err := pushHistory(tb, a, "00000002.history", "1\t0/200000\tno recovery target specified\n", sysOld); err != nil {
		tb.Fatal(err)
	}
	pushSegmentOf(tb, a, "000000020000000000000003", sysOld)
	pushSegmentOf(tb, a, "000000020000000000000004", sysOld)
	for _, n := range []string{"000000010000000000000020", "000000010000000000000021", "000000010000000000000022"} {
		pushSegmentOf(tb, a, n, sysNew)
	}
	const name = "000000010000000000000023"
	data := waltest.SegmentOf(tb, name, testSegSize, 1, sysNew)[:300000]
	putPartialOf(tb, a, name, data)
	return a, data
}

// TestFetchWAL_UpgradedTail: the upgraded cluster's segment in progress,
// stored as a .partial at the end of its WAL, with the old cluster's
// later timeline (its 00000002.history, absent to the upgraded cluster's
// recovery, and its WAL there) still in the site. wal-fetch for the
// upgraded cluster (its system and timeline from pg_control) delivers the
// .partial, padded to the segment size, as at the end of any archive:
// the old cluster's timeline 2 is not one its recovery follows. Before,
// it answered not archived, and recovery ended at the end of segment
// 0x22, without the WAL the .partial holds. For the old system, and a
// reader that names no system, it is not archived, as before.
func TestFetchWAL_UpgradedTail(t *testing.T) {
	testio.WithAndWithoutKeys(t, testFetchWALUpgradedTail)
}

func testFetchWALUpgradedTail(t *testing.T, keys bool) {
	ctx := context.Background()
	const sysOld, sysNew = 7000000000000000001, 7000000000000000002
	const name = "000000010000000000000023"
	a, data := upgradedTailSite(t, keys, sysOld, sysNew)
	fetch := func(o FetchOptions) ([]byte, error) {
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		if err := a.FetchWAL(ctx, name, dest, o); err != nil {
			return nil, err
		}
		return os.ReadFile(dest)
	}
	var standIn string
	got, err := fetch(FetchOptions{SystemID: sysNew, Timeline: 1, StandIn: func(key string) { standIn = key }})
	if err != nil {
		t.Fatalf("wal-fetch %s for the upgraded cluster: %v, want its .partial", name, err)
	}
	if len(got) != testSegSize || !bytes.Equal(got[:len(data)], data) || !bytes.Equal(got[len(data):], make([]byte, testSegSize-len(data))) {
		t.Errorf("wal-fetch %s delivered %d bytes, want the .partial's %d padded with zeros to %d", name, len(got), len(data), testSegSize)
	}
	if want := a.Layout.WALKey(name + wal.PartialSuffix); standIn != want {
		t.Errorf("StandIn called with %q, want %q", standIn, want)
	}
	for _, o := range []FetchOptions{{SystemID: sysOld, Timeline: 2}, {}} {
		if _, err := fetch(o); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("wal-fetch %s for system %d: %v, want not archived", name, o.SystemID, err)
		}
	}
}
