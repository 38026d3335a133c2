package basebackup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// TestWaitStandbyWAL_AfterUpgrade: a site holding two systems, before
// and after a pg_upgrade into it (without keys, the files claiming their
// writer's system): the old cluster reached timeline 2 (its
// 00000002.history and segments 3 to 10 there), the upgraded one is on
// timeline 1 from segment 0x20 on. A backup of the upgraded cluster's
// standby ends in segment 0x23, which is not stored: the wait for its WAL
// must not end (ErrWALNotArchived once WALTimeout passes). Before, the
// old cluster's timeline 2, above the backup's, counted as its WAL
// archived (a promotion), so the backup was reported complete although
// its WAL was not archived. Once 0x23's .partial holding the end is
// stored, or 0x23 itself, the wait ends.
func TestWaitStandbyWAL_AfterUpgrade(t *testing.T) {
	ctx := context.Background()
	const segSize = 16 << 20
	sysNew := archivetest.UpgradeNewSystem
	seg := func(tli uint32, no uint64) string { return wal.Segment{Timeline: tli, No: no}.Name(segSize) }
	a := archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: compress.Zstd})
	archivetest.UpgradedSiteWAL(t, a, segSize)
	info := &archive.BackupInfo{
		Name:            "standby",
		StartWALSegment: seg(1, 0x22),
		EndWALSegment:   seg(1, 0x23),
		StartLSN:        wal.Segment{No: 0x22}.StartLSN(segSize) + 0x28,
		EndLSN:          wal.Segment{No: 0x23}.StartLSN(segSize) + 0x100,
		StartTimeline:   1,
		EndTimeline:     1,
		WALSegmentSize:  segSize,
		SystemID:        fmt.Sprint(sysNew),
	}
	o := Options{Archive: a, WALTimeout: 1500 * time.Millisecond}
	err := waitStandbyWAL(ctx, o, zerolog.Nop(), info)
	if !errors.Is(err, ErrWALNotArchived) {
		t.Fatalf("wait with segment %s not stored: %v, want ErrWALNotArchived", seg(1, 0x23), err)
	}
	// The .partial of 0x23 holding the backup's end: restore and
	// wal-fetch deliver it to the upgraded cluster's recovery, the old
	// 00000002.history there notwithstanding
	// (archive.Archive.RecoveryListing), so it counts.
	last := waltest.SegmentOf(t, seg(1, 0x23), segSize, 0, sysNew)
	p := filepath.Join(t.TempDir(), seg(1, 0x23)+wal.PartialSuffix)
	if err := os.WriteFile(p, last[:300000], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := a.PutPartialWAL(ctx, p, archive.PushOptions{SystemID: sysNew}); err != nil {
		t.Fatal(err)
	}
	if err := waitStandbyWAL(ctx, o, zerolog.Nop(), info); err != nil {
		t.Fatalf("wait with the .partial of %s stored, holding the backup's end: %v", seg(1, 0x23), err)
	}
	archivetest.PushWAL(t, a, seg(1, 0x23), last, sysNew)
	if err := waitStandbyWAL(ctx, o, zerolog.Nop(), info); err != nil {
		t.Fatalf("wait with segment %s stored: %v", seg(1, 0x23), err)
	}
}
