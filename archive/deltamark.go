package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/storage"
)

// A delta backup decides to reuse an existing delta object, without
// storing it again, long before its control object is listed; a retention
// run planned before the backup started may delete that object meanwhile.
// The two agree through markers in the store, written each before looking
// for the other's (as in Dekker's mutual exclusion; the stores hoard
// supports list what was written before the listing began):
//
//   - A hoard delta backup stores its marker,
//     basebackup_delta_chunk/<bb>/<bb>.running, before it looks for any
//     delta object, and removes it after its control object is stored.
//     Its bundle folder is then not empty while it runs, and, as it
//     stores the marker again every DeltaRunningRefresh
//     (KeepDeltaRunning), never without an object written within a day.
//     Retention may miss the backup only while the marker is not there
//     or is a day old: before each new write, after a write that failed
//     (which may have removed it) and before its control object, the
//     backup checks that the marker is as it last stored it and within
//     deltaRunningValid of that write (CheckDeltaRunning), and fails when
//     it is not (ErrDeltaMarkerLost); a failed write that left it so is
//     tried again.
//   - ApplyRetention, before it deletes any delta object, stores its own
//     marker under basebackup_delta_chunk/hoard-retention/, then looks
//     for a backup the plan did not see (a recent object in a bundle folder
//     of no backup the plan lists, or a control object it does not list):
//     if there is one, it deletes no delta object. It deletes them only
//     within DeltaDeleteWindow of storing its marker, and removes the
//     marker when done.
//   - The backup, after deciding every object it reuses and before it
//     writes its manifest, waits while a retention marker may belong to a
//     run still deleting (WaitDeltaRetention), then checks every reused
//     object again and stores again the ones that went.
//
// Either the retention run sees the backup's marker and deletes nothing,
// or the backup sees the retention's marker and checks its objects again
// after that run can no longer delete; a run that starts later sees the
// backup's marker until the backup is listed. A PGHoard delta backup
// writes no marker, but its bundles come first (its folder is not empty
// before it reuses objects).

// DeltaRunningSuffix ends the key of a running hoard delta backup's
// marker.
const DeltaRunningSuffix = ".running"

// FormatDeltaMarker is the format metadata of the markers.
const FormatDeltaMarker = "hoard-delta-marker-v1"

// deltaRetentionFolder holds the markers of retention runs deleting delta
// objects, under basebackup_delta_chunk/. A marker left by a run that
// died is an orphaned folder planOrphans deletes a day later.
const deltaRetentionFolder = "hoard-retention"

// DeltaDeleteWindow is how long after storing its marker a retention run
// may still delete delta objects; the rest wait for its next run.
const DeltaDeleteWindow = 5 * time.Minute

// deltaMarkerMargin covers a delete request still in flight when the
// window closes.
const deltaMarkerMargin = time.Minute

// DeltaRunningKey returns the key of delta backup name's marker.
func (l Layout) DeltaRunningKey(name string) string {
	b := BackupName(name)
	return l.DeltaChunkKey(b + "/" + b + DeltaRunningSuffix)
}

func (l Layout) deltaRetentionDir() string {
	return l.Dir(basebackupDeltaChunkDir) + deltaRetentionFolder + "/"
}

// putMarker stores an empty marker through the codec (encrypted where the
// site encrypts, so that Copy and the checks treat it as any object) and
// returns when the store says it was written.
func (a *Archive) putMarker(ctx context.Context, key string) (time.Time, error) {
	md := storage.Metadata{MetaFormat: FormatDeltaMarker}
	if _, err := a.Codec.Put(ctx, a.Store, key, bytes.NewReader(nil), 0, md); err != nil {
		return time.Time{}, fmt.Errorf("store marker %s: %w", key, err)
	}
	o, err := a.Store.Stat(ctx, key)
	if err != nil {
		return time.Time{}, fmt.Errorf("marker %s: %w", key, err)
	}
	return storedAt(o), nil
}

// MarkDeltaRunning stores the marker of delta backup name, before it looks
// for any delta object, and returns when the store wrote it.
func (a *Archive) MarkDeltaRunning(ctx context.Context, name string) (time.Time, error) {
	return a.putMarker(ctx, a.Layout.DeltaRunningKey(name))
}

// UnmarkDeltaRunning removes delta backup name's marker, once its control
// object is stored.
func (a *Archive) UnmarkDeltaRunning(ctx context.Context, name string) error {
	k := a.Layout.DeltaRunningKey(name)
	if err := a.Store.Delete(ctx, k); err != nil {
		return fmt.Errorf("delete marker %s: %w", k, err)
	}
	return nil
}

// WaitDeltaRetention returns once no retention run can be deleting delta
// objects of a. A retention run deletes only within DeltaDeleteWindow of
// the moment before it stored its marker, so a marker stops counting
// DeltaDeleteWindow (and a margin for a delete in flight) after it was
// first seen here; one that the store says was written that long before
// since (the store's time of the caller's own marker; zero if unknown)
// never counts, so that a marker left by a run that died does not hold up
// every backup. wait, when not nil, is called each time a marker counts
// (tests); it polls every poll.
func (a *Archive) WaitDeltaRetention(ctx context.Context, since time.Time, poll time.Duration, wait func(key string)) error {
	dir := a.Layout.deltaRetentionDir()
	firstSeen := map[string]time.Time{}
	for {
		live := ""
		err := a.Store.List(ctx, dir, func(o storage.Object) error {
			if at := storedAt(o); !at.IsZero() && !since.IsZero() && !at.Add(DeltaDeleteWindow+deltaMarkerMargin).After(since) {
				return nil // written long before the caller's marker
			}
			if _, ok := firstSeen[o.Key]; !ok {
				firstSeen[o.Key] = time.Now()
			}
			if live == "" && time.Since(firstSeen[o.Key]) < DeltaDeleteWindow+deltaMarkerMargin {
				live = o.Key
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("list %s: %w", dir, err)
		}
		if live == "" {
			return nil
		}
		if wait != nil {
			wait(live)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(poll):
		}
	}
}

// deltaUnseen names a backup, running or complete, that plan did not see
// (nor delete): a control object plan does not list, or a recent object
// (or one without a time) in the bundle folder of no backup plan lists.
// "" when there is none.
func (a *Archive) deltaUnseen(ctx context.Context, plan RetentionPlan) (string, error) {
	seen := map[string]bool{}
	for _, ds := range [][]BackupDecision{plan.Keep, plan.Delete} {
		for _, d := range ds {
			if d.Site == "" || d.Site == a.Site {
				seen[d.Backup.Name] = true
			}
		}
	}
	var newest time.Time
	for _, k := range plan.Keep {
		if k.Backup.StartTime.After(newest) {
			newest = k.Backup.StartTime
		}
	}
	found := ""
	bdir := a.Layout.Dir(BasebackupDir)
	err := a.Store.List(ctx, bdir, func(o storage.Object) error {
		rest := strings.TrimPrefix(o.Key, bdir)
		if found == "" && !strings.Contains(rest, "/") && !seen[BackupName(rest)] {
			found = o.Key
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("list %s of site %s: %w", bdir, a.Site, err)
	}
	if found != "" {
		return found + " (a backup completed since the plan)", nil
	}
	cdir := a.Layout.Dir(basebackupDeltaChunkDir)
	err = a.Store.List(ctx, cdir, func(o storage.Object) error {
		folder, _, ok := strings.Cut(strings.TrimPrefix(o.Key, cdir), "/")
		if found != "" || !ok || seen[folder] || folder == deltaRetentionFolder {
			return nil
		}
		if at := storedAt(o); !orphanAged(at, newest, plan.Now) || time.Since(at) <= OrphanMinAge {
			found = o.Key + " (a delta backup may be running)"
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("list %s of site %s: %w", cdir, a.Site, err)
	}
	return found, nil
}

// DeltaRunningRefresh is how often a running hoard delta backup stores
// its marker again (KeepDeltaRunning): a quarter of OrphanMinAge.
const DeltaRunningRefresh = OrphanMinAge / 4

// deltaRunningValid is how long after its last write a running delta
// backup counts on its marker to show it to retention. Retention counts
// the marker until it is OrphanMinAge old by its own clock (orphanAged,
// deltaUnseen); the DeltaRunningRefresh left covers clocks that disagree
// (the backup's host, the storage's, retention's host) and the time from
// the backup's last check to its control object.
const deltaRunningValid = OrphanMinAge - DeltaRunningRefresh

// deltaRunningRetry is how soon KeepDeltaRunning tries again to store a
// marker whose write failed but which is still as the backup stored it
// (unless a tick comes first). The store's own retries (storage.Retry)
// came before, so the storage may be down for a while: each try is one
// more write, and a backup may spend hours trying.
const deltaRunningRetry = time.Minute

// ErrDeltaMarkerLost is returned when a running delta backup's marker is
// not in the store as the backup last stored it: gone (deleted by
// someone else, or by the local store itself when a write of it failed
// halfway), written since by another writer, or not stored again before
// retention may stop counting it. There may have been a moment when a
// retention run did not see the backup and deleted delta objects it
// reuses, so the backup must not be completed.
var ErrDeltaMarkerLost = errors.New("delta backup's marker lost while it ran")

// CheckDeltaRunning returns nil when delta backup name's marker is in the
// store as the backup last stored it, and retention still counts it at
// now: its time of writing by the storage's clock (storedAt) is at, the
// time MarkDeltaRunning or KeepDeltaRunning returned for the backup's
// last write, and now is within deltaRunningValid of at. Otherwise the
// error wraps ErrDeltaMarkerLost (or is the store's, when it cannot
// tell). The marker is stored whole or not at all and every write of it
// moves that time (the inode change time on a local store, which an
// unlink and a new link move too), so the same time means nobody removed
// or replaced it since; on SFTP, whose time is the modification time,
// only the backup's own writes are told apart. A marker whose store
// records no time (at zero) never ages, for retention as here.
func (a *Archive) CheckDeltaRunning(ctx context.Context, name string, at, now time.Time) error {
	key := a.Layout.DeltaRunningKey(name)
	o, err := a.Store.Stat(ctx, key)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("%w: %s is gone", ErrDeltaMarkerLost, key)
	case err != nil:
		return fmt.Errorf("marker %s: %w", key, err)
	case !storedAt(o).Equal(at):
		return fmt.Errorf("%w: %s was written at %s by another writer, not at %s by this backup",
			ErrDeltaMarkerLost, key, storedAt(o).UTC().Format(time.RFC3339Nano), at.UTC().Format(time.RFC3339Nano))
	case !at.IsZero() && now.Sub(at) > deltaRunningValid:
		return fmt.Errorf("%w: %s was last stored at %s, more than %s before %s: retention stops counting it %s after it was stored",
			ErrDeltaMarkerLost, key, at.UTC().Format(time.RFC3339Nano), deltaRunningValid, now.UTC().Format(time.RFC3339Nano), OrphanMinAge)
	}
	return nil
}

// KeepDeltaRunning keeps delta backup name's bundle folder from looking
// orphaned for as long as the backup runs: retention takes the folder of
// a backup it does not list for a running one only while something in it
// was written within OrphanMinAge or after the newest backup started
// (planOrphans, deltaUnseen), and a backup that stored its bundles first
// may spend longer than that on its delta objects. At each tick it
// checks that the marker is as the backup last stored it, at at
// (CheckDeltaRunning), then stores it again (MarkDeltaRunning), replacing
// it, so that the folder was always written to within
// DeltaRunningRefresh. Looking first matters: a marker someone deleted
// between two ticks, stored again, would hide that retention may not
// have seen the backup meanwhile. The tick's time is the clock the
// marker's age is judged by (tests simulate it).
//
// A write that fails (after the store's own retries, storage.Retry) may
// have removed the marker (the local store removes a key whose directory
// fsync failed, the previous copy with it) or left it as it was (S3,
// GCS, Azure and Swift keep an object whose new write failed). So it
// looks again: a marker still as the backup stored it was seen by
// retention all along, and the write is tried again every
// deltaRunningRetry (or at the next tick) while the marker stays so and
// within deltaRunningValid of its last write.
//
// It returns when stop is closed (the backup is done), with the
// storage's time of the last write, for the caller's own
// CheckDeltaRunning before it completes the backup. A write in flight
// then finishes first, its read-back included (a wait to try again does
// not): cut, it would have stored the marker at a time the caller does
// not know, and the caller, which must tell its own write from anyone
// else's, would take it for another writer's and fail a backup that
// retention saw all along. ctx cuts the I/O: when it ends (the backup is
// abandoned) it returns at once with the last write known, and a write
// cut by ctx is left to the caller's check. It returns early with an
// error wrapping ErrDeltaMarkerLost when the marker was not as stored,
// or could not be stored again before it would stop counting: retention
// may then not see the backup, so the caller must fail the backup rather
// than complete it.
func (a *Archive) KeepDeltaRunning(ctx context.Context, name string, at time.Time, tick <-chan time.Time, stop <-chan struct{}, log zerolog.Logger) (time.Time, error) {
	for {
		// A stop wins over a tick that came at the same time.
		select {
		case <-stop:
			return at, nil
		default:
		}
		var now time.Time
		select {
		case <-ctx.Done():
			return at, nil
		case <-stop:
			return at, nil
		case now = <-tick:
		}
		t, err := a.refreshDeltaRunning(ctx, name, at, now, tick, stop, log)
		if err == nil {
			at = t // the last write that completed, also if ctx ended since
			continue
		}
		if ctx.Err() != nil {
			return at, nil
		}
		return at, err
	}
}

// refreshDeltaRunning stores delta backup name's marker again for
// KeepDeltaRunning, at a tick at now, trying again while the marker stays
// as stored at at and valid, and returns the time of the new write, or
// at, without an error, when ctx ends or stop is closed while it waits
// to try again. The clock is now moved on by the time since, or the next
// tick's.
func (a *Archive) refreshDeltaRunning(ctx context.Context, name string, at, now time.Time, tick <-chan time.Time, stop <-chan struct{}, log zerolog.Logger) (time.Time, error) {
	since := time.Now()
	clock := func() time.Time { return now.Add(time.Since(since)) }
	for {
		err := a.CheckDeltaRunning(ctx, name, at, clock())
		if errors.Is(err, ErrDeltaMarkerLost) || ctx.Err() != nil {
			return at, err
		}
		if err == nil {
			t, werr := a.MarkDeltaRunning(ctx, name)
			if werr == nil || ctx.Err() != nil {
				return t, werr
			}
			// Gone (the local store removed it) or not as stored: lost.
			if cerr := a.CheckDeltaRunning(ctx, name, at, clock()); errors.Is(cerr, ErrDeltaMarkerLost) {
				return at, fmt.Errorf("%w; storing it again: %w", cerr, werr)
			}
			err = werr
		}
		// The marker was there as stored (or the store could not tell):
		// retention counts it until it expires. The next try must come
		// before that.
		if !at.IsZero() && clock().Add(deltaRunningRetry).Sub(at) > deltaRunningValid {
			return at, fmt.Errorf("%w: %s not stored again within %s of its last write at %s: %w",
				ErrDeltaMarkerLost, a.Layout.DeltaRunningKey(name), deltaRunningValid, at.UTC().Format(time.RFC3339Nano), err)
		}
		log.Warn().Err(err).Str("key", a.Layout.DeltaRunningKey(name)).Time("stored", at).
			Msg("delta backup's marker not stored again; the previous one still counts: trying again")
		select {
		case <-ctx.Done():
			return at, nil
		case <-stop:
			return at, nil // as stored at at (or the store could not tell)
		case <-time.After(deltaRunningRetry):
		case now = <-tick:
			since = time.Now()
		}
	}
}
