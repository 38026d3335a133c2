package archive

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
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

// In a site without keys nothing is bound, but hoard records the system
// identifier of the cluster that wrote a history file as its metadata
// (MetaSystemID) all the same: a claim, which anyone who can write the
// storage can forge or strip, so it adds no security. It tells the honest
// case, a pg_upgrade into the same site, from the new cluster's own files,
// and the readers treat a claim of another system as a site with keys
// treats a binding (checkHistoryClaim): the operator's mistake is named
// before a standby stops on it. A file without the claim (PGHoard's, an
// older hoard's) is read as before. In a site with keys the claim is
// never looked at on its own: only the HMAC decides.

// OtherSystemHistoryError is checkHistory's error for a history file whose
// HMAC verifies but binds another database system than the one it is read
// for, or, in a site without keys (Claimed), whose metadata claims
// another. It wraps ErrOtherSystem, and ErrHistoryNotAuthentic unless
// Claimed.
type OtherSystemHistoryError struct {
	Key      string
	Timeline uint32 // the file's
	System   string // the system the file is bound to, or claims
	Want     uint64 // the system it is read for
	// Claimed is set in a site without keys: System is the writer's
	// claim (MetaSystemID), not authenticated.
	Claimed bool
}

func (e *OtherSystemHistoryError) Error() string {
	prefix := fmt.Sprintf("%v: %v", ErrHistoryNotAuthentic, ErrOtherSystem)
	if e.Claimed {
		prefix = ErrOtherSystem.Error()
	}
	return fmt.Sprintf("%s: %s %s, but the cluster it is read for is %d: another cluster's history file, which would "+
		"make recovery follow that cluster's timeline switches (%s)", prefix, e.Key, e.ofSystem(), e.Want, e.fix())
}

func (e *OtherSystemHistoryError) Unwrap() []error {
	if e.Claimed {
		return []error{ErrOtherSystem}
	}
	return []error{ErrHistoryNotAuthentic, ErrOtherSystem}
}

// ofSystem says whose history file e's is: bound to its system, or so
// claimed.
func (e *OtherSystemHistoryError) ofSystem() string {
	if e.Claimed {
		return "is, by its metadata's claim (not authenticated: this site has no keys), a timeline history of database system " + e.System
	}
	return "is a timeline history of database system " + e.System
}

// fix is OtherSystemHistoryFix, or OtherSystemHistoryClaimFix when e is
// a claim.
func (e *OtherSystemHistoryError) fix() string {
	if e.Claimed {
		return OtherSystemHistoryClaimFix
	}
	return OtherSystemHistoryFix
}

// otherSystemHistory returns the *OtherSystemHistoryError of history
// file name under key, of system other (claimed: by its metadata's claim
// alone), read for system want.
func otherSystemHistory(key, name, other string, want uint64, claimed bool) error {
	tli, err := wal.ParseHistoryFileName(name)
	if err != nil {
		return err
	}
	return &OtherSystemHistoryError{Key: key, Timeline: tli, System: other, Want: want, Claimed: claimed}
}

// checkHistoryClaim is checkHistory in a site without keys: history file
// name under key, whose metadata is md, read for the cluster whose system
// identifier is system (0: not known, not checked), is another cluster's
// when md claims another system (MetaSystemID); without a claim it is
// not checked.
func checkHistoryClaim(key, name string, md storage.Metadata, system uint64) error {
	claim := md[MetaSystemID]
	if system == 0 || claim == "" || claim == strconv.FormatUint(system, 10) {
		return nil
	}
	return otherSystemHistory(key, name, claim, system, true)
}

// upgradeFix is the likely cause of another system's history file above
// the reader's timeline, and what to do.
const upgradeFix = "after pg_upgrade, which gives the cluster a new system identifier and starts it at timeline 1, " +
	"the old cluster's history files stay in the site: set a new backup_sites.<site>.prefix for the upgraded cluster " +
	"and take a backup there; otherwise "

// OtherSystemHistoryFix says where a history file bound to another system,
// above the reader's timeline, likely comes from and what to do.
const OtherSystemHistoryFix = upgradeFix + "it was copied from a site sharing this key pair: investigate"

// OtherSystemHistoryClaimFix is OtherSystemHistoryFix for a history file
// whose metadata claims another system, in a site without keys.
const OtherSystemHistoryClaimFix = upgradeFix + "another cluster archives into this site, or someone wrote the claim: investigate"

// IgnoredHistoryError is an OtherSystemHistoryError of a history file at
// or below the timeline its reader is on, or above it where the archive
// holds no WAL of the reader's system from its timeline on (NoOwnWAL,
// historyabove.go), which the reader treats as absent: it wraps
// storage.ErrNotFound, and its message is the warning to give.
type IgnoredHistoryError struct {
	Other    *OtherSystemHistoryError
	At       uint32 // the reader's timeline
	NoOwnWAL bool   // the file's timeline is above At (IgnoreOtherHistory)
}

func (e *IgnoredHistoryError) Error() string {
	if e.NoOwnWAL {
		return e.noOwnWALWarning()
	}
	o := e.Other
	return fmt.Sprintf("%s %s, not of %d, the cluster it is read for: treated as "+
		"absent (PostgreSQL then assumes timeline %d has no parents), as its timeline is not above %d, the one read for, "+
		"and recovery replays WAL of that timeline and later ones only. A cluster of a new system identifier put on the "+
		"old cluster's timeline (pg_resetwal -l) in the same site leaves such files legitimately; otherwise another "+
		"cluster's history file was stored under this name",
		o.Key, o.ofSystem(), o.Want, o.Timeline, e.At)
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

// OtherSystemHistories returns, by timeline, the errors of the history
// files stored in a (or a site it moved from; the copy wal-fetch reads)
// above timeline above whose metadata HMAC verifies but binds another
// database system than system, or, in a site without keys, whose
// metadata claims another (checkHistoryClaim): what wal-fetch for that
// cluster refuses, as a standby's recovery to the latest timeline asks
// for them. Only their metadata is read (checkHistory).
func (a *Archive) OtherSystemHistories(ctx context.Context, system uint64, above uint32) ([]*OtherSystemHistoryError, error) {
	h, err := a.HistorySystemsAbove(ctx, system, above)
	return h.Others, err
}

// HistorySystems sorts the history files above a timeline by the database
// system they belong to (HistorySystemsAbove).
type HistorySystems struct {
	// Others are OtherSystemHistories' errors, by timeline.
	Others []*OtherSystemHistoryError
	// Own are the timelines, in order, of the files of the system asked
	// about: bound to it, or in a site without keys claiming it.
	Own []uint32
	// Unknown are the timelines, in order, of the files whose system
	// cannot be told: in a site without keys, those without a claim
	// (PGHoard's, an older hoard's). In a site with keys it is none: the
	// files not bound to a system are checked against the markers
	// instead, and count as Own when they pass.
	Unknown []uint32
}

// HistorySystemsAbove sorts the history files stored in a (or a site it
// moved from) above timeline above by their system: system's own, another
// system's (OtherSystemHistories), or one that cannot be told.
func (a *Archive) HistorySystemsAbove(ctx context.Context, system uint64, above uint32) (HistorySystems, error) {
	var h HistorySystems
	hs, err := a.ListHistories(ctx)
	if err != nil {
		return h, err
	}
	for _, tli := range slices.Sorted(maps.Keys(hs)) {
		f := hs[tli]
		if tli <= above {
			continue
		}
		obj, err := f.Archive.Store.Stat(ctx, f.Key)
		if errors.Is(err, storage.ErrNotFound) {
			continue // deleted since the listing
		}
		if err != nil {
			return HistorySystems{}, fmt.Errorf("stat %s: %w", f.Key, err)
		}
		err = f.Archive.checkHistory(ctx, f.Key, f.Name, obj.Metadata, system)
		if o, ok := errors.AsType[*OtherSystemHistoryError](err); ok {
			h.Others = append(h.Others, o)
		} else if !f.Archive.HistoriesBound() && obj.Metadata[MetaSystemID] == "" {
			h.Unknown = append(h.Unknown, tli)
		} else if err == nil {
			h.Own = append(h.Own, tli)
		}
	}
	return h, nil
}

// OtherSystemHistoriesProblems says what others, OtherSystemHistories of
// system on timeline tli, mean and what to do: one sentence per system
// they are bound to, in the order of their timelines (hoard check's and
// the daemon's words).
func OtherSystemHistoriesProblems(others []*OtherSystemHistoryError, system uint64, tli uint32) []string {
	var systems []*OtherSystemHistoryError // the first of each system
	tlis := map[string][]string{}
	for _, o := range others {
		if _, seen := tlis[o.System]; !seen {
			systems = append(systems, o)
		}
		tlis[o.System] = append(tlis[o.System], strconv.FormatUint(uint64(o.Timeline), 10))
	}
	out := make([]string, len(systems))
	for i, o := range systems {
		which := "timelines"
		if len(tlis[o.System]) == 1 {
			which = "timeline"
		}
		claim := ""
		if o.Claimed {
			claim = ", by their metadata's claim (not authenticated: this site has no keys)"
		}
		out[i] = fmt.Sprintf("the site holds timeline history files of database system %s on %s %s, above timeline %d "+
			"of this cluster (system %d)%s: wal-fetch treats them as absent while the site holds no WAL of this cluster on their "+
			"timelines or later, and refuses them (exit 255) once it does, so a standby recovering to the latest timeline stops, "+
			"and this cluster's own history file of such a timeline cannot be stored under its name; %s", o.System, which, strings.Join(tlis[o.System], ", "), tli, system, claim, o.fix())
	}
	return out
}

// historyConflict explains err, PushWAL's refusal to store history file
// name under key, which holds other bytes (ErrWALConflict), for the
// cluster of system: after a pg_upgrade into the same site, the upgraded
// cluster's own first failover reaches a timeline whose history file the
// old cluster stored, and as an archived object is never replaced,
// archive_command fails on it until someone acts, while pg_wal grows.
// Where the stored file is bound to another system (a site with keys), or
// claims another (without keys: checkHistoryClaim), the error says so,
// naming both systems, the likely cause and the fix; where a site without
// keys cannot tell (no claim, or the pushing cluster's system not known),
// it names the likely cause as a question. Any other err is returned as
// is.
func (a *Archive) historyConflict(ctx context.Context, key, name string, system uint64, err error) error {
	if !errors.Is(err, ErrWALConflict) || !wal.IsHistoryFile(name) {
		return err
	}
	obj, serr := a.Store.Stat(ctx, key)
	if serr == nil {
		if o, ok := errors.AsType[*OtherSystemHistoryError](a.checkHistory(ctx, key, name, obj.Metadata, system)); ok {
			return fmt.Errorf("%w: %s %s, and the file pushed is one of %d, this cluster: another cluster's history file "+
				"holds the name of this cluster's own. hoard never replaces an archived object, so this push fails until "+
				"the cause is fixed, and PostgreSQL keeps the WAL it has not archived until its disk fills (%s)",
				err, key, o.ofSystem(), system, o.fix())
		}
	}
	// With keys, or a claim of this cluster's own system: not another's.
	if a.HistoriesBound() || serr == nil && system != 0 && obj.Metadata[MetaSystemID] != "" {
		return err
	}
	return fmt.Errorf("%w; hoard never replaces an archived object, so this push fails until the cause is fixed, "+
		"and PostgreSQL keeps the WAL it has not archived: in a site without keys the stored history file is "+
		"bound to no system, but if this cluster was upgraded with pg_upgrade into this site, it is likely the old "+
		"cluster's (%s)", err, OtherSystemHistoryClaimFix)
}
