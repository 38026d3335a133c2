package archive

import (
	"archive/tar"
	"errors"

	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/storage"
)

// ErrDamaged is wrapped by the errors of a backup's checks (CheckBackup,
// CheckChunks, CheckBackupSealed) that are findings about what is stored
// and have no sentinel of their own: a chunk missing, a chunk or delta
// object of another size than its manifest records, an object that
// decodes to another size, a chunk folder that holds fewer chunks than
// the backup's metadata counts.
var ErrDamaged = errors.New("stored backup damaged")

// IsDamage reports whether err, from a check of a stored backup, is
// evidence that an object is missing or is not what was stored: it wraps
// ErrDamaged, storage.ErrNotFound (the store answered that the object is
// not there), storage.ErrBadMetadata, storage.ErrObjectDamaged (a local
// store's sidecar without its file, a link or FIFO planted in the
// object's place), storage.ErrChecksum, a DecodeError
// or DeltaObjectError (the bytes the store returned in full do not
// decode: tampered, truncated at rest, corrupt, another object's), or a
// finding about a control object or manifest (ErrForeignControl,
// ErrBadControl, ErrControlLimit, ErrBadManifest, ErrBadDeltaManifest,
// ErrDeltaRefsInvalid, ErrWrongObject, ErrUnencrypted, ErrStoredTooLarge,
// ErrCompressionMismatch, crypto.ErrTampered, compress.ErrCorrupt, a tar
// header that is not one), or a parent that is not listed (ErrNoParent).
//
// It is an allow-list: anything else (a storage error that outlasted the
// retries: a 503, a timeout, a connection cut, access denied; a context's
// end; an error nobody classified) is not evidence of damage, and a
// caller that changes what it does on damage (takes a full backup in
// place of an incremental one, raises an alarm about the archive) must
// not do it for one: the check could not be made. Neither is an object
// encrypted with a key whose private half is not configured
// (ErrNoPrivateKey): the configuration's matter.
func IsDamage(err error) bool {
	if err == nil || errors.Is(err, ErrNoPrivateKey) {
		return false
	}
	var de *DecodeError
	var doe *DeltaObjectError
	if errors.As(err, &de) || errors.As(err, &doe) {
		return true
	}
	for _, e := range damageErrors {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// damageErrors are the sentinels IsDamage takes for damage.
var damageErrors = []error{
	ErrDamaged,
	storage.ErrNotFound, storage.ErrBadMetadata, storage.ErrObjectDamaged, storage.ErrChecksum,
	ErrForeignControl, ErrBadControl, ErrControlLimit, ErrBadManifest, ErrBadDeltaManifest, ErrDeltaRefsInvalid,
	ErrWrongObject, ErrUnencrypted, ErrStoredTooLarge, ErrCompressionMismatch, ErrNoParent,
	crypto.ErrTampered, compress.ErrCorrupt, tar.ErrHeader,
}

// damageError is a check's finding about a stored object: err's message,
// wrapping err and ErrDamaged.
type damageError struct{ err error }

func (e *damageError) Error() string { return e.err.Error() }

func (e *damageError) Unwrap() []error { return []error{e.err, ErrDamaged} }

// damaged marks err, a finding about a stored object, as damage
// (IsDamage), its message unchanged.
func damaged(err error) error { return &damageError{err: err} }
