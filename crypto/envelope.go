package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
)

// ErrTampered is wrapped by every error that means an encrypted object is
// not what its writer stored: an HMAC mismatch, a truncated object, a
// wrapped key of the wrong length or one that does not unwrap with the key
// given (which is also what a wrong key looks like).
var ErrTampered = errors.New("encrypted object failed its integrity check")

// Magic starts every pghoa1 envelope (pghoard-format.md a.1).
const Magic = "pghoa1"

const (
	headerLen = len(Magic) + 2 // magic, BE16 wrapped key length
	secretLen = 64             // AES key 16 | CTR block 16 | HMAC key 32 (a.2)
	tagLen    = sha256.Size    // HMAC-SHA256 trailer
	chunkLen  = 32 << 10       // encryption and read buffer size

	// minKeyBytes is the smallest RSA modulus that OAEP with SHA-1 can
	// wrap a 64-byte secret with: 64 + 2*20 + 2 bytes (a.3).
	minKeyBytes = secretLen + 2*sha1.Size + 2
)

// checkKeySize refuses a modulus too small for OAEP to wrap the secret.
func checkKeySize(n int) error {
	if n < minKeyBytes {
		return fmt.Errorf("rsa key of %d bits is too small to wrap a %d-byte secret with OAEP-SHA1 (need at least %d bits; pghoard_create_keys uses 3072)",
			n*8, secretLen, minKeyBytes*8)
	}
	return nil
}

// Writer encrypts a stream into a pghoa1 envelope. It writes the header on
// the first non-empty Write, so an empty stream produces an empty object as
// rohmu's does (a.1).
type Writer struct {
	w   io.Writer
	pub *rsa.PublicKey
	ctr cipher.Stream
	mac hash.Hash
	buf []byte
	err error
	tag []byte // the trailer, once written
}

// NewWriter returns a writer that encrypts into w for the holder of pub's
// private key. Close writes the HMAC trailer and never closes w. Errors of
// key wrapping (a key too small, say) surface from the first Write.
func NewWriter(w io.Writer, pub *rsa.PublicKey) *Writer {
	return &Writer{w: w, pub: pub}
}

// start makes the per-object secret and writes the header.
func (e *Writer) start() error {
	if e.pub == nil {
		return errors.New("encrypt: no public key")
	}
	if err := checkKeySize(e.pub.Size()); err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	secret := make([]byte, secretLen)
	if _, err := rand.Read(secret); err != nil {
		return fmt.Errorf("encrypt: random secret: %w", err)
	}
	wrapped, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, e.pub, secret, nil)
	if err != nil {
		return fmt.Errorf("encrypt: wrap key: %w", err)
	}
	block, err := aes.NewCipher(secret[:16])
	if err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	e.ctr = cipher.NewCTR(block, secret[16:32])
	e.mac = hmac.New(sha256.New, secret[32:])
	e.buf = make([]byte, chunkLen)
	hdr := make([]byte, 0, headerLen+len(wrapped))
	hdr = append(hdr, Magic...)
	hdr = binary.BigEndian.AppendUint16(hdr, uint16(len(wrapped)))
	hdr = append(hdr, wrapped...)
	if _, err := e.w.Write(hdr); err != nil {
		return fmt.Errorf("encrypt: write header: %w", err)
	}
	return nil
}

// Write encrypts p and writes the ciphertext.
func (e *Writer) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if e.ctr == nil {
		if e.err = e.start(); e.err != nil {
			return 0, e.err
		}
	}
	done := 0
	for done < len(p) {
		n := min(len(p)-done, len(e.buf))
		c := e.buf[:n]
		e.ctr.XORKeyStream(c, p[done:done+n])
		e.mac.Write(c)
		if _, err := e.w.Write(c); err != nil {
			e.err = fmt.Errorf("encrypt: write: %w", err)
			return done, e.err
		}
		done += n
	}
	return done, nil
}

// Close writes the HMAC trailer (nothing at all for an empty stream).
// Writes after Close fail.
func (e *Writer) Close() error {
	if e.err != nil {
		return e.err
	}
	e.err = errors.New("encrypt: write after close")
	if e.mac == nil {
		return nil
	}
	tag := e.mac.Sum(nil)
	if _, err := e.w.Write(tag); err != nil {
		return fmt.Errorf("encrypt: write tag: %w", err)
	}
	e.tag = tag
	return nil
}

// Tag returns the HMAC-SHA256 trailer Close wrote: nil before a Close
// that succeeded, and for an empty stream. The HMAC key is random per
// object, so no two objects share a tag, and nobody without the private
// key can make an object that verifies with a given tag: the tag
// identifies the object (see Reader.Tag).
func (e *Writer) Tag() []byte { return e.tag }

// Reader decrypts a pghoa1 envelope as a stream in constant memory. The
// HMAC covers the whole ciphertext (a.4), so Read hands out plaintext that
// is not yet authenticated; only a clean io.EOF says the object verified.
type Reader struct {
	r    io.Reader
	priv *rsa.PrivateKey
	ctr  cipher.Stream
	mac  hash.Hash
	// buf[s:e] holds read-ahead ciphertext; its last tagLen bytes may be
	// the trailer, so they are held back until more data or EOF arrives.
	buf  []byte
	s, e int
	eof  bool
	err  error
	tag  []byte // the trailer, once verified
}

// NewReader returns a reader of the plaintext in the envelope r, decrypted
// with priv. Every integrity failure is an error wrapping ErrTampered, from
// Read at EOF at the latest; io.EOF is returned only after the HMAC has
// been checked. A 0-byte object reads as empty (a.1).
func NewReader(r io.Reader, priv *rsa.PrivateKey) *Reader {
	return &Reader{r: r, priv: priv}
}

func tampered(format string, args ...any) error {
	return fmt.Errorf("decrypt: "+format+": %w", append(args, ErrTampered)...)
}

// start reads the header and unwraps the secret. It returns io.EOF for a
// 0-byte object.
func (d *Reader) start() error {
	if d.priv == nil {
		return errors.New("decrypt: no private key")
	}
	if err := checkKeySize(d.priv.Size()); err != nil {
		return fmt.Errorf("decrypt: %w", err)
	}
	hdr := make([]byte, headerLen)
	n, err := io.ReadFull(d.r, hdr)
	switch {
	case err == io.EOF:
		return io.EOF
	case err == io.ErrUnexpectedEOF:
		return tampered("object of %d bytes is shorter than its header", n)
	case err != nil:
		return fmt.Errorf("decrypt: read header: %w", err)
	}
	if string(hdr[:len(Magic)]) != Magic {
		return tampered("no %s header", Magic)
	}
	l := int(binary.BigEndian.Uint16(hdr[len(Magic):]))
	if l != d.priv.Size() {
		return tampered("wrapped key is %d bytes, the private key wraps %d", l, d.priv.Size())
	}
	wrapped := make([]byte, l)
	if _, err := io.ReadFull(d.r, wrapped); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return tampered("object ends inside the wrapped key")
		}
		return fmt.Errorf("decrypt: read wrapped key: %w", err)
	}
	secret, err := rsa.DecryptOAEP(sha1.New(), nil, d.priv, wrapped, nil)
	if err != nil {
		return tampered("unwrap key (wrong key or altered header)")
	}
	if len(secret) != secretLen {
		return tampered("unwrapped secret is %d bytes, want %d", len(secret), secretLen)
	}
	block, err := aes.NewCipher(secret[:16])
	if err != nil {
		return fmt.Errorf("decrypt: %w", err)
	}
	d.ctr = cipher.NewCTR(block, secret[16:32])
	d.mac = hmac.New(sha256.New, secret[32:])
	d.buf = make([]byte, tagLen+chunkLen)
	return nil
}

// Read decrypts into p. See NewReader for the error contract.
func (d *Reader) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if d.ctr == nil {
		if err := d.start(); err != nil {
			d.err = err
			return 0, err
		}
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if ready := d.e - d.s - tagLen; ready > 0 {
			n := min(ready, len(p))
			c := d.buf[d.s : d.s+n]
			d.mac.Write(c)
			d.ctr.XORKeyStream(p[:n], c)
			d.s += n
			return n, nil
		}
		if d.eof {
			d.err = d.verify()
			return 0, d.err
		}
		if d.e == len(d.buf) {
			// At most tagLen bytes are left: move them to the front.
			d.e = copy(d.buf, d.buf[d.s:d.e])
			d.s = 0
		}
		n, err := d.r.Read(d.buf[d.e:])
		d.e += n
		switch {
		case err == io.EOF:
			d.eof = true
		case err != nil:
			d.err = fmt.Errorf("decrypt: read: %w", err)
			return 0, d.err
		}
	}
}

// verify checks the trailer once the whole ciphertext has been read.
func (d *Reader) verify() error {
	if d.e-d.s < tagLen {
		return tampered("object ends before its %d-byte tag", tagLen)
	}
	if !hmac.Equal(d.mac.Sum(nil), d.buf[d.s:d.e]) {
		return tampered("hmac mismatch")
	}
	d.tag = append([]byte(nil), d.buf[d.s:d.e]...)
	return io.EOF
}

// Tag returns the object's HMAC-SHA256 trailer once Read has returned
// io.EOF, that is once it verified; nil before, and for a 0-byte object.
// Comparing it with the tag a Writer reported tells whether this is the
// very object that writer stored.
func (d *Reader) Tag() []byte { return d.tag }
