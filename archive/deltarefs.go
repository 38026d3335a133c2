package archive

import (
	"bytes"
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"

	"github.com/hoardbackup/hoard/storage"
)

// A delta backup's manifest, the list of the delta objects it refers to,
// is inside its encrypted control object: a site that holds only the
// public key (a daemon, normally) cannot read it, so its retention could
// not know which delta objects no kept backup needs. hoard therefore
// stores, with each of its own delta backups of an encrypting site, a
// reference list: the digests of the delta objects the backup refers to,
// in plaintext, authenticated by an HMAC-SHA256 whose key is derived
// (HKDF-SHA256, fixed label) from the site's public key, which the
// configuration holds and the bucket does not. Someone who can write to
// the bucket but does not have the configuration cannot make a list that
// verifies, so cannot strike a reference from one and have retention
// delete an object a kept backup needs. Anyone who holds the
// configuration (the public key, which is not a secret in the usual
// sense) can forge a list: docs/security.md says so. A kept backup without
// a list that verifies makes retention with the public key only delete no
// delta object at all (planDelta).
//
// The list lives in the backup's bundle folder,
// basebackup_delta_chunk/<name>/<name>.refs, so that it is deleted with
// the backup and, left by a backup that never completed, with its orphaned
// folder.

// FormatDeltaRefs is the format metadata of a delta backup's reference
// list.
const FormatDeltaRefs = "hoard-delta-refs-v1"

// DeltaRefsSuffix ends the key of a delta backup's reference list.
const DeltaRefsSuffix = ".refs"

// deltaRefsLabel is the HKDF info of the reference lists' HMAC key.
const deltaRefsLabel = "hoard delta reference list v1"

// maxDeltaRefsSize bounds a reference list read back: 64 MiB is a
// million references.
const maxDeltaRefsSize = 64 << 20

// ErrNoDeltaRefs is returned (wrapped) when a delta backup has no
// reference list: PGHoard's delta backups, an older hoard's, and hoard's
// in a site that does not encrypt (whose manifests anyone can read).
var ErrNoDeltaRefs = errors.New("no reference list")

// ErrDeltaRefsInvalid is wrapped by the error of a reference list that
// does not verify: altered, made for another backup, or with a key this
// site does not have.
var ErrDeltaRefsInvalid = errors.New("reference list does not verify")

// DeltaRefsKey returns the key of a delta backup's reference list.
func (l Layout) DeltaRefsKey(backup string) string {
	b := BackupName(backup)
	return l.DeltaChunkKey(b + "/" + b + DeltaRefsSuffix)
}

// deltaRefList is a reference list as stored (JSON).
type deltaRefList struct {
	Format  string     `json:"format"`
	Backup  string     `json:"backup"`
	KeyID   string     `json:"key_id"`
	Digests digestList `json:"digests"` // sorted, unique
	MAC     string     `json:"mac"`     // hex HMAC-SHA256 (macDeltaRefs)
}

// digestList is a reference list's digests, each checked as it is
// decoded: the list is read before its MAC can be checked (the MAC
// covers it), and a list of short strings ("") would take many times its
// size in memory. A digest's 64 hex digits take as many bytes in memory
// as in the list.
type digestList []string

func (l *digestList) UnmarshalJSON(data []byte) error {
	*l = nil
	dec, err := openJSON(data, '[', "digests")
	if dec == nil {
		return err
	}
	*l = digestList{}
	for dec.More() {
		var d string
		if err := dec.Decode(&d); err != nil {
			return fmt.Errorf("digest %d: %w", len(*l), err)
		}
		if !deltaDigest.MatchString(d) {
			// Its start only: the string is as long as whoever
			// replaced the list made it, and the error is logged and
			// kept in the daemon's status.
			return fmt.Errorf("digest %d: %s is not a delta object's digest", len(*l), Quoted(d))
		}
		*l = append(*l, d)
	}
	return nil
}

// deltaRefsKey derives the HMAC key of the reference lists of a site
// whose public key is pub.
func deltaRefsKey(pub *rsa.PublicKey) ([]byte, error) {
	return publicMACKey(pub, deltaRefsLabel)
}

// publicMACKey derives from a site's public key pub (its DER encoding)
// the HMAC key of what label names: HKDF-SHA256 with label as its info.
// Anyone holding the configuration can compute it; the bucket alone does
// not give it (docs/security.md).
func publicMACKey(pub *rsa.PublicKey, label string) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	return hkdf.Key(sha256.New, der, nil, label, 32)
}

// macInput returns an HMAC-SHA256 keyed by key and the function that
// writes a string into it length-prefixed, so that no two sequences of
// strings share an input.
func macInput(key []byte) (hash.Hash, func(string)) {
	m := hmac.New(sha256.New, key)
	return m, func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		m.Write(n[:])
		m.Write([]byte(s))
	}
}

// macDeltaRefs is the HMAC of a list: its format, backup name, key id
// and digests, each length-prefixed, so that no two lists share an input.
func macDeltaRefs(key []byte, l *deltaRefList) []byte {
	m, put := macInput(key)
	put(FormatDeltaRefs)
	put(l.Backup)
	put(l.KeyID)
	put(fmt.Sprint(len(l.Digests)))
	for _, d := range l.Digests {
		put(d)
	}
	return m.Sum(nil)
}

// publicKeyFor returns the public key of key id kid: the codec's own, one
// of its PublicKeys (a key rotated out, on a host without its private
// half), or the public half of one of its private keys; nil when it has
// none of them.
func (c *Codec) publicKeyFor(kid string) *rsa.PublicKey {
	if c == nil || kid == "" {
		return nil
	}
	if kid == c.KeyID && c.PublicKey != nil {
		return c.PublicKey
	}
	if pub := c.PublicKeys[kid]; pub != nil {
		return pub
	}
	if priv := c.PrivateKeys[kid]; priv != nil {
		return &priv.PublicKey
	}
	return nil
}

// StoreDeltaRefs stores the reference list of delta backup name, which
// refers to the delta objects of digests, before its control object is
// stored. In a site that does not encrypt it stores nothing: the manifest
// is readable there. The list is created, never replaced.
func (a *Archive) StoreDeltaRefs(ctx context.Context, name string, digests []string) error {
	c := a.Codec
	if !c.signs() {
		return nil
	}
	l := &deltaRefList{Format: FormatDeltaRefs, Backup: BackupName(name), KeyID: c.KeyID}
	for _, d := range digests {
		if !deltaDigest.MatchString(d) {
			return fmt.Errorf("reference list of %s: %q is not a delta object's digest", name, d)
		}
		l.Digests = append(l.Digests, d)
	}
	slices.Sort(l.Digests)
	l.Digests = slices.Compact(l.Digests)
	if l.Digests == nil {
		l.Digests = []string{}
	}
	key, err := deltaRefsKey(c.PublicKey)
	if err != nil {
		return err
	}
	l.MAC = hex.EncodeToString(macDeltaRefs(key, l))
	js, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("reference list of %s: %w", name, err)
	}
	k := a.Layout.DeltaRefsKey(name)
	if err := a.Store.Create(ctx, k, bytes.NewReader(js), storage.Metadata{MetaFormat: FormatDeltaRefs}); err != nil {
		return fmt.Errorf("store reference list %s: %w", k, err)
	}
	return nil
}

// ReadDeltaRefs reads and verifies the reference list of delta backup
// name: the digests of the delta objects it refers to. A list that is
// missing wraps ErrNoDeltaRefs; one that does not verify with a public
// key of a's codec (altered, another backup's, another site's key) wraps
// ErrDeltaRefsInvalid.
func (a *Archive) ReadDeltaRefs(ctx context.Context, name string) (map[string]bool, error) {
	k := a.Layout.DeltaRefsKey(name)
	rc, _, err := a.Store.Open(ctx, k)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", k, ErrNoDeltaRefs)
	}
	if err != nil {
		return nil, fmt.Errorf("read reference list %s: %w", k, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxDeltaRefsSize+1))
	if err != nil {
		return nil, fmt.Errorf("read reference list %s: %w", k, err)
	}
	invalid := func(why string, args ...any) error {
		return fmt.Errorf("%s: %w: %s", k, ErrDeltaRefsInvalid, fmt.Sprintf(why, args...))
	}
	if len(data) > maxDeltaRefsSize {
		return nil, invalid("over %d bytes", maxDeltaRefsSize)
	}
	var l deltaRefList
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return nil, invalid("%v", err)
	}
	if l.Format != FormatDeltaRefs {
		return nil, invalid("format %q, not %s", l.Format, FormatDeltaRefs)
	}
	if l.Backup != BackupName(name) {
		return nil, invalid("it is the list of backup %q", l.Backup)
	}
	pub := a.Codec.publicKeyFor(l.KeyID)
	if pub == nil {
		return nil, invalid("made with key %q, which is not in the configuration", l.KeyID)
	}
	key, err := deltaRefsKey(pub)
	if err != nil {
		return nil, err
	}
	mac, err := hex.DecodeString(l.MAC)
	if err != nil || !hmac.Equal(mac, macDeltaRefs(key, &l)) {
		return nil, invalid("its MAC does not match its contents (altered, or not made with this site's key)")
	}
	out := make(map[string]bool, len(l.Digests))
	for _, d := range l.Digests {
		// Verified, so hoard wrote it; checked anyway, as it names keys
		// to keep.
		if !deltaDigest.MatchString(d) {
			return nil, invalid("%q is not a delta object's digest", d)
		}
		out[d] = true
	}
	return out, nil
}
