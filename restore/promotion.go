package restore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/wal"
)

// checkPromotion refuses a restore of b, whose recovery ends on timeline
// tli, that PostgreSQL could not promote: to choose its new timeline,
// promotion asks restore_command for the history files of the timelines
// after tli, one after another while they exist (findNewestTimeLine), and
// wal-fetch refuses one bound to another database system above the
// timeline it reads for (exit 255), on which PostgreSQL stops, unless the
// archive holds no WAL of b's system on that file's timeline or later
// (archive.IgnoreOtherHistory; latestFor): then it is absent to
// PostgreSQL, whose probe stops there. After a pg_upgrade into the same
// site, a restore of the upgraded cluster's backup meets the old
// cluster's 00000002.history there, which is absent to it while the
// upgraded cluster has no WAL on timeline 2 or later. Only where hoard
// writes wal-fetch as restore_command and the restored server promotes
// at the end of recovery (a primary, without a target or with promote; a
// standby with a target and promote): a standby without one, or a server
// that pauses or shuts down at the target, promotes later if ever, by
// someone who then sees PostgreSQL's error.
func (o *Options) checkPromotion(ctx context.Context, a *archive.Archive, b *archive.BackupInfo, tli uint32) error {
	if o.RestoreCommand != "" || o.WALFetch == nil || !o.promotes() {
		return nil
	}
	h, _, err := listHistories(ctx, a)
	if err != nil {
		return err
	}
	_, refused, err := latestFor(ctx, a, &Histories{h: h}, tli, BackupSystem(b), b.ReplayStart())
	if err != nil || refused == nil {
		return err
	}
	return fmt.Errorf("backup %s: recovery ends on timeline %d, and PostgreSQL, promoting, asks for the history files of "+
		"the timelines after it to choose its new one; wal-fetch refuses this one (exit 255), so PostgreSQL would stop "+
		"instead of promoting: %w", b.Name, tli, refused)
}

// promotes reports whether the restored server promotes at the end of
// recovery: a primary, without a target or with promote; a standby with
// a target and promote. A standby that reaches its recovery target ends
// recovery as a primary does (recovery_target_action applies in standby
// mode too; seen on 13, 15 and 18): with promote it promotes there, with
// pause (the default written for a standby) it waits, and promotes when
// resumed.
func (o *Options) promotes() bool {
	if o.Target.IsZero() {
		return !o.Standby
	}
	switch o.TargetAction {
	case "":
		return !o.Standby
	case ActionPromote:
		return true
	}
	return false
}

// checkRecoveryHistories reads and checks, as wal-fetch does before it
// delivers them (archive.WALFile.CheckSystem: decoded to the end, its
// hash, stored by hoard under its name, not bound to another system than
// b's), every history file in the
// archive that PostgreSQL asks restore_command for while it recovers b
// along path (spec is recovery_target_timeline), before anything is
// written: wal-fetch refuses a damaged or planted one (exit 255), and
// PostgreSQL then stops with the data directory written. Seen by logging
// restore_command on PostgreSQL 13, 16 and 18, a backup on timeline 1
// restored with the archive's timelines 1 -> 2 -> 3, it asks for
//
//   - with latest, the history of each timeline after the backup's, up
//     to one that is absent (findNewestTimeLine), then the target's
//     (readTimeLineHistory);
//   - with any spec, the target timeline's history at startup
//     (readTimeLineHistory(recoveryTargetTLI)), the backup's own when
//     recovery stays on its timeline (a backup on timeline 2 or later:
//     seen on PostgreSQL 15 with a cluster on timeline 2, which stopped
//     at startup when restore_command answered 255 for
//     00000002.history), and again at promotion, to copy it into the new
//     timeline's (writeTimeLineHistory); timeline 1 has none, and
//     PostgreSQL asks for none;
//   - with a number, the target's, and during replay the history of each
//     timeline of path it switches to;
//   - when the server promotes at the end of recovery (promotes), the
//     history of each timeline after the target, up to one that is
//     absent (findNewestTimeLine again, for its new timeline); latestFor
//     says where that probe stops, and checkPromotion refuses another
//     system's file it meets.
//
// A file stored damaged (damagedHistories: a local store's FIFO, socket
// or directory under its name) refuses the restore wherever PostgreSQL
// asks for it, including the file each probe ends on (with latest, the
// one after the target; promoting, the one after where that probe
// reaches), which it expects absent: wal-fetch fails on it (exit 255)
// instead of answering "not archived", and PostgreSQL stops.
//
// A timeline whose file the archive does not hold is left out: wal-fetch
// answers "not archived" (exit 1), which ends a probe, and RecoveryPath
// already refused a path whose target history is missing (but for the
// backup's own timeline, whose history PostgreSQL does without). So is
// another system's file of the backup's timeline or an earlier one,
// which wal-fetch answers as not archived too (archive.IgnoreUpgradedHistory,
// the restored pg_control being on the backup's timeline).
//
// custom is the operator's restore_command (--restore-command), "" for
// hoard's own wal-fetch. It is checked all the same, as Run checks the
// archive's segments whatever the command: hoard cannot tell whether
// the command reads this archive (through wal-fetch, with flags of its
// own) or another copy of the WAL; the error says which case stops
// PostgreSQL.
func checkRecoveryHistories(ctx context.Context, a *archive.Archive, b *archive.BackupInfo, path wal.History, spec string, promotes bool, custom string) error {
	h, dmg, err := listHistories(ctx, a)
	if err != nil {
		return err
	}
	system, start := BackupSystem(b), b.StartTimeline
	need, probeEnds, err := askedHistories(ctx, a, &Histories{h: h, dmg: dmg}, b, path, spec, promotes)
	if err != nil {
		return err
	}
	slices.Sort(need)
	need = slices.Compact(need)
	stops := "wal-fetch refuses it (exit 255): PostgreSQL would stop with the data directory written"
	if custom != "" {
		stops = fmt.Sprintf("hoard wal-fetch refuses it (exit 255): where your restore_command (%s) reads this archive "+
			"through hoard wal-fetch, PostgreSQL would stop with the data directory written; restore checks this archive's "+
			"WAL whatever the command", custom)
	}
	if err := damagedAsked(a, b, dmg, need, probeEnds, spec, stops); err != nil {
		return err
	}
	for _, tli := range need {
		if h[tli] == nil {
			continue
		}
		name := wal.HistoryFileName(tli)
		f := archive.WALFile{Name: name, Key: h[tli].Layout.WALKey(name), Archive: h[tli]}
		err := f.CheckSystem(ctx, system)
		if _, ok := errors.AsType[*archive.IgnoredHistoryError](archive.IgnoreUpgradedHistory(err, start)); ok {
			continue
		}
		if err != nil {
			return fmt.Errorf("backup %s: timeline history %s (%s%s): %w; PostgreSQL asks restore_command for it while it recovers "+
				"this backup (recovery_target_timeline %s), and %s. "+
				"Store a good copy in its place (a server on timeline %d or later holds one in pg_wal), or delete a planted one; "+
				"hoard verify names the history files that fail their checks",
				b.Name, name, h[tli].Layout.WALKey(name), a.InSite(h[tli]), err, cmp.Or(spec, "latest"), stops, tli)
		}
	}
	return nil
}

// askedHistories returns the timelines whose history file PostgreSQL
// asks restore_command for while it recovers b along path (spec is
// recovery_target_timeline; promotes: it promotes at the end) and
// expects to read (need), and those where a probe ends, expecting none
// (probeEnds), as checkRecoveryHistories says; hs lists the histories.
func askedHistories(ctx context.Context, a *archive.Archive, hs *Histories, b *archive.BackupInfo, path wal.History, spec string, promotes bool) (need, probeEnds []uint32, err error) {
	system := BackupSystem(b)
	start, target := b.StartTimeline, path.Timeline()
	if spec == "" || spec == "latest" {
		for tli := start + 1; tli <= target; tli++ {
			need = append(need, tli)
		}
		probeEnds = append(probeEnds, target+1)
	} else {
		for _, e := range path {
			if e.Timeline > start {
				need = append(need, e.Timeline)
			}
		}
	}
	if target > 1 {
		need = append(need, target)
	}
	if promotes {
		top, _, err := latestFor(ctx, a, hs, target, system, b.ReplayStart())
		if err != nil {
			return nil, nil, err
		}
		for tli := target + 1; tli <= top; tli++ {
			need = append(need, tli)
		}
		probeEnds = append(probeEnds, top+1)
	}
	return need, probeEnds, nil
}

// DamagedHistory returns the error hoard restore refuses a restore of b
// with when a timeline history file PostgreSQL asks restore_command for
// while it recovers b along path (RecoveryPath with spec, the
// recovery_target_timeline; promotes: the server promotes at the end of
// recovery) is stored damaged (in local storage, a FIFO, a socket or a
// directory under its name, which no read returns): wal-fetch fails on
// it (exit 255) and PostgreSQL stops. The latest probe (RecoveryPath)
// stops below such a file as if it were absent; PostgreSQL's asks for
// it. nil when none is; the error wraps storage.ErrObjectDamaged.
// For hoard verify, hoard check and the daemon, which judge whether b
// restores as hoard restore does.
func DamagedHistory(ctx context.Context, a *archive.Archive, b *archive.BackupInfo, path wal.History, spec string, promotes bool) error {
	hs, err := ListHistories(ctx, a)
	if err != nil {
		return err
	}
	return DamagedHistoryIn(ctx, a, hs, b, path, spec, promotes)
}

// DamagedHistoryIn is DamagedHistory with the history files listed in hs
// (ListHistories of a), not listed again.
func DamagedHistoryIn(ctx context.Context, a *archive.Archive, hs *Histories, b *archive.BackupInfo, path wal.History, spec string, promotes bool) error {
	if len(hs.dmg) == 0 {
		return nil
	}
	need, probeEnds, err := askedHistories(ctx, a, hs, b, path, spec, promotes)
	if err != nil {
		return err
	}
	return damagedAsked(a, b, hs.dmg, need, probeEnds, spec, "wal-fetch refuses it (exit 255): PostgreSQL would stop with the data directory written, and hoard restore refuses the restore")
}

// damagedAsked returns the error for the first of need and probeEnds,
// the timelines whose history file PostgreSQL asks for, stored damaged
// (dmg); stops says what follows. nil when none is.
func damagedAsked(a *archive.Archive, b *archive.BackupInfo, dmg damagedHistories, need, probeEnds []uint32, spec, stops string) error {
	asked := slices.Sorted(slices.Values(slices.Concat(need, probeEnds)))
	for _, tli := range slices.Compact(asked) {
		if d, ok := dmg[tli]; ok {
			return fmt.Errorf("backup %s: %w", b.Name, damagedHistoryError(a, d, tli, fmt.Sprintf(
				"PostgreSQL asks restore_command for it while it recovers this backup (recovery_target_timeline %s), and %s",
				cmp.Or(spec, "latest"), stops)))
		}
	}
	return nil
}
