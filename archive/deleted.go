package archive

import (
	"context"
	"errors"
	"fmt"

	"github.com/hoardbackup/hoard/storage"
)

// ErrBackupDeleted is wrapped by the error of a read of a backup (a
// restore, a check) during which its main object was deleted: retention
// deleted it meanwhile (ApplyRetention deletes the main object first,
// then the chunks), or someone did by hand. A chunk then goes missing
// because the backup is gone, not because it is damaged.
var ErrBackupDeleted = errors.New("backup deleted while it was read")

// DeletedWhileRead returns readErr, an error reading backup b's objects,
// wrapped with ErrBackupDeleted when b's main object is no longer stored
// (HEAD and GET agree, statConfirmed), and readErr as it is otherwise
// (also when the lookup fails).
func (a *Archive) DeletedWhileRead(ctx context.Context, b *BackupInfo, readErr error) error {
	if readErr == nil || !a.BackupGone(ctx, b) {
		return readErr
	}
	return fmt.Errorf("backup %s: %w (by retention, which deletes the backups the policy no longer keeps, "+
		"or by hand): see hoard list for the backups left, or keep a backup with a preservation request: %w", b.Name, ErrBackupDeleted, readErr)
}

// BackupGone reports whether backup b, listed before, is no longer
// stored: HEAD and GET of its main object both answer "not found"
// (statConfirmed). A failed lookup, or a canceled ctx, is false.
func (a *Archive) BackupGone(ctx context.Context, b *BackupInfo) bool {
	if ctx.Err() != nil {
		return false
	}
	_, _, err := statConfirmed(ctx, a.Store, b.Key)
	return errors.Is(err, storage.ErrNotFound)
}
