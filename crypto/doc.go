// Package crypto implements PGHoard's "pghoa1" encryption envelope and the
// RSA keys it uses (pghoard-format.md section a).
//
// An encrypted object is
//
//	"pghoa1" || BE16(L) || RSA-OAEP-SHA1(secret) (L bytes) || AES-128-CTR(data) || HMAC-SHA256(ciphertext)
//
// where secret is 64 fresh random bytes per object: the AES-128 key, the
// full 16-byte initial CTR counter block, and a 32-byte HMAC key (a.2). The
// format is rohmu's, byte for byte, so that hoard reads PGHoard's archives
// and PGHoard reads hoard's; that is also why it uses SHA-1 in OAEP and has
// no version byte besides the magic. The key to unwrap with is chosen by
// the object's encryption-key-id metadata, not by the header (a.4).
//
// The HMAC covers the ciphertext only (encrypt-then-MAC); tampering with the
// header or the wrapped key makes the RSA unwrap fail instead. There is one
// MAC for the whole object, so a streaming reader hands out plaintext that
// is not yet authenticated: Reader holds back the last 32 bytes it has read
// (they may be the tag) and reports io.EOF only after the tag has been
// compared, in constant time. Every integrity failure (tag mismatch, an
// object too short for its header and tag, a wrapped key of the wrong
// length or one that does not unwrap, which is also what a wrong key looks
// like) is an error wrapping ErrTampered. Callers must read to EOF and not
// commit the bytes before then.
//
// An empty plaintext is stored as an empty object, with no header at all,
// as rohmu does (a.1): Writer writes the header on the first non-empty
// Write, and Reader reads a 0-byte object as empty.
//
// Keys are RSA with e = 65537, 3072 bits by default in pghoard_create_keys,
// stored in the config as unencrypted PKCS#8 "PRIVATE KEY" and
// SubjectPublicKeyInfo "PUBLIC KEY" PEM (a.6); PKCS#1 forms are accepted on
// input. Keys smaller than 848 bits cannot wrap the 64-byte secret with
// OAEP-SHA1 and are refused.
package crypto
