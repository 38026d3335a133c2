package archive

import (
	"context"
	"errors"

	"github.com/hoardbackup/hoard/storage"
)

// LatestTimeline returns the timeline recovery_target_timeline 'latest'
// reaches from start for the cluster of database system system (0: not
// known), as PostgreSQL's probe (findNewestTimeLine) does through
// wal-fetch: upwards while the next history file exists (has: the
// timelines with one stored, ListHistories), and stopping below another
// system's history file that wal-fetch treats as absent
// (IgnoreOtherHistory: after a pg_upgrade into the same site, the old
// cluster's history files above the upgraded cluster's timeline where it
// has no WAL there; bound to the old system, or in a site without keys
// claiming it: OtherSystemHistories). refused is wal-fetch's refusal of
// the first other system's history file the probe reaches that it does
// not treat as absent (PostgreSQL stops on it), with tli the timeline the
// probe reaches beyond it; nil when there is none. from bounds where
// recovery replays from (a backup's start; zero: no bound).
//
// Restore (its recovery path), verify, and a standby backup's wait for
// its WAL (the WAL its recovery reads) ask it.
func (a *Archive) LatestTimeline(ctx context.Context, has func(tli uint32) bool, start uint32, system uint64, from ReplayStart) (tli uint32, refused error, err error) {
	tli = start
	for has(tli + 1) {
		tli++
	}
	if tli == start || system == 0 {
		return tli, nil, nil
	}
	others, err := a.OtherSystemHistories(ctx, system, start)
	if err != nil {
		return 0, nil, err
	}
	// The probe meets the first of them (by timeline) at or below tli,
	// if any: absent, it stops below it; refused, PostgreSQL stops.
	if len(others) == 0 || others[0].Timeline > tli {
		return tli, nil, nil
	}
	if ierr := a.IgnoreOtherHistory(ctx, others[0], start, from); !errors.Is(ierr, storage.ErrNotFound) {
		return tli, ierr, nil
	}
	return others[0].Timeline - 1, nil, nil
}
