package restore

import (
	"context"

	"github.com/hoardbackup/hoard/archive"
)

// latestFor is archive.Archive.LatestTimeline over the history files in
// hs: the timeline recovery_target_timeline 'latest' reaches from start
// for the cluster of database system system, and wal-fetch's refusal of
// another system's history file on the way. The other systems' history
// files above start are found once for each system and start in hs
// (Histories.others).
func latestFor(ctx context.Context, a *archive.Archive, hs *Histories, start uint32, system uint64, from archive.ReplayStart) (tli uint32, refused error, err error) {
	others := func(ctx context.Context, system uint64, above uint32) ([]*archive.OtherSystemHistoryError, error) {
		return hs.others(ctx, a, system, above)
	}
	files := func(ctx context.Context) ([]archive.WALFile, error) { return hs.walFiles(ctx, a) }
	return a.LatestTimelineWith(ctx, func(t uint32) bool { return hs.h[t] != nil }, others, files, start, system, from)
}

// walFiles returns a.ListWAL(ctx), listed once in hs: where another
// system's history file stops the probe (after a pg_upgrade into the
// same site), whether the archive holds the system's own WAL behind it
// is looked for in that listing for each backup, which listed xlog/ again
// for each backup otherwise. An error is not kept (the next backup asks
// again).
func (hs *Histories) walFiles(ctx context.Context, a *archive.Archive) ([]archive.WALFile, error) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.wal != nil {
		return hs.wal, nil
	}
	files, err := a.ListWAL(ctx)
	if err != nil {
		return nil, err
	}
	hs.wal = files
	if hs.wal == nil {
		hs.wal = []archive.WALFile{}
	}
	return hs.wal, nil
}

// othersKey is an argument of archive.Archive.OtherSystemHistories.
type othersKey struct {
	system uint64
	above  uint32
}

// others returns a.OtherSystemHistories(ctx, system, above), asked once
// for each system and above in hs: a listing of timeline/ and a Stat of
// each later history file, again for each backup of a run after a
// failover otherwise. A file deleted or replaced between two backups of
// a run is not seen: the run judges them all against one listing. An
// error is not kept (the next backup asks again).
func (hs *Histories) others(ctx context.Context, a *archive.Archive, system uint64, above uint32) ([]*archive.OtherSystemHistoryError, error) {
	k := othersKey{system, above}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if o, ok := hs.othersOf[k]; ok {
		return o, nil
	}
	o, err := a.OtherSystemHistories(ctx, system, above)
	if err != nil {
		return nil, err
	}
	if hs.othersOf == nil {
		hs.othersOf = map[othersKey][]*archive.OtherSystemHistoryError{}
	}
	hs.othersOf[k] = o
	return o, nil
}
