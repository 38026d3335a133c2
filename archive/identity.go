package archive

import (
	"context"
	"crypto/hmac"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/hoardbackup/hoard/storage"
)

// ErrWrongObject is wrapped by the DecodeError of an object that decodes
// and verifies, but is not the object its backup's control object
// records: its HMAC differs from the one recorded. An authentic object of
// another backup (an older one of the site, the same backup's other
// chunk, another site's with the same key) was copied under its name by
// someone who can write the storage. The manifest's sizes cannot tell it:
// a chunk of a file rewritten in place, of incompressible pages, keeps
// both.
var ErrWrongObject = errors.New("object is not the one the backup's control object records " +
	"(another object was copied under its name: restore another backup, or put the object back from a copy)")

// DecodeExpected is DecodeObject for an object whose HMAC trailer the
// caller knows (ManifestChunk.HMAC, hex): unless it is "", the object must
// be encrypted and its verified trailer must be that one, else Read
// returns, at the end, a DecodeError wrapping ErrWrongObject. The check
// costs nothing: the envelope computes the HMAC anyway.
func (c *Codec) DecodeExpected(key string, r io.Reader, obj storage.Object, wantHMAC string) (io.ReadCloser, error) {
	want, err := parseHMAC(wantHMAC)
	if err != nil {
		return nil, &DecodeError{Key: key, Err: err}
	}
	rc, err := c.DecodeObject(key, r, obj)
	if err != nil || want == nil {
		return rc, err
	}
	d := rc.(*decoder)
	if d.decrypt == nil {
		d.Close()
		return nil, &DecodeError{Key: key, Err: fmt.Errorf("%w: it is not encrypted, the control object records its HMAC %s", ErrWrongObject, wantHMAC)}
	}
	d.hmac = want
	return d, nil
}

// OpenExpected is Open with DecodeExpected's check of the object's HMAC
// trailer against wantHMAC (hex; "" checks nothing).
func (c *Codec) OpenExpected(ctx context.Context, st storage.Store, key, wantHMAC string) (io.ReadCloser, storage.Metadata, error) {
	rc, obj, err := st.Open(ctx, key)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", key, err)
	}
	dec, err := c.DecodeExpected(key, rc, obj, wantHMAC)
	if err != nil {
		rc.Close()
		return nil, obj.Metadata, err
	}
	return &closeBoth{ReadCloser: dec, under: rc}, obj.Metadata, nil
}

// parseHMAC decodes a recorded HMAC: "" is none (nil), else 64 hex digits.
func parseHMAC(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("recorded hmac %q is not 64 hex digits", s)
	}
	return b, nil
}

// checkHMAC compares the verified trailer with the expected one, once the
// decompressor reached its end: the envelope is read to its end first (a
// decompressor may stop at its stream's end), which verifies it.
func (d *decoder) checkHMAC() error {
	if _, err := io.Copy(io.Discard, d.decrypt); err != nil {
		return err
	}
	if got := d.decrypt.Tag(); !hmac.Equal(got, d.hmac) {
		return fmt.Errorf("%w: its hmac is %x, the control object records %x", ErrWrongObject, got, d.hmac)
	}
	return io.EOF
}
