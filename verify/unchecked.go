package verify

import (
	"errors"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/storage"
)

// storeError is an error the store returned for a request of verify's
// own (a chunk's Stat, an object's Open), the object not yet read.
type storeError struct{ err error }

func (e *storeError) Error() string { return e.err.Error() }

func (e *storeError) Unwrap() error { return e.err }

// storeFailure marks err, returned by the store for a request, as the
// store's (storageFailed).
func storeFailure(err error) error { return &storeError{err: err} }

// storageFailed reports whether err, from the check of an object, says
// only that the storage failed: the store's answer to a request
// (storeError) or a download cut in the middle (storage.ReadError), and
// nothing that archive.IsDamage takes for damage (a 404, a sidecar
// without its file, bytes that do not decode). Such a check was not
// made: verify stops with the error rather than report the backup
// broken, which a storage outage would otherwise read as.
func storageFailed(err error) bool {
	if archive.IsDamage(err) {
		return false
	}
	var se *storeError
	var re *storage.ReadError
	return errors.As(err, &se) || errors.As(err, &re)
}
