package archive

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// PutPartialWAL stores the .partial segment at path (its base name must be
// "<segment>.partial") as xlog/<segment>.partial, REPLACING any object of
// that name. It exists for the daemon's WAL receiver, which uploads the
// segment it is still receiving every wal_partial_upload_interval as it
// grows, and the last .partial of an ended timeline once it is final: each
// copy holds more WAL than the previous one, so the newest wins.
//
// It is never used for complete segments, .history or .backup files: those
// go through PushWAL, which never overwrites an archived object. A .partial
// object is never needed by a restore that has the complete segment, and
// restores fall back to it only at the end of the archive, so replacing it
// cannot make the archive worse than before.
//
// When the stored object already has the file's hash, nothing is written.
func (a *Archive) PutPartialWAL(ctx context.Context, path string, o PushOptions) (PushResult, error) {
	name := filepath.Base(path)
	if !wal.IsPartialName(name) {
		return PushResult{}, fmt.Errorf("put partial %s: %q is not a <segment>.partial file name", path, name)
	}
	src, res, err := a.openWALUpload(path, name, o, true)
	if err != nil {
		return res, fmt.Errorf("put partial %s: %w", path, err)
	}
	defer src.Close()
	alg := res.HashAlgorithm

	// Skip the upload when the stored copy has the same hash (a retry
	// after a crash, or a partial segment that did not grow).
	switch obj, err := a.Store.Stat(ctx, res.Key); {
	case errors.Is(err, storage.ErrNotFound):
	case err != nil:
		return res, fmt.Errorf("put partial %s: stat %s: %w", path, res.Key, err)
	case obj.Metadata[MetaHash] == res.Hash && obj.Metadata[MetaHashAlgorithm] == alg:
		return res, nil
	}

	if err := a.storeWAL(ctx, src, &res); err != nil {
		return res, fmt.Errorf("put partial %s: %w", path, err)
	}
	return res, nil
}
