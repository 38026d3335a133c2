package archive

import (
	"bytes"
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/storage"
)

// MetaCompressionLevel is the metadata key of the compression level an
// object was written with (pghoard-format.md c.3).
const MetaCompressionLevel = "compression-level"

// Codec turns plaintext into stored objects and back: compress, then
// optionally encrypt into a pghoa1 envelope, with PGHoard's metadata
// (pghoard-format.md b.1, c.3). The zero Codec stores plaintext as is.
type Codec struct {
	Compression string // compress.None, Snappy, Zstd, LZMA or LZ4
	Level       int    // compression level; 0 is the algorithm's default
	// KeyID and PublicKey encrypt new objects when set (both or neither).
	KeyID     string
	PublicKey *rsa.PublicKey
	// PrivateKeys decrypt objects by their encryption-key-id metadata.
	PrivateKeys map[string]*rsa.PrivateKey
	// PublicKeys are the public keys the site holds by key id, KeyID's
	// and those of keys it no longer encrypts with (rotated out of
	// encryption_key_id): what verifies the metadata HMACs and delta
	// reference lists hoard stored under each key (publicKeyFor) on a
	// host that holds no private key.
	PublicKeys map[string]*rsa.PublicKey
	Host       string // written as the host metadata when not empty

	// RequireEncryption refuses to decode an object that is not encrypted
	// (no encryption-key-id): in a site with encryption keys, anyone who
	// can write the storage but holds no key could otherwise plant
	// plaintext WAL or backups. Open and Decode return a DecodeError
	// wrapping ErrUnencrypted for such an object.
	RequireEncryption bool
	// UnencryptedBefore, when not zero, lets Open decode an unencrypted
	// object anyway if the storage recorded its last write before this
	// time (storage.Object.Changed: a time the storage sets and a writer
	// cannot choose): objects archived before encryption was switched on.
	UnencryptedBefore time.Time
}

// ErrUnencrypted is wrapped by the DecodeError of an object that is not
// encrypted in a site that requires encryption (Codec.RequireEncryption).
// hoard treats it as tampering: restore refuses it, wal-fetch stops
// recovery, verify names it.
var ErrUnencrypted = errors.New("object is not encrypted, but the site encrypts: refused as tampered")

// ErrNoUploadKey is returned (wrapped) by every encoding of a codec that
// reads only encrypted objects (RequireEncryption: the site has encryption
// keys) but has no key to encrypt new ones with (no KeyID): what it stored
// unencrypted it would refuse to read, so it stores nothing. The commands
// refuse such a site before they start (command.checkUploadKey); this is
// the codec's own guard for a caller that does not.
var ErrNoUploadKey = errors.New("no key for uploads: encryption_key_id is not set, but the site has encryption keys and reads only encrypted objects, " +
	"so what it stored unencrypted would be refused at restore; set encryption_key_id to the key new uploads use, whose public key is in encryption_keys")

// ErrNoPrivateKey is wrapped by the DecodeError of an encrypted object
// whose key id has no private key in Codec.PrivateKeys (a daemon that
// holds only the public key).
var ErrNoPrivateKey = errors.New("no private key")

// noPrivateKeyError names the object and its key id, and wraps
// ErrNoPrivateKey. Its message names the missing private key rather than
// the key id: a site that holds only the public key (the daemon's) has the
// key id configured, and "not in the configuration" sent users looking
// for a key that is there.
type noPrivateKeyError struct{ key, kid string }

func (e *noPrivateKeyError) Error() string {
	return fmt.Sprintf("object %s is encrypted with key %s, whose private key is not in the configuration: "+
		"add it to the site as encryption_keys.%s.private, or, configured from the environment, "+
		"as the file %s.private.pem in the directory HOARD_ENCRYPTION_KEYS_DIR names "+
		"(HOARD_ENCRYPTION_PRIVATE_KEY_FILE holds only the private key of HOARD_ENCRYPTION_KEY_ID, the key new objects use; "+
		"writing needs only the public key, reading the private one)",
		e.key, e.kid, e.kid, e.kid)
}

func (e *noPrivateKeyError) Unwrap() error { return ErrNoPrivateKey }

// ErrCompressionMismatch is wrapped by the DecodeError of an object whose
// content (after decryption) is not a stream of the compression-algorithm
// its metadata names: the metadata was altered, or the object is not what
// it claims to be.
var ErrCompressionMismatch = errors.New("content does not match the compression-algorithm metadata")

// Stored describes an object Put wrote.
type Stored struct {
	PlainSize  int64            // bytes read from the source
	StoredSize int64            // bytes stored, after compression and encryption
	Metadata   storage.Metadata // the metadata stored with the object
	// HMAC is an encrypted object's HMAC-SHA256 trailer (crypto.Writer.Tag),
	// which identifies it: a backup's control object records its chunks'
	// (ManifestChunk.HMAC) and DecodeExpected checks them. nil when the
	// object is not encrypted.
	HMAC []byte
}

// DecodeError reports an object whose stored bytes do not decode to what
// was stored: a failed HMAC, truncation, corrupt compressed data, a decoded
// size that differs from original-file-size, or a key that is not
// configured. Errors reading the store itself are not DecodeErrors.
type DecodeError struct {
	Key string // the object's key
	Err error
}

// Error names the object and the cause.
func (e *DecodeError) Error() string { return fmt.Sprintf("decode %s: %v", e.Key, e.Err) }

// Unwrap returns the cause, so errors.Is(err, crypto.ErrTampered) and
// errors.Is(err, compress.ErrCorrupt) work through a DecodeError.
func (e *DecodeError) Unwrap() error { return e.Err }

// encrypts reports whether new objects are encrypted, and refuses a half
// configured key, and a codec that would store unencrypted objects it
// refuses to read (ErrNoUploadKey). Every encoding (newUpload, and
// PartialCache.prepare) asks it first.
func (c *Codec) encrypts() (bool, error) {
	switch {
	case c.KeyID == "" && c.PublicKey == nil && c.RequireEncryption:
		// Whatever UnencryptedBefore says: it admits objects archived
		// before encryption was switched on, not new ones.
		return false, ErrNoUploadKey
	case c.KeyID == "" && c.PublicKey == nil:
		return false, nil
	case c.KeyID == "":
		return false, errors.New("codec has a public key but no key id to record")
	case c.PublicKey == nil:
		return false, fmt.Errorf("codec has no public key for key id %s", c.KeyID)
	}
	return true, nil
}

// metadata returns md with the codec's own keys set for an object of
// plaintext size (size < 0: unknown). The codec's keys always win: a
// caller's encryption-key-id on an unencrypted object would make it
// unreadable.
func (c *Codec) metadata(md storage.Metadata, size int64, encrypted bool) storage.Metadata {
	out := storage.Metadata{}
	for k, v := range md {
		out[k] = v
	}
	for _, k := range []string{MetaCompressionAlgorithm, MetaCompressionLevel, MetaEncryptionKeyID, MetaOriginalFileSize} {
		delete(out, k)
	}
	if c.Compression != compress.None {
		out[MetaCompressionAlgorithm] = c.Compression
		out[MetaCompressionLevel] = strconv.Itoa(c.Level)
	}
	if encrypted {
		out[MetaEncryptionKeyID] = c.KeyID
	}
	if size >= 0 {
		out[MetaOriginalFileSize] = strconv.FormatInt(size, 10)
	}
	if c.Host != "" {
		out[MetaHost] = c.Host
	}
	return out
}

// Put encodes r (compress, then encrypt) and stores it under key with
// PGHoard's metadata (compression-algorithm, compression-level,
// encryption-key-id, original-file-size when size >= 0, host) merged over
// md. size < 0 means unknown; otherwise a source that yields a different
// number of bytes is an error. The object is stored whole or not at all:
// any error closes the upload stream with that error, which makes Store.Put
// abandon it. Put is an Upload fed from r.
func (c *Codec) Put(ctx context.Context, st storage.Store, key string, r io.Reader, size int64, md storage.Metadata) (Stored, error) {
	return c.PutOptions(ctx, st, key, r, md, UploadOptions{Size: size})
}

// Create is Put through storage.Store.Create: it stores the object only if
// key holds none, and returns an error wrapping storage.ErrExist if it
// does.
func (c *Codec) Create(ctx context.Context, st storage.Store, key string, r io.Reader, size int64, md storage.Metadata) (Stored, error) {
	return c.PutOptions(ctx, st, key, r, md, UploadOptions{Size: size, create: true})
}

// PutOptions is Put with the Upload's options (o.Size is Put's size).
func (c *Codec) PutOptions(ctx context.Context, st storage.Store, key string, r io.Reader, md storage.Metadata, o UploadOptions) (Stored, error) {
	u, err := c.NewUpload(ctx, st, key, md, o)
	if err != nil {
		return Stored{}, err
	}
	// Plain Write calls only: lz4's ReadFrom mishandles a source error.
	_, err = io.CopyBuffer(struct{ io.Writer }{u}, struct{ io.Reader }{r}, make([]byte, 64<<10))
	if err != nil && u.err == nil {
		// The source failed, not the upload.
		u.fail(fmt.Errorf("encode: %w", err))
	}
	return u.Close()
}

var errUploadEnded = errors.New("upload ended")

// Open streams the decoded plaintext of the object key, with its metadata.
// Integrity failures surface as *DecodeError from Open or from Read, at EOF
// at the latest: read to EOF before trusting the bytes.
func (c *Codec) Open(ctx context.Context, st storage.Store, key string) (io.ReadCloser, storage.Metadata, error) {
	return c.OpenExpected(ctx, st, key, "")
}

// Decode is Open on a stream the caller has already opened: r holds the
// stored bytes of object key, md its metadata. Closing the result does not
// close r. The storage's time of the object is not known here, so with
// RequireEncryption an unencrypted object is refused whatever
// UnencryptedBefore says.
func (c *Codec) Decode(key string, r io.Reader, md storage.Metadata) (io.ReadCloser, error) {
	return c.decode(key, r, md, time.Time{})
}

// DecodeObject is Decode for an object opened with storage.Store.Open: it
// knows the storage's time of the object (obj.Changed), which
// UnencryptedBefore needs.
func (c *Codec) DecodeObject(key string, r io.Reader, obj storage.Object) (io.ReadCloser, error) {
	return c.decode(key, r, obj.Metadata, obj.Changed)
}

// checkEncrypted applies RequireEncryption and UnencryptedBefore to an
// object without encryption-key-id that the storage last wrote at written
// (zero: unknown).
func (c *Codec) checkEncrypted(key string, written time.Time) error {
	switch {
	case !c.RequireEncryption:
		return nil
	case c.UnencryptedBefore.IsZero():
		return &DecodeError{Key: key, Err: fmt.Errorf("%w (no %s metadata); if it was archived before encryption "+
			"was switched on, see unencrypted_objects_before in docs/security.md", ErrUnencrypted, MetaEncryptionKeyID)}
	case written.IsZero():
		return &DecodeError{Key: key, Err: fmt.Errorf("%w (no %s metadata, and the storage's time of the object is not known)",
			ErrUnencrypted, MetaEncryptionKeyID)}
	case !written.Before(c.UnencryptedBefore):
		return &DecodeError{Key: key, Err: fmt.Errorf("%w (no %s metadata; the storage wrote it at %s, not before unencrypted_objects_before %s)",
			ErrUnencrypted, MetaEncryptionKeyID, written.UTC().Format(time.RFC3339), c.UnencryptedBefore.UTC().Format(time.RFC3339))}
	}
	return nil
}

func (c *Codec) decode(key string, r io.Reader, md storage.Metadata, written time.Time) (io.ReadCloser, error) {
	stored := &errReader{r: r}
	// The cap sits above errReader: going past it is the object's fault,
	// not the store's, and no reason to retry.
	capped := &storedCap{r: stored}
	var src io.Reader = capped
	var dec *crypto.Reader
	if kid := md[MetaEncryptionKeyID]; kid != "" {
		priv := c.PrivateKeys[kid]
		if priv == nil {
			return nil, &DecodeError{Key: key, Err: &noPrivateKeyError{key: key, kid: kid}}
		}
		dec = crypto.NewReader(capped, priv)
		src = dec
	} else if err := c.checkEncrypted(key, written); err != nil {
		return nil, err
	}
	want := int64(-1)
	if v := md[MetaOriginalFileSize]; v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return nil, &DecodeError{Key: key, Err: fmt.Errorf("metadata %s=%q is not a size", MetaOriginalFileSize, v)}
		}
		want = n
	}
	alg := md[MetaCompressionAlgorithm]
	magic := &magicReader{r: src, alg: alg}
	dr, err := compress.NewReader(magic, alg)
	if err != nil {
		return nil, &DecodeError{Key: key, Err: err}
	}
	d := &decoder{key: key, r: dr, src: stored, decrypt: dec, want: want}
	capped.dec = d
	return d, nil
}

// streamMagics are the first bytes of every stream hoard and PGHoard
// write: the snappy framing's stream identifier chunk, the zstd frame
// magic, the xz header magic and the LZ4 frame magic.
var streamMagics = map[string][]byte{
	compress.Snappy: {0xff, 0x06, 0x00, 0x00, 's', 'N', 'a', 'P', 'p', 'Y'},
	compress.Zstd:   {0x28, 0xb5, 0x2f, 0xfd},
	compress.LZMA:   {0xfd, '7', 'z', 'X', 'Z', 0x00},
	compress.LZ4:    {0x04, 0x22, 0x4d, 0x18},
}

// magicReader checks, before passing any byte on, that the start of the
// (decrypted) stream fits the compression-algorithm metadata: a stream of
// another algorithm is refused by name, and so is an "uncompressed" object
// that starts like a compressed stream, which is what taking the
// compression-algorithm metadata away from a compressed object looks like.
// Neither hoard nor PGHoard writes an uncompressed object, and no WAL page,
// tar header or relation page starts with one of these byte strings. An
// empty stream is left to the decoder.
type magicReader struct {
	r       io.Reader
	alg     string
	checked bool
	head    []byte // bytes read for the check, not yet passed on
	err     error  // the source's error after head, or the mismatch
}

func (m *magicReader) Read(p []byte) (int, error) {
	if !m.checked {
		m.checked = true
		buf := make([]byte, 10)
		n, err := io.ReadFull(m.r, buf)
		m.head = buf[:n]
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			m.err = err
		}
		if found := detectStream(m.head); found != "" && found != m.alg {
			m.head = nil // nothing of a refused stream is passed on
			if m.alg == compress.None {
				m.err = fmt.Errorf("%w: no %s metadata, but the content is a %s stream", ErrCompressionMismatch, MetaCompressionAlgorithm, found)
			} else {
				m.err = fmt.Errorf("%w: %s=%s, but the content is a %s stream", ErrCompressionMismatch, MetaCompressionAlgorithm, m.alg, found)
			}
		}
	}
	if len(m.head) > 0 {
		n := copy(p, m.head)
		m.head = m.head[n:]
		return n, nil
	}
	if m.err != nil {
		return 0, m.err
	}
	return m.r.Read(p)
}

// detectStream returns the algorithm whose magic b starts with, or "".
func detectStream(b []byte) string {
	for alg, magic := range streamMagics {
		if bytes.HasPrefix(b, magic) {
			return alg
		}
	}
	return ""
}

// decoder checks the decoded size and types the errors of a decode chain.
type decoder struct {
	key string
	r   io.ReadCloser
	src *errReader
	// decrypt is the envelope reader of an encrypted object, drained to
	// check the HMAC when decompression fails: altered ciphertext usually
	// shows as corrupt compressed data first, and ErrTampered is the
	// truer report.
	decrypt *crypto.Reader
	// hmac, when not nil, is the HMAC trailer the object must have
	// (DecodeExpected).
	hmac []byte
	want int64 // original-file-size, or -1
	n    int64
	err  error
}

func (d *decoder) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if len(p) > decodeReadMax {
		p = p[:decodeReadMax]
	}
	n, err := d.r.Read(p)
	d.n += int64(n)
	switch {
	case d.want >= 0 && d.n > d.want:
		err = fmt.Errorf("decoded more than original-file-size %d bytes", d.want)
		n -= int(d.n - d.want)
		d.n = d.want
	case err == io.EOF && d.want >= 0 && d.n != d.want:
		err = fmt.Errorf("decoded %d bytes, original-file-size says %d", d.n, d.want)
	case err == io.EOF && d.hmac != nil:
		err = d.checkHMAC()
	}
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF:
		d.err = io.EOF
	case d.src.err != nil && errors.Is(err, d.src.err):
		// The store failed, not the content: worth a retry.
		d.err = fmt.Errorf("read %s: %w", d.key, err)
	default:
		if d.decrypt != nil && errors.Is(err, compress.ErrCorrupt) {
			switch _, derr := io.Copy(io.Discard, d.decrypt); {
			case errors.Is(derr, crypto.ErrTampered):
				err = derr
			case errors.Is(derr, ErrStoredTooLarge):
				// The HMAC is at the end, not read: both are
				// the story.
				err = fmt.Errorf("%w; %w", err, derr)
			}
		}
		d.err = &DecodeError{Key: d.key, Err: err}
	}
	return n, d.err
}

func (d *decoder) Close() error {
	err := d.r.Close()
	if d.err == nil {
		d.err = errors.New("read after close")
	}
	return err
}

type closeBoth struct {
	io.ReadCloser
	under io.Closer
}

func (c *closeBoth) Close() error {
	err := c.ReadCloser.Close()
	if e := c.under.Close(); err == nil {
		err = e
	}
	return err
}

// errReader remembers the first error of the stored stream other than
// io.EOF, to tell a failing store from corrupt content.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
