package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRun_RestorePointOtherTimeline: the automatic choice for
// --target-name scans the newest segments of every timeline (the target
// timeline depends on the backup it chooses), so the newest point of the
// name can be on a timeline recovery along the target timeline's path
// never replays: here timeline 1 after the fork to timeline 2 (an old
// primary's history after a failover; timeline 2 is the latest). Once the
// backup and its path are known, the point the choice went by must be on
// that path; else the newest point along it is the one recovery stops at.
//   - NotOnPath: timeline 2 has no point of the name. Before, the restore
//     went ahead, and PostgreSQL replays all of timeline 2 and stops with
//     "recovery ended before configured recovery target was reached";
//     now it is refused before anything is written, naming timeline 1.
//   - OnPathToo: timeline 2 has one, before timeline 1's. Before, the
//     restore was refused as "made more than once", naming timeline 2's
//     point as the earlier one (the one recovery stops at, and the only
//     one it replays); now it restores, stopping at timeline 2's point.
//   - NotOnPathTimeline1: with --target-timeline 1, as the refusal
//     advises, timeline 1's point is on the path and is restored.
func TestRun_RestorePointOtherTimeline(t *testing.T) {
	const segSize = hostile.SegmentSize
	const switchAt = 4*segSize + 100000
	hist2 := fmt.Sprintf("1\t0/%X\tno recovery target specified\n", switchAt)
	for _, tc := range []struct {
		name     string
		onPath   bool   // timeline 2 has a point of the name too
		timeline string // --target-timeline
		wantErr  string
	}{
		{"NotOnPath", false, "", "found on timeline 1"},
		{"NotOnPathTimeline1", false, "1", ""}, // as the refusal advises
		{"OnPathToo", true, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := hostileArchive(t)
			st := hostile.Put(t, a, hostile.Benign())
			pushFile(t, a, "00000002.history", []byte(hist2), 7000000000000000001)
			// Timeline 1 goes on past the fork; its point is the newest.
			one := waltest.NewWriter(segSize, 8192, 1, 4*segSize)
			one.Fill(5*segSize + segSize/2)
			one.RestorePoint("p")
			one.Fill(6*segSize - 100)
			segmentsOf(t, a, one, 1, 4, segSize)
			two := waltest.NewWriter(segSize, 8192, 2, 4*segSize)
			two.Fill(4*segSize + segSize/2)
			if tc.onPath {
				two.RestorePoint("p")
			}
			two.Fill(6*segSize - 100)
			segmentsOf(t, a, two, 2, 4, segSize)
			e := hostile.NewEnv(t)
			before := e.Snapshot(t)
			_, err := Run(context.Background(), Options{
				Archive: a, TargetDir: e.Target(), Target: Target{Name: "p", Timeline: tc.timeline},
				RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop(),
			})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("restore of %s to the point on the path: %v", st.Name, err)
				}
				return
			}
			if !errors.Is(err, ErrBadTarget) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("restore to a point only timeline 1 holds past the fork = %v; want ErrBadTarget naming %s", err, tc.wantErr)
			}
			t.Logf("refused: %v", err)
			if after := e.Snapshot(t); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("the refused restore wrote into the target: %v", after)
			}
		})
	}
}

// TestRun_RestorePointOtherTimelineReal: TestRun_RestorePointOtherTimeline
// on a real cluster (15, 1 MiB segments): a standby made after the backup
// is promoted (timeline 2, the latest), then the old primary, still
// archiving into the same place, makes the point on timeline 1. Recovery
// to the latest timeline never replays it: the restore is refused,
// naming timeline 1; with --target-timeline 1, as the refusal advises,
// the restored cluster stops at the point. Before, the first restore
// went ahead (err = <nil>), and PostgreSQL replays all of timeline 2
// and stops with FATAL.
func TestRun_RestorePointOtherTimelineReal(t *testing.T) {
	if testing.Short() {
		t.Skip("real cluster")
	}
	const major = 15
	ctx := context.Background()
	src, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: major, WALSegmentSizeMB: 1})
	a := archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: "zstd"})
	src.Exec(t, "create table t (id int primary key)")
	takeBackup(ctx, t, src, a, basebackup.ModeStream, false)
	src.Exec(t, "insert into t values (1)")
	src.SwitchArchived(t, walDir)
	standby := pgtest.StartColdStandby(t, src)
	standby.WaitTrue(t, time.Minute, "select count(*) = 1 from t")
	standby.Promote(t)
	standby.WaitRecoveryDone(t, time.Minute)
	standby.Exec(t, "insert into t values (20)")
	standby.SwitchArchived(t, walDir)
	// The old primary goes on on timeline 1 and makes the point there.
	src.Exec(t, "insert into t values (2)")
	point := src.QueryString(t, "select pg_create_restore_point('p')::text")
	src.Exec(t, "insert into t values (3)")
	archivetest.StoreArchivedWAL(t, src, walDir, a)
	archivetest.StoreArchivedWAL(t, standby, walDir, a)
	restoreCmd := "cp " + decodeWAL(t, a) + "/%f %p"

	dir := filepath.Join(pgtest.TempDir(t), "data")
	_, err := Run(ctx, Options{Archive: a, TargetDir: dir, Target: Target{Name: "p"}, RestoreCommand: restoreCmd, Logger: zerolog.Nop()})
	if !errors.Is(err, ErrBadTarget) || !strings.Contains(err.Error(), "found on timeline 1") {
		t.Fatalf("restore to p, made at %s on timeline 1 after timeline 2 began: err = %v; want it refused naming timeline 1", point, err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the refused restore wrote %s: %v", dir, err)
	}
	_, err = Run(ctx, Options{Archive: a, TargetDir: dir, Target: Target{Name: "p", Timeline: "1"}, RestoreCommand: restoreCmd, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatalf("restore to p with --target-timeline 1: %v", err)
	}
	c := pgtest.StartDataDir(t, major, dir, nil)
	c.WaitRecoveryDone(t, 2*time.Minute)
	if got := c.QueryString(t, "select string_agg(id::text, ',' order by id) from t"); got != "1,2" {
		t.Errorf("restored to p on timeline 1: rows %s, want 1,2", got)
	}
}
