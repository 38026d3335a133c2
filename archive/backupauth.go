package archive

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/hoardbackup/hoard/storage"
)

// A backup's metadata (its start time and segment, its LSNs, its chunk
// count) is what retention, the backup schedule and restore's choice of a
// backup read, and it is not encrypted: a site that holds only the public
// key (a daemon, normally) cannot read the control object, so it has
// nothing else. Someone who can write the bucket but holds no key could
// otherwise plant a backup that claims to be newer (a copy of a real
// control object under a later name, with any metadata) and make
// retention count it and delete the real backups and their WAL.
//
// So hoard stores, in the metadata of each control object it writes in a
// site that encrypts, MetaBackupMAC: an HMAC-SHA256 over the backup's name
// and the metadata keys of backupMACKeys, whose key is derived
// (HKDF-SHA256, fixed label) from the site's public key, as the delta
// reference lists' is (deltarefs.go). PGHoard ignores the key. The bucket
// alone does not give the HMAC key; anyone holding the configuration can
// compute it (docs/security.md says what that leaves).

// MetaBackupMAC is the metadata key of a backup's metadata HMAC, in hex.
const MetaBackupMAC = "hoard-metadata-hmac"

// backupMACLabel is the HKDF info of the backup metadata HMAC's key.
const backupMACLabel = "hoard backup metadata v1"

// BackupAuth says whether a backup's metadata authenticates.
type BackupAuth string

// What a backup's MetaBackupMAC says of its metadata.
const (
	// AuthNone: no HMAC. PGHoard's backups, those of hoard before it
	// wrote one, those of a site without keys, and any the storage
	// writer planted or stripped the HMAC from.
	AuthNone BackupAuth = ""
	// AuthOK: the HMAC verifies with the public key of the backup's
	// key id: hoard wrote this metadata under this name.
	AuthOK BackupAuth = "authenticated"
	// AuthInvalid: an HMAC that does not verify. The metadata was
	// altered, or copied with the object under another name, or the
	// configuration has no public key for its key id.
	AuthInvalid BackupAuth = "invalid"
)

// backupMACKeys are the metadata keys the HMAC binds: every key
// BackupInfo.ToMetadata writes, and the key id. Keys outside the list
// (the codec's, the storage's own) may change without breaking it.
var backupMACKeys = []string{
	MetaFormat, MetaStartWALSegment, MetaEndWALSegment, MetaStartTime, MetaEndTime,
	MetaBackupDecisionTime, MetaNormalizedBackupTime, MetaStartLSN, MetaEndLSN,
	MetaStartTimeline, MetaEndTimeline, MetaSystemID, MetaWALSegmentSize, MetaPGVersion,
	MetaTotalSizePlain, MetaTotalSizeEnc, MetaChunkCount, MetaPGManifest, MetaEndXmin,
	MetaEndXmax, MetaParent, MetaSite, MetaHost, MetaActiveBackupMode, MetaBasebackupMode,
	MetaBackupReason, MetaEncryptionKeyID,
}

// macNamed is the HMAC, keyed by key, of label, name, then each of keys
// with its value in md ("" when absent), each length-prefixed: what binds
// an object's metadata to its name: a backup's (backupMACLabel, the
// backup's name, backupMACKeys) and a history file's (historyauth.go).
func macNamed(key []byte, label, name string, md storage.Metadata, keys []string) []byte {
	m, put := macInput(key)
	put(label)
	put(name)
	for _, k := range keys {
		put(k)
		put(md[k])
	}
	return m.Sum(nil)
}

// SignBackup adds MetaBackupMAC to md, the metadata of backup name's
// control object that c is about to store, and sets its key id. In a
// site without keys it does nothing: nothing there is authenticated.
func (c *Codec) SignBackup(name string, md storage.Metadata) error {
	return c.signNamed(backupMACLabel, BackupName(name), md, backupMACKeys)
}

// signs reports whether c signs what it stores: it holds a key id and
// its public key.
func (c *Codec) signs() bool { return c != nil && c.KeyID != "" && c.PublicKey != nil }

// signNamed sets md's key id and MetaBackupMAC, the HMAC (macNamed) of
// label, name and md's keys, with the key derived from c's public key.
// In a site without keys it does nothing.
func (c *Codec) signNamed(label, name string, md storage.Metadata, keys []string) error {
	if !c.signs() {
		return nil
	}
	key, err := publicMACKey(c.PublicKey, label)
	if err != nil {
		return err
	}
	md[MetaEncryptionKeyID] = c.KeyID
	md[MetaBackupMAC] = hex.EncodeToString(macNamed(key, label, name, md, keys))
	return nil
}

// BackupAuth returns what backup name's metadata md says of itself:
// AuthNone without an HMAC, AuthOK when it verifies with the public key
// c holds for its key id, AuthInvalid otherwise.
func (c *Codec) BackupAuth(name string, md storage.Metadata) BackupAuth {
	return c.namedAuth(backupMACLabel, BackupName(name), md, backupMACKeys)
}

// namedAuth returns what md's MetaBackupMAC says of label, name and md's
// keys (signNamed): AuthNone without one, AuthOK when it verifies with
// the public key c holds for md's key id, AuthInvalid otherwise.
func (c *Codec) namedAuth(label, name string, md storage.Metadata, keys []string) BackupAuth {
	v, ok := md[MetaBackupMAC]
	if !ok {
		return AuthNone
	}
	got, err := hex.DecodeString(v)
	pub := c.publicKeyFor(md[MetaEncryptionKeyID])
	if err != nil || pub == nil {
		return AuthInvalid
	}
	key, err := publicMACKey(pub, label)
	if err != nil || !hmac.Equal(got, macNamed(key, label, name, md, keys)) {
		return AuthInvalid
	}
	return AuthOK
}

// InvalidWhy says why backup b's metadata (AuthInvalid) does not
// authenticate, for hoard list and hoard verify, and whether the backup
// itself is suspect: not when c holds no public key for the key id b's
// HMAC names (a key rotated out of the configuration, or a configuration
// without the site's keys), which is the configuration's to fix, not a
// reason to delete the backup.
func (c *Codec) InvalidWhy(b *BackupInfo) (why string, suspect bool) {
	if kid := c.missingKey(b); kid != "" {
		return keyMissingWhy(kid), false
	}
	return "metadata does not authenticate (altered, or copied under another name)", true
}

// missingKey returns the key id b's metadata names when c holds no public
// key for it, "" otherwise.
func (c *Codec) missingKey(b *BackupInfo) string {
	if kid := b.Metadata[MetaEncryptionKeyID]; kid != "" && c.publicKeyFor(kid) == nil {
		return kid
	}
	return ""
}

// keyMissingWhy says that metadata signed with key kid cannot be
// authenticated without its public key, and what to add.
func keyMissingWhy(kid string) string {
	return fmt.Sprintf("metadata is signed with key %s, whose public key is not in the configuration, so it cannot be "+
		"authenticated (add the key pair, or its public key as encryption_keys.%s.public, to the site)", kid, kid)
}

// Trusted returns the backups of bs whose metadata authenticates, or all
// of bs when none does (an archive from before hoard signed backups, a
// site without keys). The choices made on metadata alone go by them:
// retention's (planAuthenticated), the daemon's schedule, restore's
// automatic choice of a backup.
func Trusted(bs []*BackupInfo) []*BackupInfo {
	var out []*BackupInfo
	for _, b := range bs {
		if b.Auth == AuthOK {
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		return bs
	}
	return out
}

// NewestTrusted returns the newest of the backups Trusted keeps (bs is
// oldest first, as the listings give it), nil when bs is empty. The
// daemon's backup-age alert, check's archive step and archive-sync's
// starting point go by it: a planted backup claiming to be new stands
// for the site only where no backup authenticates.
func NewestTrusted(bs []*BackupInfo) *BackupInfo {
	bs = Trusted(bs)
	if len(bs) == 0 {
		return nil
	}
	return bs[len(bs)-1]
}

// Untrusted returns the backups of bs that Trusted leaves out, oldest
// first as bs is.
func Untrusted(bs []*BackupInfo) []*BackupInfo {
	trusted := Trusted(bs)
	var out []*BackupInfo
	for _, b := range bs {
		if !slices.Contains(trusted, b) {
			out = append(out, b)
		}
	}
	return out
}

// A writer who strips the HMAC from every signed backup of a site makes
// it look like an archive from before hoard signed backups, which
// retention plans on all metadata again. So the first signed backup
// also stores SignedMarkerKey, created if absent and never replaced or
// deleted by hoard: a writer without delete rights cannot remove it
// (rewriting it leaves it there), and while it exists and no backup
// authenticates, retention deletes nothing (keepUnsigned).

// SignedMarkerKey returns the key of the object that says the site's
// backups are signed.
func (l Layout) SignedMarkerKey() string { return l.join("hoard", "signed-backups") }

// MarkSigned stores the site's signed-backups marker if it is absent:
// called once a signed backup is stored.
func (a *Archive) MarkSigned(ctx context.Context) error {
	if a.Codec == nil || a.Codec.KeyID == "" || a.Codec.PublicKey == nil {
		return nil
	}
	// Through the codec, as every object of the site: readers that
	// decode all of them (archive-copy) refuse a plaintext one.
	_, err := a.Codec.Create(ctx, a.Store, a.Layout.SignedMarkerKey(), bytes.NewReader(nil), 0, storage.Metadata{MetaFormat: "hoard-signed-backups-v1"})
	if err != nil && !errors.Is(err, storage.ErrExist) {
		return fmt.Errorf("store %s: %w", a.Layout.SignedMarkerKey(), err)
	}
	return nil
}

// SignsBackups reports whether the site's signed-backups marker exists:
// hoard has stored a signed backup there.
func (a *Archive) SignsBackups(ctx context.Context) (bool, error) {
	_, err := a.Store.Stat(ctx, a.Layout.SignedMarkerKey())
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat %s: %w", a.Layout.SignedMarkerKey(), err)
	}
	return true, nil
}

// Unsigned is a backup without an HMAC (AuthNone) in a site that signs
// its backups, as UnsignedBackups finds it.
type Unsigned struct {
	Backup *BackupInfo
	// Suspicious is false for a backup that starts before the oldest
	// authenticated one: what an upgrade leaves. It is true for one that
	// starts at or after it, or for every unsigned backup where the site's
	// marker exists but no backup authenticates.
	Suspicious bool
	// Why says what the backup may be and what hoard does with it, for
	// hoard list and hoard verify.
	Why string
}

// UnsignedBackups returns the backups of bs without an HMAC in a site
// that signs its backups, oldest first as bs is. Where some backup
// authenticates, one that starts before the oldest authenticated backup
// is expected after an upgrade (PGHoard's, or a hoard's from before it
// signed backups); one that starts at or after it is suspicious, whatever
// its format says, as whoever plants a backup writes the format too.
// Where none authenticates but signs is set (the site's marker exists:
// SignsBackups), every unsigned backup is suspicious: the HMACs were
// stripped. Where none authenticates and signs is not set, the site has
// never signed a backup: nil.
func UnsignedBackups(bs []*BackupInfo, signs bool) []Unsigned {
	var first *BackupInfo
	for _, b := range bs {
		if b.Auth == AuthOK && (first == nil || b.StartTime.Before(first.StartTime)) {
			first = b
		}
	}
	if first == nil && !signs {
		return nil
	}
	// Where some HMAC is there but does not verify, the configuration may
	// lack the key it names (Codec.InvalidWhy): the HMACs need not have
	// been stripped.
	noneWhy := "the HMACs were stripped by someone who can write the storage, or every signed backup was deleted"
	if slices.ContainsFunc(bs, func(b *BackupInfo) bool { return b.Auth == AuthInvalid }) {
		noneWhy = "those with an HMAC do not verify: the configuration lacks the public key they name, or someone who " +
			"can write the storage altered them or stripped the others' HMACs"
	}
	var out []Unsigned
	for _, b := range bs {
		switch {
		case b.Auth != AuthNone:
		case first == nil:
			out = append(out, Unsigned{Backup: b, Suspicious: true, Why: "metadata has no HMAC, though this site signs its backups " +
				"and none of them authenticates: " + noneWhy + "; retention deletes nothing until a new backup is taken"})
		case b.StartTime.Before(first.StartTime):
			out = append(out, Unsigned{Backup: b, Why: "metadata has no HMAC, but it is older than the site's first authenticated " +
				"backup (" + first.Name + "): PGHoard's, or a hoard's from before it signed backups; " +
				"retention does not count it, restore chooses it only by name"})
		default:
			out = append(out, Unsigned{Backup: b, Suspicious: true, Why: "metadata has no HMAC, though this site signs its backups " +
				"and it is not older than the first authenticated one (" + first.Name + "): planted or stripped of its HMAC by " +
				"someone who can write the storage, or taken by PGHoard or a hoard from before signing; " +
				"retention does not count it, restore chooses it only by name"})
		}
	}
	return out
}

// keepUnsigned makes plan delete no backup and no WAL when the site's
// signed-backups marker exists but none of backups authenticates: their
// metadata was rewritten.
func (a *Archive) keepUnsigned(ctx context.Context, plan *RetentionPlan, backups []*BackupInfo) error {
	for _, b := range backups {
		if b.Auth == AuthOK {
			return nil
		}
	}
	if len(plan.Delete) == 0 && len(plan.WAL) == 0 {
		return nil
	}
	signs, err := a.SignsBackups(ctx)
	if err != nil || !signs {
		return err
	}
	for _, d := range plan.Delete {
		d.Reason += "; kept: no backup's metadata authenticates, though this site signs its backups"
		plan.Keep = append(plan.Keep, d)
	}
	plan.Delete = nil
	sortDecisions(plan.Keep)
	plan.keepWAL()
	plan.Notes = append(plan.Notes, fmt.Sprintf("%s exists but no backup's metadata authenticates: it was rewritten "+
		"(the HMAC stripped), so nothing is deleted; take a new backup", a.Layout.SignedMarkerKey()))
	return nil
}
