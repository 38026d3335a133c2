package wal

import (
	"encoding/binary"
	"errors"
)

// Transaction record kinds (xl_info & XLOG_XACT_OPMASK), from
// access/xact.h: the records recovery_target_xid is compared with
// (recoveryStopsBefore, xlogrecovery.c).
const (
	XactCommit         = 0x00 // XLOG_XACT_COMMIT
	XactAbort          = 0x20 // XLOG_XACT_ABORT
	XactCommitPrepared = 0x30 // XLOG_XACT_COMMIT_PREPARED
	XactAbortPrepared  = 0x40 // XLOG_XACT_ABORT_PREPARED

	rmXactID       = 1    // RM_XACT_ID
	xactOpMask     = 0x70 // XLOG_XACT_OPMASK
	xactHasInfo    = 0x80 // XLOG_XACT_HAS_INFO
	xinfoDBInfo    = 1 << 0
	xinfoSubxacts  = 1 << 1
	xinfoRelfiles  = 1 << 2
	xinfoInvals    = 1 << 3
	xinfoTwoPhase  = 1 << 4
	xinfoDropStats = 1 << 8 // PostgreSQL 15 and later
)

// XactEnd is a transaction's commit or abort record, decoded.
type XactEnd struct {
	Op uint8 // XactCommit, XactAbort, XactCommitPrepared or XactAbortPrepared
	// XID is the transaction the record ends, as recovery compares it
	// with recovery_target_xid: the record's xl_xid, or for a prepared
	// transaction's the prepared transaction's xid.
	XID uint32
	// Subxacts are its subtransactions the record ends with it
	// (XACT_XINFO_HAS_SUBXACTS): their xids never match
	// recovery_target_xid.
	Subxacts []uint32
}

// errXact says a transaction record's data does not fit its flags.
var errXact = errors.New("malformed transaction record")

// ParseXactEnd decodes rec when it is a commit or abort record
// (xl_xact_commit, xl_xact_abort, as ParseCommitRecord and
// ParseAbortRecord in xactdesc.c read them) of a cluster of PostgreSQL
// major version major (the layout of a dropped statistics entry differs
// from 18 on); ok is false for any other record. A record that does
// not decode is an error.
func ParseXactEnd(rec Record, major int) (x XactEnd, ok bool, err error) {
	if rec.RmgrID() != rmXactID {
		return x, false, nil
	}
	x.Op = rec.Info() & xactOpMask
	switch x.Op {
	case XactCommit, XactAbort, XactCommitPrepared, XactAbortPrepared:
	default:
		return x, false, nil
	}
	d, okd := rec.MainData()
	if !okd || len(d) < 8 {
		return x, true, errXact
	}
	x.XID = rec.XID()
	d = d[8:] // xact_time
	var xinfo uint32
	if rec.Info()&xactHasInfo != 0 {
		if len(d) < 4 {
			return x, true, errXact
		}
		xinfo, d = binary.LittleEndian.Uint32(d), d[4:]
	}
	le := binary.LittleEndian
	// take skips n bytes of d.
	take := func(n uint64) bool {
		if n > uint64(len(d)) {
			return false
		}
		d = d[n:]
		return true
	}
	// list skips a count and count entries of size bytes.
	list := func(size uint64) (int, bool) {
		if len(d) < 4 {
			return 0, false
		}
		n := int32(le.Uint32(d))
		if n < 0 || !take(4) || !take(uint64(n)*size) {
			return 0, false
		}
		return int(n), true
	}
	if xinfo&xinfoDBInfo != 0 && !take(8) {
		return x, true, errXact
	}
	if xinfo&xinfoSubxacts != 0 {
		before := d
		n, okn := list(4)
		if !okn {
			return x, true, errXact
		}
		for i := range n {
			x.Subxacts = append(x.Subxacts, le.Uint32(before[4+4*i:]))
		}
	}
	if x.Op != XactCommitPrepared && x.Op != XactAbortPrepared {
		return x, true, nil
	}
	// The prepared transaction's xid comes after the lists.
	if xinfo&xinfoRelfiles != 0 {
		if _, okn := list(12); !okn { // RelFileNode / RelFileLocator
			return x, true, errXact
		}
	}
	if xinfo&xinfoDropStats != 0 && major >= 15 {
		size := uint64(12) // kind, dboid, objoid
		if major >= 18 {
			size = 16 // kind, dboid, objid_lo, objid_hi
		}
		if _, okn := list(size); !okn {
			return x, true, errXact
		}
	}
	if x.Op == XactCommitPrepared && xinfo&xinfoInvals != 0 {
		if _, okn := list(16); !okn { // SharedInvalidationMessage
			return x, true, errXact
		}
	}
	if xinfo&xinfoTwoPhase == 0 || len(d) < 4 {
		return x, true, errXact
	}
	x.XID = le.Uint32(d)
	return x, true, nil
}
