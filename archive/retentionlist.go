package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/hoardbackup/hoard/storage"
)

// Retention plans from listings, and a storage can lie by omission: a
// listing that returns fewer objects than the store holds (a page retried
// after an error, a listing not yet consistent), or a HEAD request (Stat)
// that answers "not found" for a stored object (a faulty proxy or cache in
// front of the storage). A backup retention does not see is not counted:
// the WAL from its start, the parent of an incremental one and the delta
// objects it refers to look unneeded. So retention looks for what the
// listing may have left out before it deletes anything, and at the first
// sign of it plans again from new listings (a backup that completed
// while it planned is the usual cause: appearedError), or stops,
// deleting nothing, where planning again cannot help:
//
//   - every chunk or bundle folder of no listed backup, whatever its age,
//     has its main object looked up by key (checkUnlisted);
//   - basebackup/ is listed a second time once the plan is made, and a
//     main object the first listing did not return stops it
//     (checkListedAgain): a single-tar backup (PGHoard's basic and pipe
//     modes) has no folder, and its main object is the only trace of it;
//   - a main object an earlier listing returned (a daemon's,
//     RetentionPolicy.Seen) and this one does not is looked up by key
//     (checkSeen);
//   - "not found" from HEAD is believed only when GET says so too
//     (statConfirmed): a backup or preservation request that HEAD denies
//     and GET reads stops retention.
//
// A storage that leaves the same single-tar backup out of every listing
// since before a daemon first listed it cannot be caught this way:
// nothing else in the bucket names it.

// ErrStorageContradicts is wrapped by the error of an object that HEAD
// (Store.Stat) answers "not found" for while a plain GET (Store.OpenRange)
// reads it.
var ErrStorageContradicts = errors.New("HEAD answers not found but GET reads the object")

// statConfirmed returns key's object as Stat does, except that a "not
// found" from Stat is checked with a plain GET of the object (OpenRange:
// Open asks HEAD first on most backends, so it would repeat the lie), of
// which it reads the first byte. When the GET finds the object,
// contradicted is set and the object holds its key only: its metadata is
// what HEAD denies. The caller decides whether that stops it.
func statConfirmed(ctx context.Context, st storage.Store, key string) (o storage.Object, contradicted bool, err error) {
	o, err = st.Stat(ctx, key)
	if !errors.Is(err, storage.ErrNotFound) {
		return o, false, err
	}
	// The whole object, not a range: a range of an empty object (a
	// preservation request) is an error on S3. Only a byte is read.
	rc, gerr := st.OpenRange(ctx, key, 0, -1)
	if errors.Is(gerr, storage.ErrNotFound) {
		return o, false, err
	}
	if gerr != nil {
		return storage.Object{}, false, fmt.Errorf("get %s (HEAD answered not found): %w", key, gerr)
	}
	defer rc.Close()
	_, rerr := rc.Read(make([]byte, 1))
	switch {
	case errors.Is(rerr, storage.ErrNotFound):
		return o, false, err
	case rerr != nil && rerr != io.EOF:
		return storage.Object{}, false, fmt.Errorf("get %s (HEAD answered not found): %w", key, rerr)
	}
	return storage.Object{Key: key}, true, nil
}

// contradiction is the error for key, which HEAD denies and GET reads.
func contradiction(site, key string) error {
	return fmt.Errorf("site %s: %s: %w: the storage (or a proxy or cache before it) contradicts itself; "+
		"retention deleted nothing: fix the storage, then run retention again", site, key, ErrStorageContradicts)
}

// firstStored returns the first of keys, main objects of site a listing
// left out (why), that is stored (statConfirmed), or "" when none is. An
// object HEAD denies and GET reads returns the contradiction, a failed
// lookup its error: either stops retention.
func firstStored(ctx context.Context, st storage.Store, site string, keys []string, why string) (string, error) {
	for _, key := range keys {
		_, contradicted, err := statConfirmed(ctx, st, key)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			continue
		case err != nil:
			return "", fmt.Errorf("stat %s (%s): %w", key, why, err)
		case contradicted:
			return "", contradiction(site, key)
		}
		return key, nil
	}
	return "", nil
}

// listingChangedError is the error of a plan whose listing of
// basebackup/ is out of date: a backup it left out is stored
// (checkUnlisted, checkListedAgain), most often one that completed while
// retention planned (its control object stored after the listing, its
// chunks before), or a backup it listed was deleted since
// (keepKnownGood: another retention run, the daemon's beside `hoard
// retention`, or a daemon on another host). Archive.PlanRetention plans
// again from new listings; a storage that leaves a backup out of every
// listing fails every attempt.
type listingChangedError struct {
	note string // for the plan made again
	err  error
}

func (e *listingChangedError) Error() string { return e.err.Error() }
func (e *listingChangedError) Unwrap() error { return e.err }

// appeared returns the listingChangedError of backup name, stored though
// the listing left it out.
func appeared(name string, err error) error {
	return &listingChangedError{err: err, note: fmt.Sprintf("backup %s was stored while retention planned "+
		"(it completed meanwhile, or a listing left it out): planned again with it", name)}
}

// checkUnlisted returns an error when the main object of backup name,
// whose chunk or bundle folder belongs to no listed backup, is stored
// after all (statConfirmed): the listing of basebackup/ left it out, or
// it completed since the listing. A plan made without it would delete
// the WAL from its start, its parent if it is an incremental backup, the
// delta objects it refers to and, once it is old, its chunks; so none is
// made. hoard names the main object with ControlSuffix, PGHoard without.
func (a *Archive) checkUnlisted(ctx context.Context, name string) error {
	keys := []string{a.Layout.BackupKey(name), a.Layout.join(BasebackupDir, name)}
	key, err := firstStored(ctx, a.Store, a.Site, keys, "its folder belongs to no listed backup")
	if err != nil || key == "" {
		return err
	}
	return appeared(name, fmt.Errorf("site %s: backup %s is stored (%s) but the listing of %s left it out "+
		"(the storage listed fewer objects than it holds, or the backup completed since): nothing deleted, run retention again",
		a.Site, name, key, a.Layout.Dir(BasebackupDir)))
}

// checkListedAgain lists basebackup/ of every site of a a second time and
// returns an error naming a main object that scan, the first listing,
// did not return and that is stored (statConfirmed). One that is not was
// deleted before the run and is still listed (a listing that lags behind
// deletes): no backup needs it.
func (a *Archive) checkListedAgain(ctx context.Context, scan Backups) error {
	first := listedKeys(scan)
	for _, s := range a.sites() {
		dir := s.Layout.Dir(BasebackupDir)
		var missed []string
		err := s.Store.List(ctx, dir, func(o storage.Object) error {
			rest := strings.TrimPrefix(o.Key, dir)
			if rest != "" && !strings.Contains(rest, "/") && !first[o.Key] {
				missed = append(missed, o.Key)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("list backups of site %s again: %w", s.Site, err)
		}
		key, err := firstStored(ctx, s.Store, s.Site, missed, "in a second listing, not in the first")
		if err != nil {
			return err
		}
		if key != "" {
			return appeared(BackupName(key), fmt.Errorf("site %s: backup %s is in a second listing of %s but the first left it out "+
				"(the storage listed fewer objects than it holds, or the backup completed since): nothing deleted, run retention again",
				s.Site, BackupName(key), dir))
		}
	}
	return nil
}

// checkSeen looks up by key each main object of seen (keys an earlier
// listing returned, RetentionPolicy.Seen) that scan does not hold, and
// returns an error naming the first that is stored: this listing left it
// out. One that is gone was deleted since, and is not needed.
func (a *Archive) checkSeen(ctx context.Context, scan Backups, seen []string) error {
	listed := listedKeys(scan)
	var missed []string
	for _, key := range seen {
		if !listed[key] && strings.HasPrefix(key, a.Layout.Dir(BasebackupDir)) {
			missed = append(missed, key)
		}
	}
	slices.Sort(missed)
	key, err := firstStored(ctx, a.Store, a.Site, slices.Compact(missed), "listed before, not now")
	if err != nil || key == "" {
		return err
	}
	return fmt.Errorf("site %s: backup %s is stored (%s) and was listed before, but the listing of %s left it out "+
		"(the storage listed fewer objects than it holds): nothing deleted, run retention again",
		a.Site, BackupName(key), key, a.Layout.Dir(BasebackupDir))
}

// listedKeys returns the keys of the main objects scan listed.
func listedKeys(scan Backups) map[string]bool {
	out := map[string]bool{}
	for _, b := range scan.Sound {
		out[b.Key] = true
	}
	for _, d := range scan.Damaged {
		out[d.Key] = true
	}
	return out
}
