package verify

import (
	"fmt"
	"testing"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRun_WALEndAfterUpgrade: a site holding backups from before and
// after a pg_upgrade into it (without keys, the files claiming their
// writer's system): the old cluster reached timeline 2 (its
// 00000002.history and segments 3 to 10 there), the upgraded one is on
// timeline 1 from segment 0x20 on, beyond all of it, with its backup. The
// report's WAL end is the upgraded cluster's newest segment, where a
// restore of the newest backup now ends (its recovery treats the old
// 00000002.history as absent), with and without --full. Before, it was
// the old cluster's last segment on timeline 2, stored before the
// upgrade, its age growing for ever as if no WAL had been stored since,
// while the same report's newest segment and the backups' reaches said
// otherwise. The old backup still reaches the end of its timeline 2.
func TestRun_WALEndAfterUpgrade(t *testing.T) {
	a := archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: compress.Zstd})
	archivetest.UpgradedSiteWAL(t, a, segSize)
	putBackupOf(t, a, "old", 1, 1, 2, t0.Add(-48*3600e9), fmt.Sprint(archivetest.UpgradeOldSystem))
	putBackupOf(t, a, "new", 1, 0x20, 0x21, t0, fmt.Sprint(archivetest.UpgradeNewSystem))
	for _, full := range []bool{false, true} {
		rep := run(t, a, full)
		if !rep.OK() {
			t.Errorf("full=%v: not OK:\n%s", full, problems(rep))
		}
		want := WALEnd{File: seg(1, 0x22), Timeline: 1, LSN: pglogrepl.LSN(0x23 * segSize).String()}
		if e := rep.WALEnd; e == nil || e.File != want.File || e.Timeline != want.Timeline || e.LSN != want.LSN || e.Partial {
			t.Errorf("full=%v: WAL end %+v, want %s at %s on timeline %d (newest segment %s)", full, e, want.File, want.LSN, want.Timeline, rep.Newest)
		}
		if got, want := rep.Backups[0].ReachSegment, seg(2, 10); got != want {
			t.Errorf("full=%v: the old backup reaches %s, want %s", full, got, want)
		}
		if got, want := rep.Backups[1].ReachSegment, seg(1, 0x22); got != want {
			t.Errorf("full=%v: the upgraded cluster's backup reaches %s, want %s", full, got, want)
		}
	}
}
