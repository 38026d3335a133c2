package archive

import (
	"fmt"
	"time"

	"github.com/hoardbackup/hoard/wal"
)

// A backup in progress is not listed (its control object comes last), so
// retention neither counts nor deletes it, and its chunk folder is no
// orphan while it is written to (OrphanMinAge). Its WAL needs more care:
// the plan deletes what precedes the start of the kept backups, and the
// newest completed backup is always kept. A backup of the same cluster
// that started after that one starts at or after its start (each
// backup's start is the redo pointer of a checkpoint, which only moves
// forward), so hoard's own backups, one at a time per site, are safe. But
// a backup that started BEFORE the newest completed one and is still
// running (a daemon on another host writing the same site by mistake, a
// PGHoard still writing it during a migration, a long backup overlapped
// by a short one) needs the WAL from its own, earlier start, which the
// plan would delete: it would complete unrestorable.
//
// Its start LSN is in its control object only, which does not exist yet.
// What the storage shows is its chunk folder, named after the backup
// (PGHoard's and hoard's names record its start minute) with the times
// the storage wrote its objects (storedAt). It started no later than either; a backup of
// the cluster that started before that (less runningSkew, for clocks
// that disagree) starts no later than it does. keepRunningWAL keeps the
// WAL from the newest such backup's start, and every WAL file when there
// is none.
//
// A backup whose first chunk is not stored yet (it is being uploaded) has
// no folder to see; nor has a single-tar backup (PGHoard's basic and pipe
// modes), which stores one object at its end.

// runningSkew is how far apart the clocks of the backup writers and of the
// storage may be (a backup's start time is its host's, when an object was
// written the storage's: storedAt).
const runningSkew = time.Hour

// runningBackup is a chunk folder of no listed backup that is not an
// orphan yet: a backup that may still be running.
type runningBackup struct {
	name  string
	since time.Time // when it started at the latest; zero: unknown
}

// runningSince returns the latest time the backup of folder name, whose
// oldest object was written at first, can have started: the earlier of
// that and the time in its name. Zero when a listed object had no time
// (unknown) and the name has none.
func runningSince(name string, first time.Time, unknown bool) time.Time {
	since := first
	if unknown {
		since = time.Time{}
	}
	if t, ok := backupNameTime(name); ok && (since.IsZero() || t.Before(since)) {
		since = t
	}
	return since
}

// keepRunningWAL keeps the WAL that backups possibly running need, as the
// comment above says. backups are those whose start the plan trusts.
func keepRunningWAL(plan *RetentionPlan, running []runningBackup, backups []*BackupInfo) {
	if len(plan.WAL) == 0 || len(running) == 0 || plan.WALHorizon == "" {
		return
	}
	oldest := running[0]
	for _, r := range running[1:] {
		if oldest.since.IsZero() {
			break
		}
		if r.since.IsZero() || r.since.Before(oldest.since) {
			oldest = r
		}
	}
	var base *BackupInfo
	if !oldest.since.IsZero() {
		bound := oldest.since.Add(-runningSkew)
		for _, b := range backups {
			if startSegment(b) != "" && !b.StartTime.IsZero() && !b.StartTime.After(bound) &&
				(base == nil || b.StartTime.After(base.StartTime)) {
				base = b
			}
		}
	}
	horizon := plan.WALHorizon[8:]
	if base != nil && startSegment(base)[8:] >= horizon {
		return // the kept backups' WAL covers it
	}
	low := ""
	if base != nil {
		low = startSegment(base)[8:]
	}
	superseded, dropped := keepWALFrom(plan, low)
	if !dropped {
		return
	}
	if base == nil {
		plan.WALHorizon, plan.WALHorizonBackup = "", ""
		plan.Notes = append(plan.Notes, fmt.Sprintf("chunks of %s have no main object yet: a backup that may be running, "+
			"started at %s at the latest, and no backup is known to start before it: every WAL file is kept until it completes%s",
			oldest.name, fmtTime(oldest.since), supersededNote(superseded)))
		return
	}
	plan.WALHorizon, plan.WALHorizonBackup = startSegment(base), base.Name
	plan.Notes = append(plan.Notes, fmt.Sprintf("chunks of %s have no main object yet: a backup that may be running, "+
		"started at %s at the latest, before a kept backup: WAL is kept from the start %s of backup %s, which started before it%s",
		oldest.name, fmtTime(oldest.since), plan.WALHorizon, base.Name, supersededNote(superseded)))
}

// supersededNote is the end of keepRunningWAL's note when the plan still
// deletes n .partial copies superseded by their complete segment (planWAL
// deletes one only when that segment is stored and checks): the backup
// that may be running needs none of them, as its WAL is in the segment.
func supersededNote(n int) string {
	switch n {
	case 0:
		return ""
	case 1:
		return ", but for 1 .partial copy superseded by its complete segment, which is stored and checks: it is deleted"
	}
	return fmt.Sprintf(", but for %d .partial copies superseded by their complete segments, which are stored and check: they are deleted", n)
}

// keepWALFrom drops from plan.WAL each deletion of a file at or after
// position low (the 16 hex digits after a segment name's timeline; ""
// keeps every file), but for the .partial files planWAL deletes as
// superseded by their complete segment, and counts them kept. It returns
// how many superseded .partial files it left in plan.WAL at or after low,
// and whether it dropped any deletion. The caller sets plan.WALHorizon
// after; it must be set before.
func keepWALFrom(plan *RetentionPlan, low string) (superseded int, dropped bool) {
	horizon := plan.WALHorizon[8:]
	var del []WALDeletion
	for _, d := range plan.WAL {
		pos, ok := walPosition(d.Name)
		sup := wal.IsPartialName(d.Name) && pos >= horizon
		if ok && pos >= low && !sup {
			plan.KeptWAL++
			continue
		}
		if ok && pos >= low {
			superseded++
		}
		del = append(del, d)
	}
	if len(del) == len(plan.WAL) {
		return 0, false
	}
	plan.WAL = del
	return superseded, true
}
