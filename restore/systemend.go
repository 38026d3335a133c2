package restore

import (
	"context"
	"fmt"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/wal"
)

// SystemEndTail returns, for a WAL gap after backup b's end (first, the
// first missing segment), the .partial of first as the tail that ends
// the WAL of b's database system (system: 0, not known, none does),
// when another system's WAL follows it
// on its timeline (archive.WALListing.SystemEndAt: pg_upgrade into the
// same prefix), with that end; nil when it does not. Recovery of b then
// ends at the end of the .partial's data, as at the end of the archive:
// no WAL of b's system is lost, so it is not a gap. A .partial whose
// content is not WAL recovery could read is no such end.
func SystemEndTail(ctx context.Context, l *archive.WALListing, b *archive.BackupInfo, system uint64, first string) (*PartialTail, *archive.SystemEnd, error) {
	e, err := l.SystemEndAt(ctx, first, system)
	if e == nil || err != nil {
		return nil, nil, err
	}
	segSize := b.SegmentSize()
	seg, err := wal.ParseSegmentName(first, segSize)
	if err != nil {
		return nil, nil, err
	}
	n, err := l.PartialDataSize(ctx, e.Partial)
	if archive.NotWAL(err) || err == nil && (uint64(n) > segSize || n < wal.PageHeaderSize) {
		return nil, nil, nil // wal-fetch's checks refuse it: the gap stands
	}
	if err != nil {
		return nil, nil, err
	}
	return &PartialTail{Segment: first, Key: e.Partial.Key, File: e.Partial, End: seg.StartLSN(segSize) + pglogrepl.LSN(n)}, e, nil
}

// otherSystemGap returns why gap g after backup b is no gap of b's
// database system: the first WAL stored after it names another system
// (read whole, archive.SystemOf); "" when it names b's, or the backup
// records no system, or it cannot be read, or any WAL stored after the
// gap names b's system (archive.WALListing.OwnWALAfter: b's WAL goes on
// after the gap, so the gap is a loss, not the end of its system's WAL).
func otherSystemGap(ctx context.Context, l *archive.WALListing, b *archive.BackupInfo, g *WALGap) string {
	system := BackupSystem(b)
	f, ok := l.Segments[g.Next]
	if !ok {
		f, ok = l.Partials[g.Next]
	}
	if system == 0 || !ok {
		return ""
	}
	other, err := archive.SystemOf(ctx, f)
	if err != nil || other == system {
		return ""
	}
	if own, err := l.OwnWALAfter(ctx, g.Last, system); own != "" || err != nil {
		return ""
	}
	return fmt.Sprintf("%s, the first WAL stored after the gap, is of database system %d, not %d, the backup's: "+
		"another cluster's WAL follows in the same prefix, as after pg_upgrade into the same site, and the WAL "+
		"of the backup's system ends before the gap (its last segment, which it never finished, was not stored "+
		"as a .partial)", f.Key, other, system)
}
