package restore

import (
	"context"
	"fmt"

	"github.com/hoardbackup/hoard/archive"
)

// checkPromotion refuses a restore of b, whose recovery ends on timeline
// tli, that PostgreSQL could not promote: to choose its new timeline,
// promotion asks restore_command for the history files of the timelines
// after tli, one after another while they exist (findNewestTimeLine), and
// wal-fetch refuses one bound to another database system above the
// timeline it reads for (exit 255), on which PostgreSQL stops, unless the
// archive holds no WAL of b's system on that file's timeline or later
// (archive.IgnoreOtherHistory; latestFor): then it is absent to
// PostgreSQL, whose probe stops there. After a pg_upgrade into the same
// site, a restore of the upgraded cluster's backup meets the old
// cluster's 00000002.history there, which is absent to it while the
// upgraded cluster has no WAL on timeline 2 or later. Only where hoard
// writes wal-fetch as restore_command and the restored server promotes
// at the end of recovery (a primary, without a target or with promote):
// a standby, or a server that pauses or shuts down at the target,
// promotes later if ever, by someone who then sees PostgreSQL's error.
func (o *Options) checkPromotion(ctx context.Context, a *archive.Archive, b *archive.BackupInfo, tli uint32) error {
	promotes := !o.Standby && (o.Target.IsZero() || o.TargetAction == "" || o.TargetAction == "promote")
	if o.RestoreCommand != "" || o.WALFetch == nil || !promotes {
		return nil
	}
	h, err := listHistories(ctx, a)
	if err != nil {
		return err
	}
	_, refused, err := latestFor(ctx, a, h, tli, BackupSystem(b), b.ReplayStart())
	if err != nil || refused == nil {
		return err
	}
	return fmt.Errorf("backup %s: recovery ends on timeline %d, and PostgreSQL, promoting, asks for the history files of "+
		"the timelines after it to choose its new one; wal-fetch refuses this one (exit 255), so PostgreSQL would stop "+
		"instead of promoting: %w", b.Name, tli, refused)
}
