package restore

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/wal"
)

// ErrBadTarget is returned (wrapped) for an invalid recovery target.
var ErrBadTarget = errors.New("invalid recovery target")

// FirstNormalXID is PostgreSQL's FirstNormalTransactionId (transam.h):
// below it are the invalid, bootstrap and frozen xids, which no
// transaction has. recovery_target_xid is read to its low 32 bits, so an
// XID whose low 32 bits are below it is never reached.
const FirstNormalXID = 3

// Target is where recovery should stop. At most one of Time, XID, Name, LSN
// and Immediate is set; the zero Target recovers to the end of the archived
// WAL. They map to PostgreSQL's recovery_target_time, _xid, _name, _lsn and
// recovery_target = 'immediate'.
type Target struct {
	Time time.Time
	// XID is a transaction id, 32-bit or full 64-bit (pg_current_xact_id);
	// PostgreSQL compares its low 32 bits.
	XID       uint64
	Name      string
	LSN       pglogrepl.LSN
	Immediate bool
	Inclusive *bool  // recovery_target_inclusive; nil leaves PostgreSQL's default (true)
	Timeline  string // recovery_target_timeline: "latest" (the default), "current" or a number

	// nameLSN is where Run found the restore point called Name in the
	// archived WAL; SelectBackup needs it to choose a backup for Name.
	nameLSN pglogrepl.LSN
	// path is the history of a numeric Timeline (TargetPath), read by
	// Run: SelectBackup then takes only backups it descends from.
	path wal.History
	// latest maps a timeline to the history of the timeline that
	// recovery_target_timeline 'latest' reaches from it (LatestPaths),
	// set by Run for an automatic choice: SelectBackup then takes only
	// backups that timeline descends from.
	latest map[uint32]wal.History
}

// kinds returns the names of the target kinds that are set.
func (t Target) kinds() []string {
	var k []string
	if !t.Time.IsZero() {
		k = append(k, "time")
	}
	if t.XID != 0 {
		k = append(k, "xid")
	}
	if t.Name != "" {
		k = append(k, "name")
	}
	if t.LSN != 0 {
		k = append(k, "lsn")
	}
	if t.Immediate {
		k = append(k, "immediate")
	}
	return k
}

// IsZero reports whether no stop point is set.
func (t Target) IsZero() bool { return len(t.kinds()) == 0 }

// Validate checks that at most one stop point is set and that the timeline
// and name are valid.
func (t Target) Validate() error {
	if k := t.kinds(); len(k) > 1 {
		return fmt.Errorf("%w: give at most one of time, xid, name, lsn and immediate (got %v)", ErrBadTarget, k)
	}
	if t.Inclusive != nil && (t.Immediate || t.IsZero()) {
		return fmt.Errorf("%w: inclusive needs a time, xid, name or lsn target", ErrBadTarget)
	}
	if t.XID != 0 && uint32(t.XID) < FirstNormalXID {
		return fmt.Errorf("%w: xid %d is no transaction's (its low 32 bits, %d, are below %d)", ErrBadTarget, t.XID, uint32(t.XID), FirstNormalXID)
	}
	// PostgreSQL's MAXFNAMELEN: a restore point name is at most 63 bytes.
	if len(t.Name) > 63 {
		return fmt.Errorf("%w: restore point name longer than 63 bytes", ErrBadTarget)
	}
	// A configuration file's string ends at the line (guc-file.l).
	if strings.ContainsAny(t.Name, "\n\r\x00") {
		return fmt.Errorf("%w: restore point name holds a line break or NUL", ErrBadTarget)
	}
	switch t.Timeline {
	case "", "latest", "current":
	default:
		n, err := strconv.ParseUint(t.Timeline, 10, 32)
		if err != nil || n == 0 {
			return fmt.Errorf("%w: timeline %q is not latest, current or a positive number", ErrBadTarget, t.Timeline)
		}
	}
	return nil
}

// timelineLimit returns the numeric timeline requested, or 0 for latest or
// current.
func (t Target) timelineLimit() uint32 {
	n, err := strconv.ParseUint(t.Timeline, 10, 32)
	if err != nil {
		return 0
	}
	return uint32(n)
}
