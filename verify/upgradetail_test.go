package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"

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

// upgradedTailArchive is TestRun_UpgradedTail's site (with keys or
// without): backup "old" of the old cluster, backup "standby" of the
// upgraded one, which ends in the upgraded cluster's .partial of segment
// 0x23. It returns the standby backup.
func upgradedTailArchive(t *testing.T, keys bool) (*archive.Archive, *archive.BackupInfo) {
	t.Helper()
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
	if _, err := a.PutPartialWAL(context.Background(), p, archive.PushOptions{SystemID: sysNew}); err != nil {
		t.Fatal(err)
	}
	return a, standby
}

func testRunUpgradedTail(t *testing.T, keys bool) {
	ctx := context.Background()
	a, standby := upgradedTailArchive(t, keys)
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

// TestRun_UpgradedTailAfterEnd: upgradedTailArchive with a backup of
// the upgraded cluster that ends before the segment preceding its
// .partial (a primary's, taken while the daemon streams: its end segment
// 0x21 and 0x22 complete, 0x23 in progress), and, as PostgreSQL archives
// at a promotion, the old cluster's timeline 1 .partial of segment 3
// where it switched to timeline 2. verify reaches that backup through
// the upgraded cluster's .partial, with and without keys, quick and
// --full, as restore restores it to the .partial's end. Before, in a
// site without keys, the backup's WAL was followed again with its
// system known (from its control object) only when the first pass,
// without it, had found a gap: this one's chain had none, so its reach
// stopped at segment 0x22 (found on a real pg_upgrade streamed by the
// daemon, e2e TestPgUpgrade_StreamedPartialBelowOldTimeline).
func TestRun_UpgradedTailAfterEnd(t *testing.T) {
	testio.WithAndWithoutKeys(t, func(t *testing.T, keys bool) {
		a, _ := upgradedTailArchive(t, keys)
		putBackupOf(t, a, "primary", 1, 0x20, 0x21, t0.Add(-3600e9), fmt.Sprint(archivetest.UpgradeNewSystem))
		p := filepath.Join(t.TempDir(), seg(1, 3)+wal.PartialSuffix)
		if err := os.WriteFile(p, waltest.SegmentOf(t, seg(1, 3), segSize, 0, archivetest.UpgradeOldSystem)[:200000], 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := a.PutPartialWAL(context.Background(), p, archive.PushOptions{SystemID: archivetest.UpgradeOldSystem}); err != nil {
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
				if r.Name != "old" {
					want = partial
				}
				if r.ReachSegment != want || r.Status != StatusOK {
					t.Errorf("full=%v: backup %s reaches %s (%s), want %s (%s): %v", full, r.Name, r.ReachSegment, r.Status, want, StatusOK, r.Problems)
				}
			}
		}
	})
}

// TestRun_ErrUpgradedTailUnchecked: the upgraded cluster's .partial in
// upgradedTailArchive (the end of the WAL backup standby's recovery
// reads, and of the site's WAL end, not of the archive: the old
// cluster's timeline 2 is stored above it) that the storage fails to
// send, at its first read or any later one (verify reads it for the
// backup's reach, with --full to decode it, and for the WAL end), ends
// verify with the storage's error, naming the object, saying once that
// it could not be checked, and, for the segment in progress, what it
// is: below another database system's later timeline, after a
// pg_upgrade. Before, the message called it "the .partial that ends
// the archive", which it is not, inside a second message saying that
// the storage failed to send "a timeline history file or" it.
func TestRun_ErrUpgradedTailUnchecked(t *testing.T) {
	testio.WithAndWithoutKeys(t, func(t *testing.T, keys bool) {
		unavailable := errors.New("https response error StatusCode: 503, SlowDown")
		for _, c := range []struct {
			name string
			err  error
			cut  bool
		}{{"Unavailable", unavailable, false}, {"Cut", io.ErrUnexpectedEOF, true}} {
			for _, full := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/full=%v", c.name, full), func(t *testing.T) {
					for n := int32(0); ; n++ {
						a, _ := upgradedTailArchive(t, keys)
						key := a.Layout.WALKey(seg(1, 0x23) + wal.PartialSuffix)
						skip := new(atomic.Int32)
						skip.Store(n)
						a.Store = failingOpen{Store: a.Store, key: key, err: c.err, cut: c.cut, skip: skip}
						rep, err := Run(context.Background(), Options{Archive: a, Full: full, Logger: zerolog.Nop()})
						if err == nil {
							if n == 0 {
								t.Fatalf("verify: no error; report OK=%v, problems:\n%s", rep.OK(), problems(rep))
							}
							break
						}
						msg := err.Error()
						if !errors.Is(err, c.err) || !strings.Contains(msg, key) || strings.Count(msg, "could not be checked") != 1 {
							t.Fatalf("read %d: verify: %v, want the storage's error naming %s, saying once that it could not be checked", n, err, key)
						}
						if strings.Contains(msg, "ends the archive") {
							t.Errorf("read %d: verify: %v, calls the upgraded cluster's .partial the end of the archive", n, err)
						}
						wants := []string{"another database system", "pg_upgrade"}
						if n == 0 {
							wants = append(wants, "segment in progress of backup standby's database system")
						}
						for _, want := range wants {
							if (n == 0 || strings.Contains(msg, "segment in progress")) && !strings.Contains(msg, want) {
								t.Errorf("read %d: verify: %v, want it to say %q", n, err, want)
							}
						}
					}
				})
			}
		}
	})
}
