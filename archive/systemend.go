package archive

import (
	"context"
	"fmt"

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
// envelope's HMAC is checked at EOF) never ends a system's WAL. Someone
// who can write the bucket could still store another system's WAL
// (encrypted with a key this site knows, from a site sharing the key
// pair) after a .partial, or delete the WAL after it: recovery then ends
// there, as it would at the end of the archive, where deleting the WAL
// after it has the same effect.

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
// system, no WAL is stored after it on its timeline, the first that is
// names system too, or either object cannot be read whole (damaged,
// tampered with, or no private key). An error only for ctx's end.
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
	var next WALFile
	for _, files := range []map[string]WALFile{l.Segments, l.Partials} {
		for n, f := range files {
			if wal.SegmentTimeline(n) == tli && n > name && (next.Name == "" || n < next.Name[:24]) {
				next = f
			}
		}
	}
	if next.Name == "" {
		return nil, nil
	}
	// The next object's first page alone first: where it is the
	// system's own (a gap, which a standby asks about every few seconds)
	// that is one short read, not two whole objects.
	if h, err := next.firstPage(ctx, false); err != nil || h.SystemID == system {
		return nil, ctx.Err()
	}
	own, err := p.firstPage(ctx, true)
	if err != nil || own.SystemID != system {
		return nil, ctx.Err()
	}
	other, err := next.firstPage(ctx, true)
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
