package verify

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// TestRun_UpgradedTail: a site holding two systems, before and after a
// pg_upgrade into it: the old cluster reached timeline 2 (its
// 00000002.history and WAL there), the upgraded one is on timeline 1
// from segment 0x20 on, its segment in progress 0x23 stored as a
// .partial that holds the end of a backup of it (a standby's). verify
// reaches that backup's end through the .partial, as restore restores it
// (restore's TestRecoveryTail_AfterUpgrade) and wal-fetch delivers it,
// with and without --full, and CheckContinuity (archive-sync, the test
// restore) does too, with and without keys. Before, verify looked for the .partial tail at the
// end of the whole archive, where the old cluster's timeline 2 kept it
// from standing in: the backup was reported broken, its WAL missing.
func TestRun_UpgradedTail(t *testing.T) {
	testio.WithAndWithoutKeys(t, testRunUpgradedTail)
}

func testRunUpgradedTail(t *testing.T, keys bool) {
	ctx := context.Background()
	const sysOld, sysNew = archivetest.UpgradeOldSystem, archivetest.UpgradeNewSystem
	a := archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: compress.Zstd})
	if keys {
		// The backups' systems are known from their signed metadata.
		a = encryptedArchive(t)
	}
	archivetest.UpgradedSiteWAL(t, a, segSize)
	putBackupOf(t, a, "old", 1, 1, 2, t0.Add(-48*3600e9), fmt.Sprint(sysOld))
	standby := putBackupOf(t, a, "standby", 1, 0x22, 0x23, t0, fmt.Sprint(sysNew))
	p := filepath.Join(t.TempDir(), seg(1, 0x23)+wal.PartialSuffix)
	if err := os.WriteFile(p, waltest.SegmentOf(t, seg(1, 0x23), segSize, 0, sysNew)[:300000], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := a.PutPartialWAL(ctx, p, archive.PushOptions{SystemID: sysNew}); err != nil {
		t.Fatal(err)
	}
	partial := seg(1, 0x23) + wal.PartialSuffix
	for _, full := range []bool{false, true} {
		rep := run(t, a, full)
		if !rep.OK() {
			t.Errorf("full=%v: not OK:\n%s", full, problems(rep))
		}
		for _, r := range rep.Backups {
			want := seg(2, 10)
			if r.Name == "standby" {
				want = partial
			}
			if r.ReachSegment != want || r.Status != StatusOK {
				t.Errorf("full=%v: backup %s reaches %s (%s), want %s (%s): %v", full, r.Name, r.ReachSegment, r.Status, want, StatusOK, r.Problems)
			}
		}
	}
	ch, err := CheckContinuity(ctx, a, standby)
	if err != nil || !ch.Restorable || ch.LastContinuous != partial || ch.Partial != partial || !ch.Continuous() {
		t.Errorf("CheckContinuity = %+v, %v; want restorable through %s", ch, err, partial)
	}
}
