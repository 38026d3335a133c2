package verify

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/hoardbackup/hoard/archive"
)

// segments decodes every stored segment on the chains, once each, and
// returns the damaged ones with the problem found. systems[i] is the
// system identifier of chains[i]'s backup (0: unknown, which says nothing
// of its segments): a segment must name it, unless the chains holding it
// disagree (pg_upgrade into the same site), as wal-fetch requires of what
// it delivers.
func (c *checker) segments(ctx context.Context, idx *walIndex, chains []*Chain, systems []uint64, parallel int) (map[string]string, error) {
	system := map[string]uint64{}
	mixed := map[string]bool{}
	seen := map[string]bool{}
	var names []string
	for i, ch := range chains {
		if ch == nil {
			continue
		}
		for _, n := range ch.Segments {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
			switch id, ok := system[n]; {
			case systems[i] == 0:
			case !ok:
				system[n] = systems[i]
			case id != systems[i]:
				mixed[n] = true
			}
		}
	}
	for n := range mixed {
		delete(system, n)
	}
	bad := map[string]string{}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	for _, name := range names {
		if gctx.Err() != nil {
			break
		}
		f := idx.file(name)
		f.Archive = marking(f.Archive)
		g.Go(func() error {
			err := f.CheckSystem(gctx, system[name])
			if gctx.Err() != nil {
				return gctx.Err()
			}
			if err != nil && storageFailed(err) {
				return unchecked("WAL segment", f.Key, err)
			}
			if err != nil {
				c.log.Debug().Err(err).Str("segment", name).Msg("WAL segment damaged")
				mu.Lock()
				bad[name] = fmt.Sprintf("WAL segment %s: %v", f.Key, err)
				if t, ok := errors.AsType[*archive.TruncatedSegmentError](err); ok {
					bad[name] += "; " + t.AcceptHint(name)
				}
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return bad, nil
}

// upgraded is the newest backup that records its system identifier: the
// cluster the site backs up now.
type upgraded struct {
	system   uint64
	timeline uint32 // its start timeline
	rep      *BackupReport
	// from is a lower bound of where the recovery of each backup of
	// system starts (archive.LowestReplayStart): its own WAL below it is
	// not looked for (archive.IgnoreOtherHistory).
	from archive.ReplayStart
}

// histories decodes every stored timeline history file and parses it,
// refusing one signed for another system than newest's (nil: not
// checked), unless its timeline is at most newest's, or above it where
// the archive holds no WAL of newest's system on its timeline or later:
// such a one (left by the old cluster, where one of a new system was put
// on its timeline, or upgraded with pg_upgrade into the site) is absent
// to wal-fetch restoring newest's system, and is noted in newest's
// report (archive.IgnoreOtherHistory, bounded by where the recovery of
// the oldest backup of newest's system starts: after a pg_upgrade into
// the same site, the old cluster's segments on its later timelines lie
// below it, and are not read).
func (c *checker) histories(ctx context.Context, idx *walIndex, rep *Report, newest *upgraded) error {
	var system uint64
	var tli uint32
	var from archive.ReplayStart
	if newest != nil {
		system, tli, from = newest.system, newest.timeline, newest.from
	}
	for _, f := range idx.Histories {
		f.Archive = marking(f.Archive)
		_, err := f.ReadHistory(ctx, system)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil && storageFailed(err) {
			return unchecked("timeline history", f.Key, err)
		}
		if ig, ok := errors.AsType[*archive.IgnoredHistoryError](c.a.IgnoreOtherHistory(ctx, err, tli, from)); ok {
			newest.rep.Notes = append(newest.rep.Notes, "timeline history: "+ig.Error())
			continue
		}
		if err != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("timeline history %s: %v", f.Key, err))
		}
	}
	return nil
}
