package archive

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/hoardbackup/hoard/storage"
)

// A delta object's name is the BLAKE2s-256 of the file it holds, which
// anyone who knows (or, through SQL, shapes) the file can compute. Someone
// who can write to the bucket but holds no key can therefore store an
// object under the name of a file a later delta backup will hold: garbage,
// a truncated object, or a validly encoded object of other bytes (one of
// the site's own, copied). A backup that reused such an object without
// reading it would succeed and refer to bytes restore then refuses. So a
// delta backup reuses an existing object unread only when a backup of the
// site refers to it (BackupDeltaRefs: its manifest, authenticated with the
// control object where the site encrypts, or its verified reference
// list); any other it reads first (CheckDeltaObject).

// DeltaObjectError reports a delta object that does not hold the bytes
// its name says, or that this configuration cannot decode (an encrypted
// object and no private key for its key id: Err wraps ErrNoPrivateKey).
// Errors of the store itself are not DeltaObjectErrors.
type DeltaObjectError struct {
	Key string
	Err error
}

// Error names the object and what is wrong with it.
func (e *DeltaObjectError) Error() string { return fmt.Sprintf("delta object %s: %v", e.Key, e.Err) }

// Unwrap returns the cause (a *DecodeError, for one).
func (e *DeltaObjectError) Unwrap() error { return e.Err }

// CheckDeltaObject reads the delta object of digest to its end through
// the codec (the HMAC checked where it is encrypted) and checks that it
// decodes to exactly size bytes whose BLAKE2s-256 is digest, as restore
// requires. It returns the object as the store read it. An object that
// fails is a *DeltaObjectError; one that is missing wraps
// storage.ErrNotFound; any other error is the store's.
func (a *Archive) CheckDeltaObject(ctx context.Context, digest string, size int64) (storage.Object, error) {
	key := a.Layout.DeltaKey(digest)
	rc, obj, err := a.Store.Open(ctx, key)
	if err != nil {
		return storage.Object{}, fmt.Errorf("open %s: %w", key, err)
	}
	defer rc.Close()
	bad := func(err error) (storage.Object, error) { return obj, &DeltaObjectError{Key: key, Err: err} }
	dec, err := a.Codec.DecodeObject(key, rc, obj)
	if err != nil {
		return bad(err)
	}
	defer dec.Close()
	sum := NewDeltaHash()
	// One byte past size is enough to know it is too long: no more is
	// decoded, whatever the object claims.
	n, err := io.CopyBuffer(sum, io.LimitReader(dec, size+1), make([]byte, 256<<10))
	if err == nil && n <= size {
		// To the end, for the integrity checks there.
		_, err = io.Copy(io.Discard, dec)
	}
	var de *DecodeError
	switch {
	case errors.As(err, &de):
		return bad(err)
	case err != nil:
		return obj, fmt.Errorf("read %s: %w", key, err)
	case n > size:
		return bad(fmt.Errorf("decodes to more than the file's %d bytes", size))
	case n < size:
		return bad(fmt.Errorf("decodes to %d bytes, not the file's %d", n, size))
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != digest {
		return bad(fmt.Errorf("its content has BLAKE2s-256 %s, not the digest it is named by", got))
	}
	return obj, nil
}

// BackupDeltaRefs returns the digests of the delta objects delta backup
// b of a refers to: from its manifest or, when a's codec has no private
// key for it, from its reference list (ReadDeltaRefs), which must verify;
// then the error of a backup with neither is a *sealedRefsError.
func (a *Archive) BackupDeltaRefs(ctx context.Context, b *BackupInfo) (map[string]bool, error) {
	c, err := a.ReadBackupControl(ctx, b, nil)
	if errors.Is(err, ErrNoPrivateKey) {
		r, lerr := a.ReadDeltaRefs(ctx, b.Name)
		if lerr != nil {
			return nil, &sealedRefsError{manifest: err, list: lerr}
		}
		return r, nil
	}
	if err != nil {
		return nil, err
	}
	return deltaRefSet(c.Manifest)
}

// deltaRefSet returns the digests of the delta objects manifest m refers
// to (DeltaRefs).
func deltaRefSet(m *Manifest) (map[string]bool, error) {
	r, err := DeltaRefs(m)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(r))
	for d := range r {
		out[d] = true
	}
	return out, nil
}
