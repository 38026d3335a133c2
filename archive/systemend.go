package archive

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// A pg_upgrade in place into the same prefix (the new prefix not set
// first): the old cluster's WAL ends with its shutdown checkpoint in its
// last segment, which it never finished, stored as <segment>.partial,
// and the upgraded cluster's WAL follows in the same prefix, on the same
// timeline (pg_upgrade starts it on timeline 1, beyond the old one's).
// That .partial is no stand-in (StandIn: WAL is stored after it), so
// recovery of an old backup would stop at the end of the segment before
// it, at what looks like a gap that no copy of the old cluster's WAL
// could fill: the old system has no more WAL.
//
// SystemEndAt tells this case apart from a gap: the .partial's first
// page names the reader's system, and the first WAL stored after it on
// its timeline names another. For a reader of that system the .partial
// then stands in for its segment as at the end of the archive (wal-fetch
// delivers it, restore and verify count it as the end of the system's
// WAL). Both objects are read whole before their first pages count, so
// that a page whose bytes someone without the key altered (the pghoa1
// envelope's HMAC is checked at EOF) never ends a system's WAL.
//
// Someone who can write the bucket could still delete segment N where
// its .partial is stored too (the daemon's periodic uploads leave one)
// and store under the name N+1 a copy of a segment of another system (one
// encrypted with a key this site knows, from a site sharing the key
// pair: it decodes and authenticates here), while the system's own
// segments N+2, N+3, ... stay stored. Ending recovery at N would then
// silently skip WAL that exists, worse than deleting the tail. So any
// segment or .partial stored after the .partial on its timeline, or on
// a later one, whose first page names the reader's system vetoes the
// end (OwnWALAfter), and the gap is reported as before. pg_upgrade
// leaves none: the upgraded cluster's WAL after N is all its own. That
// scan runs only once an end is otherwise found, reads first pages
// only, and stops at the first of the system's.
//
// So after a real pg_upgrade it reads the first page of every WAL file
// the upgraded cluster stored there, each time: one Stat and one GET of
// the object's first FirstBlockRange bytes apiece (firstPage), not the
// whole object, up to ownWALReads at once (ownWALIn). Those pages are
// not authenticated, and need not be: one altered by someone without
// the key to name another system (AES-CTR lets him flip its bits)
// belonged to an object that no longer authenticates, which wal-fetch
// and restore would refuse, so that WAL is lost as if deleted, and
// deleting it ends the system's WAL at N anyway. Fewer reads would take
// trusting something cheaper than the first page: WAL objects carry no
// authenticated system identifier in their metadata, and a listing has
// no metadata at all.

// SystemEnd is where the WAL of database system System ends in an
// archive in which another system's WAL follows it on the same timeline.
type SystemEnd struct {
	// Partial is the .partial that holds System's last WAL, standing in
	// for its segment.
	Partial WALFile
	System  uint64
	// Next is the first segment or .partial stored after it on its
	// timeline, whose first page names NextSystem.
	Next       WALFile
	NextSystem uint64
}

// String describes the end for people.
func (e *SystemEnd) String() string {
	return fmt.Sprintf("the WAL of database system %d ends in %s (its last segment, which it never finished), "+
		"and %s, the next WAL stored on its timeline, is of database system %d: another cluster's WAL follows it "+
		"in the same prefix, as after pg_upgrade into the same site (set a new backup_sites.<site>.prefix for "+
		"the upgraded cluster)", e.System, e.Partial.Key, e.Next.Key, e.NextSystem)
}

// SystemEndAt returns the SystemEnd in l at the segment name (no suffix)
// for database system system, nil when there is none: system is 0, the
// complete segment is stored, no .partial of it is, a timeline above its
// own has a history file, the .partial's first page names another
// system, no WAL is stored after it on its timeline, any WAL stored
// after it on its timeline or a later one names system (OwnWALAfter),
// or either object cannot be read whole (damaged, tampered with, or no
// private key). An error only for ctx's end, and for a read that
// l.StorageFailed takes for the storage's failure.
//
// Only a first page naming system, read without authenticating it, is
// needed to veto an end: a forged one makes hoard report a gap, as
// deleting the WAL after the .partial would; accepting one needs both
// objects read whole.
func (l *WALListing) SystemEndAt(ctx context.Context, name string, system uint64) (*SystemEnd, error) {
	p, ok := l.Partials[name]
	if _, done := l.Segments[name]; !ok || done || system == 0 || !wal.IsSegmentName(name) {
		return nil, nil
	}
	tli := wal.SegmentTimeline(name)
	for t := range l.Histories {
		if t > tli {
			return nil, nil
		}
	}
	later := l.walAfter(name)
	if len(later) == 0 || wal.SegmentTimeline(later[0].Name[:24]) != tli {
		return nil, nil
	}
	next := later[0]
	// The first pages alone first, next's first: where next is the
	// system's own (a gap, which a standby asks about every few seconds)
	// that is one short read, not two whole objects. Any later WAL of
	// the system vetoes the end: it is not where the system's WAL ends.
	if own, err := ownWALIn(ctx, later, system, l.StorageFailed); own != "" || err != nil {
		return nil, err
	}
	own, err := p.firstPage(ctx, true)
	if err != nil && l.StorageFailed != nil && l.StorageFailed(err) {
		return nil, fmt.Errorf("first page of %s: %w", p.Key, err)
	}
	if err != nil || own.SystemID != system {
		return nil, ctx.Err()
	}
	other, err := next.firstPage(ctx, true)
	if err != nil && l.StorageFailed != nil && l.StorageFailed(err) {
		return nil, fmt.Errorf("first page of %s: %w", next.Key, err)
	}
	if err != nil || other.SystemID == system {
		return nil, ctx.Err()
	}
	return &SystemEnd{Partial: p, System: system, Next: next, NextSystem: other.SystemID}, nil
}

// SystemOf returns the database system the first page of f, a segment or
// .partial, names, after reading f whole (see SystemEndAt).
func SystemOf(ctx context.Context, f WALFile) (uint64, error) {
	h, err := f.firstPage(ctx, true)
	if err != nil {
		return 0, fmt.Errorf("first page of %s: %w", f.Key, err)
	}
	return h.SystemID, nil
}

// OwnWALAfter returns the key of the first segment or .partial in l after
// the segment name (no suffix) on its timeline, or on a later timeline,
// whose first page names database system system, read without
// authenticating it; "" when there is none. Such WAL says that system's
// WAL does not end before it. A first page that cannot be read counts as
// system's (it may be); one deleted since the listing does not. Reads
// stop at the end of the window holding the first found (ownWALIn). An
// error only for ctx's end, and for a read that l.StorageFailed takes for
// the storage's failure.
func (l *WALListing) OwnWALAfter(ctx context.Context, name string, system uint64) (string, error) {
	return ownWALIn(ctx, l.walAfter(name), system, l.StorageFailed)
}

// ownWALReads bounds the first pages ownWALIn reads at once.
const ownWALReads = 16

// ownWALIn is OwnWALAfter over files, in order. The first pages are read
// in windows of files, each read at once and whole before the next: the
// first two one at a time (where the next file is the system's own, a
// gap a standby asks about every few seconds, that is one read), then
// windows doubling up to ownWALReads. After a pg_upgrade every file is
// read, so the reads cost round trips of the storage divided by up to
// ownWALReads; where the system's own is found, at most the rest of its
// window is read in vain. The answer is the first of the system's in
// order, as reading one at a time would give. A read that failed (not
// nil) takes for the storage's failure, met before the first of the
// system's, is returned as the error: the answer is not known.
func ownWALIn(ctx context.Context, files []WALFile, system uint64, failed func(error) bool) (string, error) {
	for i := 0; i < len(files); {
		window := files[i:min(i+min(max(i, 1), ownWALReads), len(files))]
		own := make([]bool, len(window))
		errs := make([]error, len(window))
		var wg sync.WaitGroup
		for j, f := range window {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h, err := f.firstPage(ctx, false)
				if err != nil && failed != nil && failed(err) {
					errs[j] = fmt.Errorf("first page of %s: %w", f.Key, err)
					return
				}
				// A first page that cannot be read could be the
				// system's; one deleted since the listing is not.
				own[j] = err != nil && !errors.Is(err, storage.ErrNotFound) || err == nil && h.SystemID == system
			}()
		}
		wg.Wait()
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		for j := range window {
			if errs[j] != nil {
				return "", errs[j]
			}
			if own[j] {
				return window[j].Key, nil
			}
		}
		i += len(window)
	}
	return "", nil
}

// walAfter returns the segments and .partials of l after the segment
// name (no suffix) on its timeline, then those of later timelines, in
// name order (a segment before its .partial).
func (l *WALListing) walAfter(name string) []WALFile {
	tli := wal.SegmentTimeline(name)
	var files []WALFile
	for _, m := range []map[string]WALFile{l.Segments, l.Partials} {
		for n, f := range m {
			if t := wal.SegmentTimeline(n); t > tli || t == tli && n[8:] > name[8:] {
				files = append(files, f)
			}
		}
	}
	slices.SortFunc(files, func(x, y WALFile) int { return strings.Compare(x.Name, y.Name) })
	return files
}
