package restore

import (
	"context"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/wal"
)

// TestRecoveryPathIn_ServerHistory: the daemon hands RecoveryPathIn the
// history its server gave it (SetServerHistory). For a backup of that
// system, the path to a timeline on it is the server's, whatever the
// archived history file says (one replaced by someone who writes the
// bucket: another switch point); for a backup of another system, or
// recording none, the archived file is read, as before.
func TestRecoveryPathIn_ServerHistory(t *testing.T) {
	ctx := context.Background()
	const segSize = 1 << 20
	const sys, other = 7000000000000000001, 7000000000000000002
	a := memArchive(t, false)
	pushFile(t, a, "00000002.history", []byte("1\t0/900000\tno recovery target specified\n"), sys)
	backup := func(system uint64) *archive.BackupInfo {
		b := &archive.BackupInfo{
			Name: "b", Format: archive.FormatBBv2,
			StartWALSegment: "000000010000000000000001", EndWALSegment: "000000010000000000000001",
			StartLSN: segSize + 0x28, EndLSN: segSize + 0x100,
			StartTimeline: 1, EndTimeline: 1, WALSegmentSize: segSize,
		}
		if system != 0 {
			b.SystemID = strconv.FormatUint(system, 10)
		}
		return b
	}
	server := wal.History{{Timeline: 1}, {Timeline: 2, Begin: 0x300000}}
	stored := wal.History{{Timeline: 1}, {Timeline: 2, Begin: 0x900000}}
	for _, tc := range []struct {
		name   string
		system uint64
		want   wal.History
	}{
		{"OK", sys, server},
		{"OtherSystem", other, wal.History{{Timeline: 1}}}, // the archived file is sys's: not another's
		{"NoSystem", 0, stored},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs, err := ListHistories(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			hs.SetServerHistory(ServerHistory{System: sys, Path: server})
			got, err := RecoveryPathIn(ctx, a, hs, backup(tc.system), "latest")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("RecoveryPathIn (-want +got):\n%s", diff)
			}
		})
	}
	// An ancestor timeline's history is the server path's prefix.
	h := ServerHistory{System: sys, Path: wal.History{{Timeline: 1}, {Timeline: 2, Begin: 0x300000}, {Timeline: 3, Begin: 0x500000}}}
	if got, want := h.pathOf(2, sys), server; !cmp.Equal(got, want) {
		t.Errorf("pathOf(2) = %v, want %v", got, want)
	}
	if got := h.pathOf(4, sys); got != nil {
		t.Errorf("pathOf(4) = %v, want nil (not on the path)", got)
	}
}
