package restore

import (
	"archive/tar"
	"context"
	"errors"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/storage"
)

// PassedOver is a backup the automatic choice chose, then refused before
// writing anything, and passed over for an older one: its incremental
// chain is broken (Err wraps ErrBrokenChain), or it is damaged (Err wraps
// one of the errors of damage, see damaged).
type PassedOver struct {
	Backup *archive.BackupInfo
	Err    error
}

// damage are the errors that say a backup itself cannot be restored,
// whoever reads it again and whenever: its stored bytes do not decode
// (archive.DecodeError: a failed HMAC, corrupt compressed data, a
// truncated object, an unencrypted object in a site that encrypts), its
// control object is malformed, fails its checks or is another backup's,
// its manifest lists fewer chunks than its metadata counts, or its
// backup_manifest is missing or unreadable.
var damage = []error{
	ErrMissingChunks, ErrPGManifest, ErrNoBackupLabel, ErrUnsafeMember, ErrSizeMismatch,
	archive.ErrBadControl, archive.ErrBadManifest, archive.ErrControlLimit, archive.ErrForeignControl,
	archive.ErrBadDeltaManifest, archive.ErrStoredTooLarge, archive.ErrCompressionMismatch, archive.ErrUnencrypted,
	crypto.ErrTampered, compress.ErrCorrupt, storage.ErrChecksum, storage.ErrBadMetadata, tar.ErrHeader,
}

// damaged reports whether err, returned by the checks of a backup before
// anything is written, says that the backup is damaged: then the
// automatic choice passes it over for an older one. An error that says
// nothing about the backup (the store down or refusing access, a
// connection reset, a key that is not configured, the restore cancelled)
// is not damage, even when it is mixed with one: taking an older backup
// for it would silently make recovery replay more WAL, or restore an
// older state, for a fault that a retry mends.
func damaged(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, storage.ErrPermanent) || errors.Is(err, archive.ErrNoPrivateKey) {
		return false
	}
	if de := (*archive.DecodeError)(nil); errors.As(err, &de) {
		return true
	}
	for _, d := range damage {
		if errors.Is(err, d) {
			return true
		}
	}
	return false
}
