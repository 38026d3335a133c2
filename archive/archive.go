package archive

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hoardbackup/hoard/storage"
)

// Archive is one site's archive: the store its objects live in, how they
// are encoded, and how they are named.
type Archive struct {
	Store  storage.Store
	Codec  *Codec
	Layout Layout
	Site   string
	// MovedFrom are the archives of the sites this one moved from (the
	// site's moved_from), each with its own store, codec and layout. Their
	// backups and WAL count for retention, which deletes from the site that
	// holds each object, and FetchWAL looks for WAL in them after a.
	MovedFrom []*Archive
}

// ListBackups returns the site's complete basebackups, oldest first. Only
// objects directly under basebackup/ count (PGHoard's rule), so chunks of a
// backup that never finished are never listed: the main object is written
// last.
func (a *Archive) ListBackups(ctx context.Context) ([]*BackupInfo, error) {
	dir := a.Layout.Dir(BasebackupDir)
	var keys []storage.Object
	err := a.Store.List(ctx, dir, func(o storage.Object) error {
		rest := strings.TrimPrefix(o.Key, dir)
		if rest == "" || strings.Contains(rest, "/") {
			return nil
		}
		keys = append(keys, o)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list backups of site %s: %w", a.Site, err)
	}
	var out []*BackupInfo
	for _, o := range keys {
		st, err := a.Store.Stat(ctx, o.Key)
		if errors.Is(err, storage.ErrNotFound) {
			continue // deleted since the listing
		}
		if err != nil {
			return nil, fmt.Errorf("stat backup %s: %w", o.Key, err)
		}
		b, err := ParseBackupInfo(o.Key, st.Size, st.Metadata)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	SortBackups(out)
	return out, nil
}

// ListAllBackups returns the complete basebackups of a and of every site
// it moved from (a.MovedFrom), oldest first, as PGHoard's restore lists
// them. Each backup's Archive is the archive that holds it: read its
// control object and chunks from there (ArchiveOf).
func (a *Archive) ListAllBackups(ctx context.Context) ([]*BackupInfo, error) {
	var out []*BackupInfo
	for _, s := range a.sites() {
		bs, err := s.ListBackups(ctx)
		if err != nil {
			return nil, err
		}
		for _, b := range bs {
			b.Archive = s
		}
		out = append(out, bs...)
	}
	SortBackups(out)
	return out, nil
}

// ArchiveOf returns the archive holding b: b.Archive when ListAllBackups
// set it, else a.
func (a *Archive) ArchiveOf(b *BackupInfo) *Archive {
	if b.Archive != nil {
		return b.Archive
	}
	return a
}

// FindBackup returns the backup called name (with or without the control
// suffix, or as a full key), or the newest when name is "" or "latest".
func (a *Archive) FindBackup(ctx context.Context, name string) (*BackupInfo, error) {
	bs, err := a.ListBackups(ctx)
	if err != nil {
		return nil, err
	}
	if len(bs) == 0 {
		return nil, fmt.Errorf("site %s has no basebackups: %w", a.Site, ErrNoBackup)
	}
	if name == "" || name == "latest" {
		return bs[len(bs)-1], nil
	}
	want := BackupName(name)
	for _, b := range bs {
		if b.Name == want {
			return b, nil
		}
	}
	return nil, fmt.Errorf("site %s has no basebackup %q (see hoard list): %w", a.Site, name, ErrNoBackup)
}

// ErrNoBackup is returned (wrapped) when no basebackup fits a request.
var ErrNoBackup = errors.New("no applicable basebackup")
