package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/storage"
)

// A PostgreSQL 17+ incremental backup is taken against its parent, the
// newest backup when it started, and is restorable only while the
// parent's chain is stored. Once its control object is listed, retention
// keeps that chain (keepParents); before, it is not listed, and a backup
// that completes meanwhile (the daemon's schedule beside `hoard
// basebackup --incremental`, another host) can make the parent one that
// retention deletes. So the backup records its parent in the store
// before it sends BASE_BACKUP, and retention reads the records:
//
//   - The backup stores a marker,
//     basebackup_chunk/hoard-incremental/<parent>/<time>-<pid>, after it
//     chose the parent and before BASE_BACKUP, then checks that every
//     backup of the parent's chain is still stored (choosing again when
//     one went). A failed backup deletes its marker; a completed one
//     leaves it, so that a retention run planned before the backup was
//     listed still sees it when it applies its plan.
//   - Archive.PlanRetention keeps the chain of every marker's parent
//     (keepMarked), and ApplyRetention lists the markers again before it
//     deletes each backup. A backup that stores its marker after that
//     listing and checks its parent before the deletion lands is left:
//     its check when it completes finds the parent gone and it fails.
//   - A marker no longer counts once it is stale as an orphaned chunk
//     folder is (orphanAged): written more than a day ago and before
//     the newest backup started, by the storage's clock (storedAt).
//     Retention then deletes it. A backup
//     that runs for longer stores a new marker every
//     IncrementalMarkerRefresh and deletes the previous one
//     (KeepIncrementalMarker), so its own never goes stale while those
//     writes succeed. One that went (stale, or deleted by someone) may
//     have let retention delete the chain at any moment: the backup
//     stores a new marker just before its last check of the chain, so
//     the check refuses a deletion before it and retention keeps the
//     chain after it. Once its control object is stored, it checks that
//     this marker is still there (CheckIncrementalMarker) and the chain
//     again, and withdraws the backup otherwise: a retention run that
//     listed the markers while it was gone may delete the chain later.
//
// Someone who can write to the bucket can plant markers: a marker only
// ever makes retention keep backups (and their WAL), and a planted one
// for a day at most unless it is planted again, as planted chunks keep
// WAL (keepRunningWAL).

// incrementalMarkerFolder holds the markers of incremental backups, under
// basebackup_chunk/; it is not a backup's chunk folder.
const incrementalMarkerFolder = "hoard-incremental"

// FormatIncrementalMarker is the format metadata of the markers.
const FormatIncrementalMarker = "hoard-incremental-marker-v1"

// ErrIncrementalMarkerLost is returned (wrapped) when the marker of an
// incremental backup is gone before the backup's control object was
// stored: a retention run may have missed it meanwhile and may delete a
// backup of the parent's chain, so the backup must not count as stored.
var ErrIncrementalMarkerLost = errors.New("incremental backup's marker lost while it ran")

func (l Layout) incrementalMarkerDir() string {
	return l.Dir(BasebackupChunkDir) + incrementalMarkerFolder + "/"
}

// MarkIncrementalParent stores the marker of an incremental backup taken
// against backup parent, before BASE_BACKUP, and returns its key.
func (a *Archive) MarkIncrementalParent(ctx context.Context, parent string) (string, error) {
	key := a.Layout.incrementalMarkerDir() + BackupName(parent) + "/" + fmt.Sprintf("%d-%d", time.Now().UnixNano(), os.Getpid())
	md := storage.Metadata{MetaFormat: FormatIncrementalMarker}
	if _, err := a.Codec.Put(ctx, a.Store, key, bytes.NewReader(nil), 0, md); err != nil {
		return "", fmt.Errorf("store marker %s: %w", key, err)
	}
	return key, nil
}

// CheckIncrementalMarker returns nil when the marker key
// (MarkIncrementalParent) is still stored, and an error wrapping
// ErrIncrementalMarkerLost when it is gone (or the store's error when it
// cannot tell). An incremental backup calls it once its control object
// is stored, before it counts as stored: see basebackup's checkStored for
// why a marker there all along means retention keeps the chain. Only its
// own backup writes the key (the time and process are in it), so its
// presence is enough; someone who can write the bucket and plants it
// again after deleting it could as well delete the parent itself.
func (a *Archive) CheckIncrementalMarker(ctx context.Context, key string) error {
	_, err := a.Store.Stat(ctx, key)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("%w: %s is gone", ErrIncrementalMarkerLost, key)
	case err != nil:
		return fmt.Errorf("marker %s: %w", key, err)
	}
	return nil
}

// markerStale returns whether a marker no longer counts at now, as an
// interrupted backup's chunk folder would not (orphanAged); newest is the
// start of the newest backup the plan trusts.
func markerStale(newest, now time.Time) func(storage.Object) bool {
	return func(o storage.Object) bool { return orphanAged(storedAt(o), newest, now) }
}

// incrementalMarks lists the markers of incremental backups in a's own
// store. It returns the parents the markers that are not stale name,
// each with the key of a marker naming it, and the stale markers. A key
// of another shape than a marker's counts for nothing; it goes once
// stale.
func (a *Archive) incrementalMarks(ctx context.Context, isStale func(storage.Object) bool) (map[string]string, []storage.Object, error) {
	dir := a.Layout.incrementalMarkerDir()
	parents := map[string]string{}
	var stale []storage.Object
	err := a.Store.List(ctx, dir, func(o storage.Object) error {
		if isStale(o) {
			stale = append(stale, o)
			return nil
		}
		parent, id, ok := strings.Cut(strings.TrimPrefix(o.Key, dir), "/")
		if ok && id != "" && !strings.Contains(id, "/") && parent != "" && BackupName(parent) == parent {
			if _, seen := parents[parent]; !seen {
				parents[parent] = o.Key
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("list %s of site %s: %w", dir, a.Site, err)
	}
	return parents, stale, nil
}

// staleMarkers returns the deletion of the stale markers, nil when there
// are none.
func (a *Archive) staleMarkers(stale []storage.Object) *OrphanDeletion {
	if len(stale) == 0 {
		return nil
	}
	d := &OrphanDeletion{Site: a.Site, Folder: a.Layout.incrementalMarkerDir(),
		Reason: fmt.Sprintf("markers of incremental backups written more than %s ago and before the newest backup started", fmtDays(OrphanMinAge))}
	for _, o := range stale {
		d.Keys = append(d.Keys, o.Key)
		d.Size += o.Size
	}
	return d
}

// keepMarked moves into plan.Keep every backup planned for deletion that
// the chain of a marked parent (parents: name -> the marker's key) holds,
// and returns the names it moved, oldest first.
func keepMarked(plan *RetentionPlan, parents map[string]string) []string {
	if len(parents) == 0 || len(plan.Delete) == 0 {
		return nil
	}
	byName := map[string]*BackupInfo{}
	for _, ds := range [][]BackupDecision{plan.Keep, plan.Delete} {
		for _, d := range ds {
			if _, ok := byName[d.Backup.Name]; !ok {
				byName[d.Backup.Name] = d.Backup
			}
		}
	}
	names := make([]string, 0, len(parents))
	for n := range parents {
		names = append(names, n)
	}
	sort.Strings(names)
	needed := map[string]string{} // backup -> the marker that needs it
	for _, n := range names {
		for cur := n; cur != ""; {
			b, ok := byName[cur]
			if !ok {
				break
			}
			if _, done := needed[cur]; done {
				break
			}
			needed[cur] = parents[n]
			cur = b.Parent
		}
	}
	var del []BackupDecision
	var moved []string
	for _, d := range plan.Delete {
		marker, ok := needed[d.Backup.Name]
		if !ok {
			del = append(del, d)
			continue
		}
		d.Reason = fmt.Sprintf("%s; kept: an incremental backup in progress needs it (its chain of parents; marker %s)", d.Reason, marker)
		plan.Keep = append(plan.Keep, d)
		moved = append(moved, d.Backup.Name)
	}
	if len(moved) == 0 {
		return nil
	}
	plan.Delete = del
	sortDecisions(plan.Keep)
	return moved
}

// keepMarkedAgain lists the markers again before ApplyRetention deletes a
// backup, and keeps what a marker written since the plan needs: the
// chain of its parent, the WAL from the start of each backup moved, and
// every delta object (the plan chose them from fewer kept backups). A
// marker the plan deletes as stale counts no more.
func (a *Archive) keepMarkedAgain(ctx context.Context, plan *RetentionPlan, log zerolog.Logger) error {
	planned := map[string]bool{}
	for _, o := range plan.Orphans {
		for _, k := range o.Keys {
			planned[k] = true
		}
	}
	parents, _, err := a.incrementalMarks(ctx, func(o storage.Object) bool { return planned[o.Key] })
	if err != nil {
		return err
	}
	moved := keepMarked(plan, parents)
	if len(moved) == 0 {
		return nil
	}
	log.Info().Strs("backups", moved).Msg("retention: backups kept: an incremental backup that started after the plan needs them")
	if plan.WALHorizon != "" {
		var low *BackupInfo
		for _, k := range plan.Keep {
			if !slices.Contains(moved, k.Backup.Name) {
				continue
			}
			if startSegment(k.Backup) == "" {
				low = nil
				break
			}
			if low == nil || startSegment(k.Backup)[8:] < startSegment(low)[8:] {
				low = k.Backup
			}
		}
		switch {
		case low == nil:
			keepWALFrom(plan, "")
			plan.WALHorizon, plan.WALHorizonBackup = "", ""
		case startSegment(low)[8:] < plan.WALHorizon[8:]:
			keepWALFrom(plan, startSegment(low)[8:])
			plan.WALHorizon, plan.WALHorizonBackup = startSegment(low), low.Name
		}
	}
	plan.Delta = nil
	return nil
}

// IncrementalMarkerRefresh is how often a running incremental backup
// stores its marker again (KeepIncrementalMarker): a quarter of
// OrphanMinAge, so that a backup running for days keeps its parent's
// chain, even when a few of the new markers fail to store.
const IncrementalMarkerRefresh = OrphanMinAge / 4

// KeepIncrementalMarker keeps the marker key (MarkIncrementalParent) of
// an incremental backup counting for as long as the backup runs: a
// marker counts no more once it is stale (markerStale, a day old), so at
// each tick it stores a new marker of the same parent, then deletes the
// previous one; one is always stored. It returns when ctx ends, with the
// key of the marker stored last (the one a failed backup deletes). A new
// marker that fails to store is logged and tried at the next tick: the
// previous one counts meanwhile. Should none store for a day, retention
// may delete the chain: the backup stores a new marker before its last
// check of its parent's chain (before its control object), which refuses
// a chain deleted before it, and keeps retention from deleting it after.
func (a *Archive) KeepIncrementalMarker(ctx context.Context, key string, tick <-chan time.Time, log zerolog.Logger) string {
	parent, _, _ := strings.Cut(strings.TrimPrefix(key, a.Layout.incrementalMarkerDir()), "/")
	for {
		select {
		case <-ctx.Done():
			return key
		case <-tick:
		}
		next, err := a.MarkIncrementalParent(ctx, parent)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn().Err(err).Str("marker", key).Msg("incremental backup's marker not stored again: the previous one counts until it is a day old; trying again later")
			}
			continue
		}
		// A crash (or a failed delete) between the two leaves both
		// markers: the older one goes once it is stale.
		if err := a.Store.Delete(ctx, key); err != nil && ctx.Err() == nil {
			log.Warn().Err(err).Str("marker", key).Msg("incremental backup's previous marker not deleted: retention deletes it once it is stale")
		}
		key = next
	}
}
