package restore

import (
	"context"

	"github.com/hoardbackup/hoard/archive"
)

// latestFor is archive.Archive.LatestTimeline over the history files in
// h: the timeline recovery_target_timeline 'latest' reaches from start
// for the cluster of database system system, and wal-fetch's refusal of
// another system's history file on the way.
func latestFor(ctx context.Context, a *archive.Archive, h historyIndex, start uint32, system uint64, from archive.ReplayStart) (tli uint32, refused error, err error) {
	return a.LatestTimeline(ctx, func(t uint32) bool { return h[t] != nil }, start, system, from)
}
