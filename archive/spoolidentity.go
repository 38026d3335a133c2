package archive

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/hoardbackup/hoard/storage"
)

// spoolIdentityFile is the file of the prefetch spool that names the
// archive its segments were fetched from (spoolIdentity).
const spoolIdentityFile = "identity"

// maxSpoolIdentity bounds what is read of spoolIdentityFile.
const maxSpoolIdentity = 64 << 10

// spoolIdentity names the archive a's WAL is fetched from, as the
// prefetch spool records it: for a and each site it moved from, in the
// order they are searched, the site, the store (StoreID), the prefix, and
// what the codec decrypts with and requires (each private key's id with
// its public key's SHA-256, RequireEncryption, UnencryptedBefore): no
// secret. A wal-fetch run with another configuration (another site,
// storage, prefix or keys) has another identity and takes nothing from a
// spool filled for this one: each segment there was found and checked in
// this archive, and the other may hold other bytes under the same name.
func (a *Archive) spoolIdentity() string {
	var b strings.Builder
	for _, arc := range a.sites() {
		fmt.Fprintf(&b, "site=%q store=%q prefix=%q %s\n", arc.Site, arc.StoreID, arc.Layout.Prefix, arc.Codec.keysIdentity())
	}
	return b.String()
}

// keysIdentity describes the keys c decrypts with and the encryption it
// requires, without secrets (see spoolIdentity).
func (c *Codec) keysIdentity() string {
	if c == nil {
		return "codec=none"
	}
	var keys []string
	for id, k := range c.PrivateKeys {
		der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			keys = append(keys, fmt.Sprintf("%q:?", id))
			continue
		}
		sum := sha256.Sum256(der)
		keys = append(keys, fmt.Sprintf("%q:%s", id, hex.EncodeToString(sum[:])))
	}
	slices.Sort(keys)
	s := "keys=[" + strings.Join(keys, " ") + "]"
	if c.RequireEncryption {
		s += " require_encryption"
	}
	if !c.UnencryptedBefore.IsZero() {
		s += " unencrypted_before=" + c.UnencryptedBefore.UTC().Format(time.RFC3339Nano)
	}
	return s
}

// identity returns the identity the spool's segments were fetched for
// ("" when none is recorded: a spool of an older hoard, or a new one).
func (s *spool) identity() string {
	f, err := s.root.Open(spoolIdentityFile)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSpoolIdentity))
	if err != nil {
		return ""
	}
	return string(b)
}

// setIdentity records id as the identity of the segments spooled from now
// on, durably (storage.WriteFileIn): a reader sees the old identity or
// the new one, and a crash does not lose the new one once segments
// spooled under it may be on disk.
func (s *spool) setIdentity(id string) error {
	return storage.WriteFileIn(s.root, spoolIdentityFile, strings.NewReader(id), nil)
}
