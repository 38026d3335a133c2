package archive

import (
	"errors"
	"fmt"

	"github.com/hoardbackup/hoard/storage"
)

// A history file bound to another system (historyauth.go) is not always
// planted: a cluster of a new system identifier may be put on the timeline
// the site's old cluster reached (pg_resetwal -l after a new initdb), and
// N.history, stored by the old one, is then bound to the old system.
// Recovery of the new cluster's backups asks for N.history first
// (PostgreSQL's readTimeLineHistory of the target timeline); refusing it
// would make none of them restore. (pg_upgrade, of PostgreSQL 15 at
// least, puts the new cluster on timeline 1, not the old one's.)
//
// The rule: a reader that knows the timeline its cluster or backup is on
// treats a history file bound to another system as absent, with a
// warning, when the file's timeline is that one or an earlier one, and
// refuses it when the file's timeline is later. A history file of the
// timeline recovery starts on, or of an ancestor, only tells ancestry:
// recovery replays WAL of that timeline and later ones only, and for an
// absent N.history PostgreSQL assumes N has no parents. So a planted file
// there can at worst be ignored. A history file of a later timeline says
// where recovery switches timelines: another cluster's there is the
// attack of historyauth.go, and stays refused (even where it is the old
// cluster's, left before the new one existed: it cannot be told from
// another cluster's file copied over the new one's own).

// OtherSystemHistoryError is checkHistory's error for a history file whose
// HMAC verifies but binds another database system than the one it is read
// for. It wraps ErrHistoryNotAuthentic and ErrOtherSystem.
type OtherSystemHistoryError struct {
	Key      string
	Timeline uint32 // the file's
	System   string // the system the file is bound to
	Want     uint64 // the system it is read for
}

func (e *OtherSystemHistoryError) Error() string {
	return fmt.Sprintf("%v: %v: %s is a timeline history of database system %s, but the cluster it is read for is %d: "+
		"another cluster's history file (from a site sharing the key pair) stored under this name, which would make "+
		"recovery follow that cluster's timeline switches", ErrHistoryNotAuthentic, ErrOtherSystem, e.Key, e.System, e.Want)
}

func (e *OtherSystemHistoryError) Unwrap() []error {
	return []error{ErrHistoryNotAuthentic, ErrOtherSystem}
}

// IgnoredHistoryError is an OtherSystemHistoryError of a history file at
// or below the timeline its reader is on, which the reader treats as
// absent: it wraps storage.ErrNotFound, and its message is the warning to
// give.
type IgnoredHistoryError struct {
	Other *OtherSystemHistoryError
	At    uint32 // the reader's timeline
}

func (e *IgnoredHistoryError) Error() string {
	o := e.Other
	return fmt.Sprintf("%s is a timeline history of database system %s, not of %d, the cluster it is read for: treated as "+
		"absent (PostgreSQL then assumes timeline %d has no parents), as its timeline is not above %d, the one read for, "+
		"and recovery replays WAL of that timeline and later ones only. A cluster of a new system identifier put on the "+
		"old cluster's timeline (pg_resetwal -l) in the same site leaves such files legitimately; otherwise another "+
		"cluster's history file was stored under this name",
		o.Key, o.System, o.Want, o.Timeline, e.At)
}

func (e *IgnoredHistoryError) Unwrap() error { return storage.ErrNotFound }

// IgnoreUpgradedHistory returns err as an *IgnoredHistoryError when it is
// an *OtherSystemHistoryError of a history file whose timeline is at most
// at, the timeline the reader's cluster or backup is on (0: not known,
// nothing is ignored), and err itself otherwise.
func IgnoreUpgradedHistory(err error, at uint32) error {
	var o *OtherSystemHistoryError
	if at == 0 || !errors.As(err, &o) || o.Timeline > at {
		return err
	}
	return &IgnoredHistoryError{Other: o, At: at}
}
