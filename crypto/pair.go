package crypto

import (
	"bytes"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
)

// ErrKeyMismatch means a private key cannot read what its supposed public
// key encrypts: the two halves come from different key pairs.
var ErrKeyMismatch = errors.New("private key does not match the public key")

// pairProbe is the small object CheckPair encrypts.
const pairProbe = "hoard key pair check"

// CheckPair encrypts a small object in memory with pub and decrypts it
// with priv, as a writer and a restore would: an error wrapping
// ErrKeyMismatch means backups written with pub could not be restored
// with priv.
func CheckPair(pub *rsa.PublicKey, priv *rsa.PrivateKey) error {
	var buf bytes.Buffer
	w := NewWriter(&buf, pub)
	if _, err := io.WriteString(w, pairProbe); err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	got, err := io.ReadAll(NewReader(&buf, priv))
	switch {
	case errors.Is(err, ErrTampered):
		// A wrong private key cannot unwrap the object's key.
		return fmt.Errorf("%w: %w", ErrKeyMismatch, err)
	case err != nil:
		return fmt.Errorf("decrypt: %w", err)
	case string(got) != pairProbe:
		return ErrKeyMismatch
	}
	return nil
}
