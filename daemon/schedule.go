package daemon

import (
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
)

// Schedule is a site's basebackup schedule: PGHoard's
// basebackup_interval_hours, basebackup_hour and basebackup_minute.
type Schedule struct {
	// Interval is the time between scheduled backups. Zero means
	// backups are taken only on request (basebackup_interval_hours null),
	// not even a first one.
	Interval time.Duration
	// Anchored pins the schedule's slots to Hour:Minute UTC: the slots are
	// that time of day plus whole intervals (every 6 h from 01:00 gives
	// 01:00, 07:00, 13:00 and 19:00).
	Anchored     bool
	Hour, Minute int
	// IncrementalInterval is the time between incremental backups
	// (PostgreSQL 17+) taken between the full ones; zero means none.
	IncrementalInterval time.Duration
}

// Decision is what the schedule says at one moment.
type Decision struct {
	// Due is set when a scheduled backup should start now.
	Due bool
	// Next is when the next scheduled backup falls due when none is due
	// now; zero when the schedule never takes one.
	Next time.Time
	// Normalized is the slot a backup started now belongs to (the
	// normalized-backup-time metadata); zero when the schedule is not
	// anchored.
	Normalized time.Time
	// Incremental is set, with Due, when the backup due is an
	// incremental one (IncrementalInterval) rather than a full one.
	Incremental bool
	// NoBackup is set, with Due, when the backup is due because no
	// backup counts (none stored, none of the node's system).
	NoBackup bool
	// Why explains the decision, for logs.
	Why string
}

// Decide applies PGHoard's rules to the site's backups at now:
//
//   - with no interval, nothing is ever due: backups are taken on request;
//   - with no backup at all, one is due at once;
//   - anchored, the current slot is the latest Hour:Minute + k*Interval at
//     or before now (see Slot); a backup is due when the slot is at
//     least half an interval after the slot of the last scheduled backup
//     (its normalized-backup-time, else its start time; a site with only
//     requested backups counts from the newest). The half interval keeps
//     a changed hour or minute from causing a burst of backups: the
//     schedule drifts to the new time instead;
//   - not anchored, a backup is due one interval after the start of the
//     newest backup, whatever its reason.
//
// Only full backups count for those rules. With an IncrementalInterval, an
// incremental backup is due when no full one is and the newest backup,
// full or incremental, started at least that long ago.
//
// Where some backups' metadata authenticates, only those count
// (archive.Trusted): a planted backup that claims to be new would
// otherwise hold back every scheduled backup.
func (s Schedule) Decide(now time.Time, backups []*archive.BackupInfo) Decision {
	backups = archive.Trusted(backups)
	var full []*archive.BackupInfo
	for _, b := range backups {
		if b.Parent == "" {
			full = append(full, b)
		}
	}
	d := s.decideFull(now, full)
	if d.Due || s.IncrementalInterval <= 0 || s.Interval <= 0 || len(backups) == 0 {
		return d
	}
	newest := backups[0]
	for _, b := range backups[1:] {
		if b.StartTime.After(newest.StartTime) {
			newest = b
		}
	}
	next := newest.StartTime.Add(s.IncrementalInterval)
	if !now.Before(next) {
		return Decision{Due: true, Incremental: true, Why: "an incremental interval has passed since the newest basebackup started"}
	}
	if d.Next.IsZero() || next.Before(d.Next) {
		d.Next = next
		d.Why += "; an incremental backup is due next"
	}
	return d
}

// decideFull applies the rules to the full backups.
func (s Schedule) decideFull(now time.Time, backups []*archive.BackupInfo) Decision {
	now = now.UTC()
	var d Decision
	if s.Anchored && s.Interval > 0 {
		d.Normalized = s.Slot(now)
	}
	switch {
	case s.Interval <= 0:
		d.Why = "automatic basebackups are off (basebackup_interval_hours is null); waiting for a request"
		return d
	case len(backups) == 0:
		d.Due, d.NoBackup, d.Why = true, true, "the site has no basebackup"
		return d
	}
	bs := append([]*archive.BackupInfo(nil), backups...)
	archive.SortBackups(bs)
	newest := bs[len(bs)-1]

	if !s.Anchored {
		d.Next = newest.StartTime.Add(s.Interval)
		if !now.Before(d.Next) {
			d.Due, d.Next = true, time.Time{}
			d.Why = "an interval has passed since the newest basebackup started"
		} else {
			d.Why = "the newest basebackup is less than an interval old"
		}
		return d
	}

	ref := newest
	for i := len(bs) - 1; i >= 0; i-- {
		if bs[i].BackupReason != basebackup.ReasonRequested {
			ref = bs[i]
			break
		}
	}
	last := ref.NormalizedTime
	if last.IsZero() {
		last = ref.StartTime
	}
	half := s.Interval / 2
	if d.Normalized.Sub(last) >= half {
		d.Due = true
		d.Why = "a new schedule slot has begun since the last scheduled basebackup"
		return d
	}
	next := d.Normalized.Add(s.Interval)
	for next.Sub(last) < half {
		next = next.Add(s.Interval)
	}
	d.Next = next
	d.Why = "the last scheduled basebackup is in the current schedule slot"
	return d
}

// Slot returns the anchored schedule's slot holding t: the latest
// Hour:Minute + k*Interval at or before t. Slots count from Hour:Minute on
// 1970-01-01 UTC, so they stay put whatever the interval; for an interval
// that divides a day (PGHoard's usual 24, 12, 6 ... hours) they are simply
// the anchor time of every day plus whole intervals. Without an interval
// there are no slots: Slot returns the zero time.
func (s Schedule) Slot(t time.Time) time.Time {
	t = t.UTC()
	epoch := time.Date(1970, 1, 1, s.Hour, s.Minute, 0, 0, time.UTC)
	if s.Interval <= 0 {
		return time.Time{}
	}
	// Time.Sub saturates after 292 years, far from any real clock.
	k := t.Sub(epoch) / s.Interval
	if slot := epoch.Add(k * s.Interval); slot.After(t) {
		k--
	}
	return epoch.Add(k * s.Interval)
}

// clockSkewTolerance is how far the server's clock may be ahead of this
// host's before the guard takes a backup's start time for one in the
// future (clockGuard): a few seconds are common, and harmless.
const clockSkewTolerance = 5 * time.Minute

// clockGuard keeps the backup loop's schedule sane when the wall clocks
// jump or disagree. Decide compares backups' start times, which are the
// server's clock (basebackup records clock_timestamp()), with this host's
// clock: with this host's clock ahead of the server's by more than an
// interval, every backup stored is an interval old the moment it is
// listed, and the schedule would take one backup after another (and
// basebackup_count would delete the older ones to make room); with the
// newest backup started after this host's clock (taken while the clocks
// were ahead, NTP has set them back since) no backup would be due until
// the clock caught up with it, a year later after a clock a year ahead.
// The guard counts on the monotonic clock (time.Now's monotonic
// reading, which no clock setting moves) from the loop's start and from
// the scheduled backups the loop started.
type clockGuard struct {
	started  time.Time // when the backup loop started
	lastFull time.Time // when its last scheduled full backup started
	lastIncr time.Time // when its last scheduled incremental backup started
}

// check returns dec as the loop follows it at now (time.Now(), with its
// monotonic reading), and what it changed, for the log ("" when nothing):
//
//   - a backup due less than half its interval (Interval, or
//     IncrementalInterval for an incremental one) after the loop started
//     its last scheduled backup of that kind is held back until that half
//     interval has passed: the schedule never takes more than two in an
//     interval, whatever the clocks say; except one due because no backup
//     counts (Decision.NoBackup: none stored, or none of the node's
//     system after a pg_upgrade), which no clock explains and which a
//     restore of the node needs;
//   - a backup not due whose Next is more than an interval (one and a
//     half when anchored; and clockSkewTolerance) away (the newest
//     backup starts after now by this host's clock) is due one
//     interval after the loop's last scheduled full backup, or its start:
//     the schedule never stops for longer than an interval, whatever the
//     clocks say.
func (g *clockGuard) check(now time.Time, s Schedule, dec Decision) (Decision, string) {
	if s.Interval <= 0 {
		return dec, ""
	}
	if dec.Due {
		last, every := g.lastFull, s.Interval
		if dec.Incremental {
			last, every = g.lastIncr, s.IncrementalInterval
		}
		if !dec.NoBackup && !last.IsZero() && now.Sub(last) < every/2 {
			dec.Due, dec.Incremental, dec.Next = false, false, last.Add(every/2)
			dec.Why = "held back: the last scheduled basebackup of this daemon started less than half an interval ago"
			return dec, "held"
		}
		return dec, ""
	}
	// With every clock right, Decide's next backup is at most an
	// interval away, or, anchored, one and a half: a backup late in a
	// slot (taken by hand, or before basebackup_hour was set) puts the
	// next slot less than half an interval after it, so the one after
	// that is due.
	reach := s.Interval
	if s.Anchored {
		reach += s.Interval / 2
	}
	if dec.Next.IsZero() || dec.Next.Sub(now) <= reach+clockSkewTolerance {
		return dec, ""
	}
	from := g.started
	if g.lastFull.After(from) {
		from = g.lastFull
	}
	if now.Sub(from) >= s.Interval {
		dec.Due, dec.Incremental, dec.Next = true, false, time.Time{}
		dec.Why = "the newest basebackup starts after this host's clock reads now, and an interval has passed since this daemon started or took its last scheduled basebackup"
		return dec, "future"
	}
	dec.Next = from.Add(s.Interval)
	return dec, "future"
}
