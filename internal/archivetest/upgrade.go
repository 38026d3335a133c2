package archivetest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/wal"
)

// The database systems of UpgradedSiteWAL's two clusters.
const (
	UpgradeOldSystem uint64 = 7000000000000000001
	UpgradeNewSystem uint64 = 7000000000000000002
)

// PushWAL stores the WAL file name (a segment or a history file) holding
// data in a, as wal-push of a cluster of database system system would.
func PushWAL(t testing.TB, a *archive.Archive, name string, data []byte, system uint64) {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := a.PushWAL(context.Background(), p, archive.PushOptions{SystemID: system}); err != nil {
		t.Fatal(err)
	}
}

// UpgradedSiteWAL stores in a (a site without keys: the files claim their
// writer's system) the WAL of a site holding two systems, before and
// after a pg_upgrade into it: the old cluster (UpgradeOldSystem) wrote
// segments 1 and 2 on timeline 1, was promoted at 0/300000
// (00000002.history) and wrote segments 3 to 10 on timeline 2; the
// upgraded one (UpgradeNewSystem) is on timeline 1 from segment 0x20 to
// 0x22, beyond all of it. Segments are segSize bytes.
func UpgradedSiteWAL(t testing.TB, a *archive.Archive, segSize uint64) {
	t.Helper()
	push := func(tli uint32, first, last uint64, system uint64) {
		for no := first; no <= last; no++ {
			name := wal.Segment{Timeline: tli, No: no}.Name(segSize)
			PushWAL(t, a, name, waltest.SegmentOf(t, name, segSize, 0, system), system)
		}
	}
	push(1, 1, 2, UpgradeOldSystem)
	PushWAL(t, a, "00000002.history", []byte("1\t0/300000\tno recovery target specified\n"), UpgradeOldSystem)
	push(2, 3, 10, UpgradeOldSystem)
	push(1, 0x20, 0x22, UpgradeNewSystem)
}
