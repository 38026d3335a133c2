package restore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
)

// pg_upgrade gives the cluster a new system identifier and (PostgreSQL
// 15's) timeline 1, and an operator who keeps the upgraded cluster in
// the same site has its backups there next to the old cluster's, and the
// old cluster's history files of later timelines above its timeline. The
// automatic choice to the latest timeline follows the newest of those
// files, the old cluster's, passes over the upgraded cluster's backups
// (none lies on the old timeline 2) and would choose an old cluster's
// backup: a restore that exits 0 and brings back the data as it was
// before the upgrade. So the automatic choice stays with the database
// system of the newest backup (by start time, among the backups it
// chooses from), the cluster the site backs up now: it restores a backup
// of another system only when no backup of the newest's reaches the
// target even leaving the latest timeline's ancestry aside (a target
// before the upgrade, which only the old cluster reached), and the
// backups that reach it are of that one other system. Otherwise it is
// refused, naming both systems, pg_upgrade and what to do. A backup named
// with --basebackup is never second-guessed.

// ErrSystemSwitch is wrapped by SystemSwitchError.
var ErrSystemSwitch = errors.New("the automatic choice would restore another database system than the newest backup's")

// SystemSwitchError is the refusal of an automatic choice that would
// restore Chosen, of another database system than Newest, the newest
// backup. It wraps ErrSystemSwitch, not archive.ErrNoBackup: hoard restore
// exits 1, as for any refusal to restore what is there, not 2.
type SystemSwitchError struct {
	Chosen *archive.BackupInfo
	Newest *archive.BackupInfo // the newest backup (of the system the site backs up now)
	// Own is the newest backup of Newest's system that reaches the
	// target when the latest timeline's ancestry is left aside (nil when
	// none is left to choose from), and Why says why the choice passed
	// it over.
	Own *archive.BackupInfo
	Why string
	// Ambiguous lists the systems of the backups that reach the target,
	// when they are more than one (Own nil): no system to prefer.
	Ambiguous []string
	// Others are the history files above Own's timeline bound to another
	// system than Own's, or in a site without keys claiming another,
	// that wal-fetch refuses to its recovery (latestFor), so PostgreSQL
	// cannot recover Own's cluster from this site.
	Others []*archive.OtherSystemHistoryError
}

func (e *SystemSwitchError) Error() string {
	var s strings.Builder
	if len(e.Ambiguous) > 1 {
		fmt.Fprintf(&s, "no backup of database system %s, that of the newest backup %s, reaches the recovery target, and the backups "+
			"that do are of several other database systems (%s): name the backup to restore with --basebackup (see hoard list)",
			e.Newest.SystemID, e.Newest.Name, strings.Join(e.Ambiguous, ", "))
		return s.String()
	}
	fmt.Fprintf(&s, "the automatic choice would restore backup %s, of database system %s, but the newest backup, %s, is of database system %s",
		e.Chosen.Name, e.Chosen.SystemID, e.Newest.Name, e.Newest.SystemID)
	if e.Own != nil {
		fmt.Fprintf(&s, " (its backup %s was passed over: %s)", e.Own.Name, e.Why)
	} else {
		fmt.Fprintf(&s, " (%s)", e.Why)
	}
	fmt.Fprintf(&s, ": restoring another cluster than the newest backup's is refused. The likely cause is a pg_upgrade into this "+
		"site: the upgraded cluster has a new system identifier and starts at timeline 1, and the old cluster's timeline history "+
		"files of later timelines stay in the site. To restore the old cluster, name its backup: --basebackup %s. ", e.Chosen.Name)
	switch {
	case len(e.Others) > 0:
		var keys []string
		for _, o := range e.Others {
			keys = append(keys, o.Key)
		}
		bound := "bound to"
		if e.Others[0].Claimed {
			bound = "by its metadata's claim (not authenticated: this site has no keys) of"
		}
		fmt.Fprintf(&s, "The upgraded cluster's backups cannot be recovered from this site: recovery asks for %s, %s database "+
			"system %s, which wal-fetch refuses (exit 255) and PostgreSQL stops on. ", strings.Join(keys, ", "), bound, e.Others[0].System)
	case e.Own != nil:
		fmt.Fprintf(&s, "To restore the upgraded cluster, keep recovery on its backup's timeline: --target-timeline %d "+
			"(with --basebackup %s, or another of its backups). ", e.Own.StartTimeline, e.Own.Name)
	}
	s.WriteString("Give the upgraded cluster a new backup_sites.<site>.prefix and take a backup there (docs/backup-restore.md, After pg_upgrade)")
	return s.String()
}

func (e *SystemSwitchError) Unwrap() error { return ErrSystemSwitch }

// systemSwitch decides whether b, the automatic choice for t among
// candidates (oldest first), may be restored although it is of another
// database system than newest, the newest of the backups the choice
// started from. It returns nil when b is of newest's system, or when
// either records none (PGHoard's backups: nothing to compare); ok true
// when b is of another system legitimately (no backup of newest's system
// in candidates reaches t even leaving the latest timeline's ancestry
// aside, and the backups that reach t are of b's system only: the caller
// warns); else the refusal.
func systemSwitch(candidates []*archive.BackupInfo, newest, b *archive.BackupInfo, t Target) (ok bool, err *SystemSwitchError) {
	sys := newest.SystemID
	if sys == "" || b.SystemID == "" || b.SystemID == sys {
		return false, nil
	}
	refuse := &SystemSwitchError{Chosen: b, Newest: newest}
	own := slices.DeleteFunc(slices.Clone(candidates), func(x *archive.BackupInfo) bool { return x.SystemID != sys })
	if len(own) == 0 {
		refuse.Why = "its system's backups were passed over: their incremental chains are broken"
		return false, refuse
	}
	u := t
	u.latest = nil
	if x, serr := SelectBackup(own, "", u); serr == nil {
		// It reaches t but for the latest timeline's ancestry: that
		// timeline's history is another cluster's.
		refuse.Own = x
		if reach, why := endsBefore(x, t); !reach {
			refuse.Why = why
		} else {
			refuse.Why = "backup " + b.Name + ", newer, also reaches the target"
		}
		return false, refuse
	}
	var systems []string
	for _, x := range candidates {
		if x.SystemID == sys || x.SystemID == "" || slices.Contains(systems, x.SystemID) {
			continue
		}
		if reach, _ := endsBefore(x, t); reach {
			systems = append(systems, x.SystemID)
		}
	}
	if len(systems) > 1 {
		refuse.Ambiguous = systems
		return false, refuse
	}
	return true, nil
}

// checkSystemSwitch is systemSwitch for choose: it warns when b is of
// another system legitimately, and a refusal names the history file bound
// to (without keys: claiming) another system above the timeline of the
// newest system's backup that wal-fetch refuses to that cluster's
// recovery (latestFor), which makes it unrecoverable here.
func checkSystemSwitch(ctx context.Context, log zerolog.Logger, a *archive.Archive, candidates []*archive.BackupInfo, newest, b *archive.BackupInfo, t Target) error {
	ok, refuse := systemSwitch(candidates, newest, b, t)
	if ok {
		log.Warn().Str("backup", b.Name).Str("system_identifier", b.SystemID).Str("newest_backup", newest.Name).
			Str("newest_system_identifier", newest.SystemID).
			Msg("no backup of the newest backup's database system reaches the recovery target: restoring one of another " +
				"system, the only one whose backups reach it (the cluster before a pg_upgrade, likely)")
		return nil
	}
	if refuse == nil {
		return nil
	}
	if refuse.Own != nil {
		h, _, err := listHistories(ctx, a)
		if err != nil {
			return err
		}
		_, refused, err := latestFor(ctx, a, &Histories{h: h}, refuse.Own.StartTimeline, BackupSystem(refuse.Own), refuse.Own.ReplayStart())
		if err != nil {
			return err
		}
		if o, ok := errors.AsType[*archive.OtherSystemHistoryError](refused); ok {
			refuse.Others = []*archive.OtherSystemHistoryError{o}
		}
	}
	return refuse
}
