package restore

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/wal"
)

// TestRecoveryTail_AfterUpgrade: a site holding two systems, before and
// after a pg_upgrade into it: the old cluster reached timeline 2 (its
// 00000002.history and WAL there), the upgraded one is on timeline 1 from
// segment 0x20 on, its segment in progress 0x23 stored as a .partial that
// holds the end of a backup of it (a standby's). A restore of that backup
// counts the .partial as the end of the archive, as wal-fetch delivers it
// to the restored cluster (archive's TestFetchWAL_UpgradedTail): the
// backup's WAL is there. Before, the old cluster's timeline 2 kept the
// .partial from standing in, and the restore refused the backup, its WAL
// "not archived".
func TestRecoveryTail_AfterUpgrade(t *testing.T) {
	testio.WithAndWithoutKeys(t, testRecoveryTailAfterUpgrade)
}

func testRecoveryTailAfterUpgrade(t *testing.T, keys bool) {
	ctx := context.Background()
	const segSize = 1 << 20
	const sysOld, sysNew = 7000000000000000001, 7000000000000000002
	seg := func(tli uint32, no uint64) string { return wal.Segment{Timeline: tli, No: no}.Name(segSize) }
	a := memArchive(t, keys)
	a.Codec.RequireEncryption = keys
	for _, s := range []struct {
		name   string
		system uint64
	}{{seg(1, 1), sysOld}, {seg(1, 2), sysOld}, {seg(2, 3), sysOld}, {seg(2, 4), sysOld},
		{seg(1, 0x20), sysNew}, {seg(1, 0x21), sysNew}, {seg(1, 0x22), sysNew}} {
		if s.name == seg(2, 3) {
			pushFile(t, a, "00000002.history", []byte("1\t0/200000\tno recovery target specified\n"), sysOld)
		}
		pushFile(t, a, s.name, waltest.SegmentOf(t, s.name, segSize, 1, s.system), s.system)
	}
	p := filepath.Join(t.TempDir(), seg(1, 0x23)+wal.PartialSuffix)
	if err := os.WriteFile(p, waltest.SegmentOf(t, seg(1, 0x23), segSize, 1, sysNew)[:300000], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := a.PutPartialWAL(ctx, p, archive.PushOptions{SystemID: sysNew}); err != nil {
		t.Fatal(err)
	}
	b := &archive.BackupInfo{
		Name: "standby", Format: archive.FormatBBv2,
		StartWALSegment: seg(1, 0x22), EndWALSegment: seg(1, 0x23),
		StartLSN: 0x22*segSize + 0x28, EndLSN: 0x23*segSize + 0x100,
		StartTimeline: 1, EndTimeline: 1, WALSegmentSize: segSize,
		SystemID: strconv.FormatUint(sysNew, 10),
	}
	stored, err := a.ListStoredWAL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tail, err := recoveryTail(ctx, a, stored, b)
	if err != nil || tail == nil || tail.Segment != seg(1, 0x23) || tail.End < b.EndLSN || tail.End > 0x23*segSize+300000 {
		t.Fatalf("recoveryTail = %+v, %v; want the .partial of %s, ending within its 300000 bytes, after %s", tail, err, seg(1, 0x23), b.EndLSN)
	}
	w, err := listWAL(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	path, err := RecoveryPath(ctx, a, b, "latest")
	if err != nil || path.Timeline() != 1 {
		t.Fatalf("RecoveryPath = %v, %v; want timeline 1", path, err)
	}
	last, gap, err := checkWALGap(w, tail, b, path, 0)
	if err != nil || gap != nil || last != seg(1, 0x23)+wal.PartialSuffix {
		t.Errorf("checkWALGap = %q, %v, %v; want the backup's WAL through %s.partial", last, gap, err, seg(1, 0x23))
	}
}
