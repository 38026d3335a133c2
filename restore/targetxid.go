package restore

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/wal"
)

// checkTargetXID reads the archived WAL recovery of b along path p
// replays, from b's start, the copy of each segment recovery reads
// (onPath), up to the first gap or the end of the archive, for the
// commit or abort record that recovery_target_xid xid stops at:
// PostgreSQL compares it only with the xid a commit or abort record
// ends (xl_xid, or a prepared transaction's), never with the
// subtransactions a record lists (recoveryStopsBefore, xlogrecovery.c).
// The read stops at the first record that names xid: the WAL recovery
// replays before it stops. It refuses (ErrBadTarget), before anything
// is written, an xid first named as a subtransaction of a record,
// naming the transaction to give instead, and an xid no record ends:
// recovery would replay all the WAL and stop with "recovery ended before
// configured recovery target was reached". With mayGrow (a standby,
// which waits for more WAL at the end of the archive, or an archive that
// ends in a .partial this read leaves out) an xid not found is not
// refused.
func checkTargetXID(ctx context.Context, w walIndex, b *archive.BackupInfo, p wal.History, xid uint64, mayGrow bool) error {
	segSize := b.SegmentSize()
	target := uint32(xid)
	major := b.PGVersion / 10000
	sr := &segmentReader{w: w, segSize: segSize}
	r := wal.NewRecordReader(segSize)
	var (
		found  *wal.XactEnd
		at     pglogrepl.LSN
		readTo pglogrepl.LSN
	)
	for no := wal.SegmentOf(0, b.StartLSN, segSize).No; ; no++ {
		n := onPath(w, p, no, segSize)
		if n == "" {
			break // recovery ends here too
		}
		data, err := sr.read(ctx, n)
		if err != nil {
			return err
		}
		if major == 0 {
			if h, err := wal.DecodePageHeader(data); err == nil {
				major = h.Major()
			}
		}
		err = r.Segment(no*segSize, data, func(rec wal.Record) error {
			if rec.LSN < uint64(b.StartLSN) {
				return nil
			}
			x, ok, err := wal.ParseXactEnd(rec, major)
			if !ok || err != nil {
				// A record that does not decode: recovery reads it
				// with PostgreSQL's own code; this check passes it.
				return nil
			}
			if x.XID == target || slices.Contains(x.Subxacts, target) {
				found, at = &x, pglogrepl.LSN(rec.LSN)
				return errFound
			}
			return nil
		})
		if errors.Is(err, errFound) {
			break
		}
		if err != nil {
			return err
		}
		readTo = pglogrepl.LSN((no + 1) * segSize)
	}
	if found == nil && mayGrow {
		return nil
	}
	if found == nil {
		return fmt.Errorf("%w: no commit or abort record of transaction %d in the archived WAL recovery from backup %s replays "+
			"(from its start at %s to %s, along timeline %d): PostgreSQL would replay all of it and stop with \"recovery ended before "+
			"configured recovery target was reached\"; if the transaction ended since the last segment was stored, run select "+
			"pg_switch_wal() on the primary, wait until hoard list shows the stored WAL past it, then restore again; if it ended "+
			"before the backup started, name an older backup with --basebackup",
			ErrBadTarget, xid, b.Name, b.StartLSN, readTo, p.Timeline())
	}
	if found.XID != target {
		what := map[uint8]string{wal.XactCommit: "commit", wal.XactAbort: "abort",
			wal.XactCommitPrepared: "COMMIT PREPARED", wal.XactAbortPrepared: "ROLLBACK PREPARED"}[found.Op]
		return fmt.Errorf("%w: xid %d is a subtransaction of transaction %d (its %s record at %s lists it): PostgreSQL stops only at "+
			"the commit or abort of the transaction a record ends, never at a subtransaction's, and would replay all the WAL and stop "+
			"with \"recovery ended before configured recovery target was reached\"; restore with --target-xid %d",
			ErrBadTarget, xid, found.XID, what, at, found.XID)
	}
	return nil
}
