package archive

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/sha512"
	"fmt"
	"hash"
	"sort"
	"strings"

	"github.com/hoardbackup/hoard/storage"

	"golang.org/x/crypto/blake2b"
	"golang.org/x/crypto/blake2s"
)

// DefaultHashAlgorithm is PGHoard's default hash_algorithm.
const DefaultHashAlgorithm = "sha1"

// MetadataHash returns the hash an object's metadata records of its plain
// bytes: the algorithm (hash-algorithm, DefaultHashAlgorithm when absent,
// as PGHoard reads it) and the hex digest (hash), "" when none is recorded.
func MetadataHash(md storage.Metadata) (alg, sum string) {
	alg = md[MetaHashAlgorithm]
	if alg == "" {
		alg = DefaultHashAlgorithm
	}
	return alg, md[MetaHash]
}

// hashes maps PGHoard's hash_algorithm names to constructors. PGHoard hands
// the name to Python's hashlib.new, so every algorithm hashlib guarantees
// on every platform is here (md5, the SHA-1, SHA-2 and SHA-3 families,
// BLAKE2b and BLAKE2s with hashlib's default digest sizes), plus the two
// truncated SHA-512 forms OpenSSL gives hashlib. The SHAKE functions are
// not: their hexdigest needs a length that PGHoard never passes, so PGHoard
// cannot use them either.
var hashes = map[string]func() hash.Hash{
	"md5":        md5.New,
	"sha1":       sha1.New,
	"sha224":     sha256.New224,
	"sha256":     sha256.New,
	"sha384":     sha512.New384,
	"sha512":     sha512.New,
	"sha512_224": sha512.New512_224,
	"sha512_256": sha512.New512_256,
	"sha3_224":   func() hash.Hash { return sha3.New224() },
	"sha3_256":   func() hash.Hash { return sha3.New256() },
	"sha3_384":   func() hash.Hash { return sha3.New384() },
	"sha3_512":   func() hash.Hash { return sha3.New512() },
	"blake2b":    func() hash.Hash { h, _ := blake2b.New512(nil); return h },
	"blake2s":    func() hash.Hash { h, _ := blake2s.New256(nil); return h },
}

// HashAlgorithms returns the names NewHash accepts, sorted.
func HashAlgorithms() []string {
	out := make([]string, 0, len(hashes))
	for k := range hashes {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// NewHash returns a hash by its Python hashlib name, as PGHoard's
// hash_algorithm and the hash-algorithm metadata spell it. Names are
// matched without regard to case, as hashlib (through OpenSSL) does. An
// unknown name is an error: a caller that cannot compute a recorded hash
// must not treat the object as checked.
func NewHash(alg string) (hash.Hash, error) {
	if f, ok := hashes[strings.ToLower(alg)]; ok {
		return f(), nil
	}
	return nil, fmt.Errorf("unsupported hash algorithm %q (hoard supports %s)", alg, strings.Join(HashAlgorithms(), ", "))
}
