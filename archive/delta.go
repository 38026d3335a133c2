package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/hoardbackup/hoard/storage"
)

// DeltaDir holds the objects of PGHoard's delta backups (pghoard-delta-v1
// and v2): one file of PGDATA each, not a tar, named by the BLAKE2s-256 hex
// digest of its contents and shared by every delta backup holding the
// same file. An object is uploaded only when no existing delta manifest
// names its digest, so it outlives the backup that wrote it for as long
// as any backup refers to it.
const DeltaDir = "basebackup_delta"

// deltaDigest matches a delta object's name: 64 lowercase hex digits.
var deltaDigest = regexp.MustCompile(`^[0-9a-f]{64}$`)

// DeltaRef is what a delta backup's manifest records of a delta object
// it refers to.
type DeltaRef struct {
	FileSize   int64 // the file's size: what the object must decode to
	StoredSize int64 // the object's size when the backup stored or reused it
}

// DeltaRefs returns the delta objects that a delta backup's manifest
// refers to, by digest: the files of its snapshot_result whose hexdigest
// is set (the others are embedded in the manifest or bundled in its
// chunks). A digest that is not 64 hex digits is an error: it could name
// an object outside DeltaDir.
func DeltaRefs(m *Manifest) (map[string]DeltaRef, error) {
	var dm DeltaManifest // its lists bounded: MaxDeltaEntries
	if len(m.DeltaManifest) == 0 {
		return nil, fmt.Errorf("the delta backup's manifest has no %q", "manifest")
	}
	if err := json.Unmarshal(m.DeltaManifest, &dm); err != nil {
		return nil, fmt.Errorf("delta manifest: %w", err)
	}
	refs := map[string]DeltaRef{}
	for _, f := range dm.SnapshotResult.State.Files {
		if f.Hexdigest == "" {
			continue
		}
		if !deltaDigest.MatchString(f.Hexdigest) {
			return nil, fmt.Errorf("delta manifest: file %s has hexdigest %s, not 64 hex digits", Quoted(f.RelativePath), Quoted(f.Hexdigest))
		}
		refs[f.Hexdigest] = DeltaRef{FileSize: f.FileSize, StoredSize: f.StoredFileSize}
	}
	return refs, nil
}

// DeltaKey returns the key of the delta object with the given digest.
func (l Layout) DeltaKey(digest string) string { return l.join(DeltaDir, digest) }

// DeltaDeletion is a delta object (DeltaDir) of the site that no backup
// retention keeps refers to.
type DeltaDeletion struct {
	Site   string
	Key    string
	Size   int64
	Reason string
}

func isDelta(format string) bool { return format == FormatDeltaV1 || format == FormatDeltaV2 }

// planDelta adds to plan the delta objects of a's own store that no kept
// backup refers to. It deletes nothing when it cannot know every
// reference: a damaged backup, or a kept delta backup whose manifest
// cannot be read, stops it with a note. Where this site has no private
// key for a manifest, the backup's reference list (ReadDeltaRefs) stands
// in for it, and must verify. And
// it deletes nothing while a delta backup may be running, because a
// running PGHoard delta backup uploads its objects before its control
// object and reuses, without uploading again, every object an existing
// manifest names, a backup this plan deletes included: when a delta
// object or a delta bundle outside every listed backup was written after
// the newest backup started (and no listed backup refers to it), or within
// OrphanMinAge, the objects wait for a later run. Otherwise an object goes when only backups this plan
// deletes refer to it, or when none does and it was written more than
// OrphanMinAge ago (left by a backup that never completed, or by an
// interrupted run). A PGHoard delta backup that starts between this plan
// and its application, reusing an object only a deleted backup named, is
// not seen: run retention when no PGHoard delta backup runs, as PGHoard's
// daemon does. A backup's references are those of the manifest
// keepKnownGood checked (checked), where it checked the backup; others
// are read (BackupDeltaRefs).
func (a *Archive) planDelta(ctx context.Context, plan *RetentionPlan, checked checkedRefs, damaged int, listed map[string]bool, newest, now time.Time) error {
	dir := a.Layout.Dir(DeltaDir)
	var objs []storage.Object
	err := a.Store.List(ctx, dir, func(o storage.Object) error {
		if deltaDigest.MatchString(strings.TrimPrefix(o.Key, dir)) {
			objs = append(objs, o)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list %s of site %s: %w", dir, a.Site, err)
	}
	if len(objs) == 0 {
		return nil
	}
	skip := func(why string) error {
		plan.DeltaKept = fmt.Sprintf("%d delta objects under %s kept: %s", len(objs), dir, why)
		plan.Notes = append(plan.Notes, plan.DeltaKept)
		return nil
	}
	if damaged > 0 {
		return skip("a damaged backup may refer to them")
	}
	kept := map[string]bool{}
	for _, k := range plan.Keep {
		if !isDelta(k.Backup.Format) || (k.Site != "" && k.Site != a.Site) {
			continue
		}
		r, err := a.deltaRefsOf(ctx, checked, k.Backup)
		var se *sealedRefsError
		switch {
		case errors.As(err, &se) && errors.Is(se.list, ErrNoDeltaRefs):
			// The manifest, encrypted, is then the only list of the
			// objects the backup refers to (PGHoard's, an older
			// hoard's): none can be known unreferenced without it.
			return skip(fmt.Sprintf("kept delta backup %s lists the delta objects it refers to only in its encrypted manifest (it has no reference list: a PGHoard backup, an older hoard's, or its list was removed), and this site has no private key for it (%v): run retention where the private key is configured to delete unreferenced delta objects", k.Backup.Name, se.manifest))
		case errors.As(err, &se):
			return skip(fmt.Sprintf("the reference list of kept delta backup %s does not verify (%v): it may have been altered by someone with write access to the bucket; its manifest is encrypted and this site has no private key for it (%v)", k.Backup.Name, se.list, se.manifest))
		case err != nil:
			return skip(fmt.Sprintf("the manifest of kept backup %s cannot be read (retention needs it to know which delta objects it refers to): %v", k.Backup.Name, err))
		}
		for d := range r {
			kept[d] = true
		}
	}
	freed := map[string]string{} // digest -> a backup this plan deletes that refers to it
	for _, d := range plan.Delete {
		if !isDelta(d.Backup.Format) || (d.Site != "" && d.Site != a.Site) {
			continue
		}
		r, err := a.deltaRefsOf(ctx, checked, d.Backup)
		if err != nil {
			continue // then its objects go as unreferenced, a day after they were written
		}
		for dg := range r {
			freed[dg] = d.Backup.Name
		}
	}
	for _, o := range objs {
		digest := strings.TrimPrefix(o.Key, dir)
		if kept[digest] || freed[digest] != "" {
			continue // written by a listed backup, maybe after the newest started: the newest itself
		}
		if at := storedAt(o); at.IsZero() || !at.Before(newest) {
			return skip(fmt.Sprintf("%s was written after the newest backup started (a delta backup may be running)", o.Key))
		}
	}
	bundles := a.Layout.Dir(basebackupDeltaChunkDir)
	busy := ""
	err = a.Store.List(ctx, bundles, func(o storage.Object) error {
		folder, _, ok := strings.Cut(strings.TrimPrefix(o.Key, bundles), "/")
		if ok && !listed[folder] && folder != deltaRetentionFolder && !orphanAged(storedAt(o), newest, now) && busy == "" {
			busy = o.Key
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list %s of site %s: %w", bundles, a.Site, err)
	}
	if busy != "" {
		return skip(fmt.Sprintf("%s belongs to no listed backup and is recent (a delta backup may be running)", busy))
	}
	for _, o := range objs {
		digest := strings.TrimPrefix(o.Key, dir)
		if kept[digest] {
			continue
		}
		reason := ""
		switch {
		case freed[digest] != "":
			reason = fmt.Sprintf("only deleted backups refer to it (%s)", freed[digest])
		case now.Sub(storedAt(o)) > OrphanMinAge:
			reason = fmt.Sprintf("no backup refers to it, and it was written at %s, more than %s ago", fmtTime(storedAt(o)), fmtDays(OrphanMinAge))
		default:
			continue
		}
		plan.Delta = append(plan.Delta, DeltaDeletion{Site: a.Site, Key: o.Key, Size: o.Size, Reason: reason})
		if o.Damaged != nil {
			plan.Notes = append(plan.Notes, leftNote("delta object "+o.Key, o.Damaged))
		}
	}
	return nil
}

// checkedRefs are the delta references of the delta backups
// keepKnownGood checked, from the manifest each check read and found the
// backup's own (CheckControl), whatever the check then found of its
// chunks and delta objects: a backup whose control object did not read
// has none here. planDelta takes them rather than read the control
// object again: one download and decode of it, and the references are
// those of the object checked, whatever is stored under its key by then.
type checkedRefs map[*BackupInfo]refsRead

// refsRead is a delta backup's references (deltaRefSet), or why its
// manifest gives none.
type refsRead struct {
	refs map[string]bool
	err  error
}

// deltaRefsOf returns the digests of the delta objects b refers to: from
// checked where keepKnownGood checked b, otherwise BackupDeltaRefs.
func (a *Archive) deltaRefsOf(ctx context.Context, checked checkedRefs, b *BackupInfo) (map[string]bool, error) {
	if r, ok := checked[b]; ok {
		return r.refs, r.err
	}
	return a.BackupDeltaRefs(ctx, b)
}

// sealedRefsError is a delta backup whose manifest this site cannot
// decrypt and whose reference list is missing or does not verify.
type sealedRefsError struct{ manifest, list error }

func (e *sealedRefsError) Error() string { return fmt.Sprintf("%v; %v", e.manifest, e.list) }
