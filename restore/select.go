package restore

import (
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/wal"
)

// SelectBackup chooses the backup to restore from backups (oldest first, as
// archive.ListBackups returns them).
//
// An explicit name wins; with a target too, the backup must have ended
// before the target, or recovery could never reach it, except for an xid
// target the snapshot cannot settle (the transaction may have been running
// when the backup ended), and for a time or LSN target after the start of
// a backup that records no end (endUnrecorded): the named backup is taken
// and Run logs a warning. With a numeric target timeline, for every kind
// of target, only backups that timeline descends from qualify; with latest
// (the default), when Run has read the archived histories, only backups
// the newest timeline reached from theirs descends from: after a
// point-in-time restore that switched timelines, the newer backups left on
// the abandoned timeline are passed over. Otherwise:
//
//   - no target or immediate: the newest backup;
//   - time: the newest backup whose end time is at or before the target;
//   - lsn: the newest backup whose end LSN is at or before the target and
//     whose end timeline is not above a numeric target timeline (LSNs grow
//     across timelines, so on one history they compare directly);
//   - xid: the newest backup whose end snapshot's xmax is at or below the
//     xid, so the transaction had not completed when the backup ended and
//     its commit record comes after the backup's end. A transaction below
//     xmax may have completed before the end, or still have been running
//     (the snapshot's list of running xids is not recorded): such backups
//     are passed over, conservatively. Backups without recorded snapshots
//     (PGHoard's, older hoard's) cannot be judged: when no recorded backup
//     qualifies, the oldest backup is chosen if it has no snapshot, as it
//     gives recovery the most WAL to find the commit in (Run logs a
//     warning);
//   - name: the newest backup that ended before the restore point, whose
//     position Run finds by scanning archived WAL (see findRestorePoint).
//
// When nothing qualifies the error wraps archive.ErrNoBackup and says why.
func SelectBackup(backups []*archive.BackupInfo, name string, t Target) (*archive.BackupInfo, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	if len(backups) == 0 {
		return nil, fmt.Errorf("no basebackups in the archive: %w", archive.ErrNoBackup)
	}
	if name != "" && name != "latest" {
		want := archive.BackupName(name)
		for _, b := range backups {
			if b.Name != want {
				continue
			}
			if ok, why := endsBefore(b, t); !ok && !(t.XID != 0 && xidUncertain(b, t)) && !endUnrecorded(b, t) {
				return nil, fmt.Errorf("backup %s cannot reach the recovery target: %s: %w", b.Name, why, archive.ErrNoBackup)
			}
			return b, nil
		}
		return nil, fmt.Errorf("no basebackup %q (see hoard list): %w", name, archive.ErrNoBackup)
	}
	if t.Name != "" && t.nameLSN == 0 {
		// Most often the point was made after the last segment was
		// stored: the segment PostgreSQL is writing holds it.
		return nil, fmt.Errorf("restore point %q was not found in the newest archived WAL: if it was made since the last segment was stored, "+
			"its WAL is not archived yet: run select pg_switch_wal() on the primary, wait until hoard list shows the stored WAL past "+
			"the point's LSN (what pg_create_restore_point returned), then restore again; for an older point, "+
			"name the backup to restore with --basebackup NAME: %w", t.Name, archive.ErrNoBackup)
	}
	for i := len(backups) - 1; i >= 0; i-- {
		if ok, _ := endsBefore(backups[i], t); ok {
			return backups[i], nil
		}
	}
	if t.XID != 0 {
		if oldest := backups[0]; oldest.EndXmax == 0 && xidUncertain(oldest, t) {
			return oldest, nil
		}
	}
	_, why := endsBefore(backups[0], t)
	if endUnrecorded(backups[0], t) {
		// PGHoard's basic and pipe backups: PostgreSQL can judge them.
		why += "; name a backup that started before the target with --basebackup NAME to restore it anyway"
	}
	return nil, fmt.Errorf("no backup ended before the recovery target (the oldest, %s: %s): %w", backups[0].Name, why, archive.ErrNoBackup)
}

// endUnrecorded reports whether b records no end for t, a time or LSN
// target (or a located restore point), while it started before t and
// passes t's timeline checks: PGHoard's basic and pipe backups, which
// record only their start. Whether recovery from b reaches t is then
// unknown here, but PostgreSQL finds out: a target met before the backup's
// end stops recovery with "requested recovery stop point is before
// consistent recovery point" (xlogrecovery.c), never with a cluster
// promoted before it is consistent. So a backup named explicitly is taken,
// and Run logs a warning, as for an xid its snapshot cannot settle.
func endUnrecorded(b *archive.BackupInfo, t Target) bool {
	switch {
	case !t.Time.IsZero():
		if !b.EndTime.IsZero() || b.StartTime.IsZero() || b.StartTime.After(t.Time) {
			return false
		}
	case t.LSN != 0 || t.nameLSN != 0:
		if endLSN(b) != 0 || b.StartLSN == 0 || b.StartLSN > max(t.LSN, t.nameLSN) {
			return false
		}
	default:
		return false
	}
	// The timeline checks alone.
	u := t
	u.Time, u.LSN, u.nameLSN, u.Name = time.Time{}, 0, 0, ""
	ok, _ := endsBefore(b, u)
	return ok
}

// Candidates returns the backups that SelectBackup chooses among for
// name. The storage writer can plant a backup that claims to be the
// newest, or alter a real one's times and positions: when the choice is
// automatic (name "" or "latest") and hoard signed some backups'
// metadata, only those are chosen from (archive.Trusted). Where the
// caller knows the system identifier of the site's cluster (systemID not
// ""), only those of that system (archive.TrustedOfSystem): another
// cluster's, copied from a site sharing the key pair, would stop recovery
// at this site's WAL. A backup named explicitly is looked for among all
// of them.
func Candidates(backups []*archive.BackupInfo, name, systemID string) []*archive.BackupInfo {
	if name == "" || name == "latest" {
		return archive.TrustedOfSystem(backups, systemID)
	}
	return backups
}

// endsBefore reports whether recovery from b can reach t, and if not why.
// An xid target on a backup without a recorded snapshot is unknown: it
// reports false with the reason, and SelectBackup's fallback decides.
func endsBefore(b *archive.BackupInfo, t Target) (bool, string) {
	// A numeric target timeline: recovery can only follow it from a
	// backup on a timeline it descends from, ended before the fork.
	if limit := t.timelineLimit(); limit != 0 {
		if t.path != nil {
			if !t.path.Contains(b.StartTimeline, backupEndLSN(b)) {
				return false, fmt.Sprintf("timeline %d does not descend from it (timeline %d at %s)", limit, b.StartTimeline, backupEndLSN(b))
			}
		} else if b.EndTimeline > limit || b.StartTimeline > limit {
			return false, fmt.Sprintf("it is on timeline %d, after timeline %d", max(b.StartTimeline, b.EndTimeline), limit)
		}
	} else if p, ok := t.latest[b.StartTimeline]; ok && !p.Contains(b.StartTimeline, backupEndLSN(b)) {
		return false, fmt.Sprintf("the latest timeline, %d, does not descend from it (timeline %d at %s)",
			p.Timeline(), b.StartTimeline, backupEndLSN(b))
	}
	switch {
	case !t.Time.IsZero():
		if b.EndTime.IsZero() {
			return false, "its end time is not recorded"
		}
		if b.EndTime.After(t.Time) {
			return false, fmt.Sprintf("it ended at %s, after %s", fmtTime(b.EndTime), fmtTime(t.Time))
		}
	case t.LSN != 0:
		return lsnBefore(b, t.LSN, t.timelineLimit())
	case t.nameLSN != 0:
		ok, why := lsnBefore(b, t.nameLSN, t.timelineLimit())
		if !ok {
			return false, fmt.Sprintf("%s (restore point %q)", why, t.Name)
		}
	case t.Name != "":
		// An explicitly named backup with a restore point that could not
		// be located: PostgreSQL will say whether it reaches it.
	case t.XID != 0:
		if b.EndXmax == 0 {
			return false, "its end snapshot is not recorded"
		}
		if !xidAtOrAfter(t.XID, b.EndXmax) {
			return false, fmt.Sprintf("xid %d may have committed before it ended (end snapshot xmax %d)", t.XID, b.EndXmax)
		}
	}
	return true, ""
}

// xidUncertain reports whether b's end snapshot cannot say if an xid
// target's transaction had completed before b ended: the target's own
// timeline and time checks pass, and the xid is below the snapshot's xmax
// (or no snapshot is recorded). Such a transaction may have been running
// at the end, and then recovery from b reaches its commit.
func xidUncertain(b *archive.BackupInfo, t Target) bool {
	if t.timelineLimit() != 0 || t.latest != nil {
		u := t
		u.XID = 0
		if ok, _ := endsBefore(b, u); !ok {
			return false
		}
	}
	return true
}

// xidAtOrAfter reports whether xid is at or after xmax, one past the
// newest xid that had completed when the backup's end snapshot was taken:
// the transaction had not completed then, so its commit comes after the
// backup's end. xmax is a full 64-bit xid (txid_current_snapshot); a
// 32-bit xid is compared modulo 2^32 as PostgreSQL's
// TransactionIdFollowsOrEquals does.
func xidAtOrAfter(xid, xmax uint64) bool {
	if xid > 0xFFFFFFFF {
		return xid >= xmax
	}
	return int32(uint32(xid)-uint32(xmax)) >= 0
}

// lsnBefore compares b's end with lsn on timeline limit (0: any).
func lsnBefore(b *archive.BackupInfo, lsn pglogrepl.LSN, limit uint32) (bool, string) {
	end := endLSN(b)
	if end == 0 {
		return false, "its end LSN is not recorded"
	}
	if limit != 0 && b.EndTimeline > limit {
		return false, fmt.Sprintf("it ended on timeline %d, after timeline %d", b.EndTimeline, limit)
	}
	if end > lsn {
		return false, fmt.Sprintf("it ended at LSN %s, after %s", end, lsn)
	}
	return true, ""
}

// endLSN returns b's end LSN, or when only the end segment is recorded
// (PGHoard) the end of that segment: an upper bound, so a backup is never
// wrongly taken as ending before a target.
func endLSN(b *archive.BackupInfo) pglogrepl.LSN {
	if b.EndLSN != 0 {
		return b.EndLSN
	}
	if b.EndWALSegment == "" {
		return 0
	}
	seg, err := wal.ParseSegmentName(b.EndWALSegment, b.SegmentSize())
	if err != nil {
		return 0
	}
	return seg.StartLSN(b.SegmentSize()) + pglogrepl.LSN(b.SegmentSize())
}

func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
