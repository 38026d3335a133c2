package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// A timeline history file says where each ancestor timeline ended, and
// PostgreSQL believes it: 00000002.history copied over 00000003.history
// (object and metadata: encrypted objects move whole, so someone who can
// write the storage needs no key for it) makes timeline 3 fork from
// timeline 1 where timeline 2 began. A recovery to the latest timeline
// then finds none of timeline 3's WAL at that fork and ends there,
// promoting without timelines 2's and 3's WAL, with no error.
//
// So, as a backup's metadata is (backupauth.go), every history file hoard
// stores in a site with keys carries MetaBackupMAC: an HMAC of its name,
// its hash (algorithm and digest, which the decoded bytes must match) and
// its key id, keyed from the site's public key with historyMACLabel.
// PGHoard ignores the key. A history file stored under another name, or
// with another's metadata, does not verify.
//
// History files without an HMAC (PGHoard's, an older hoard's) must still
// be read. A writer could strip the HMAC, so the first signed history file
// a site stores is preceded by SignedHistoriesKey, created if absent and
// never replaced or deleted by hoard, whose own HMAC binds the timeline of
// that file: a history file of that timeline or a later one without an
// HMAC is refused, an earlier one is read as before.

// historyMACLabel is the HKDF info of the history files' HMAC key.
const historyMACLabel = "hoard timeline history v1"

// historyMACKeys are the metadata keys a history file's HMAC binds with
// its name.
var historyMACKeys = []string{MetaHashAlgorithm, MetaHash, MetaEncryptionKeyID}

// MetaFirstSignedTimeline is the metadata key of SignedHistoriesKey's
// timeline: the first whose history file hoard signed.
const MetaFirstSignedTimeline = "hoard-first-signed-timeline"

// signedHistoriesMACKeys are the metadata keys SignedHistoriesKey's HMAC
// binds with its name.
var signedHistoriesMACKeys = []string{MetaFormat, MetaFirstSignedTimeline, MetaEncryptionKeyID}

// signedHistoriesName is what SignedHistoriesKey's HMAC binds as its name.
const signedHistoriesName = "hoard/signed-histories"

// ErrHistoryNotAuthentic is wrapped by the error of a history file that
// hoard did not store under its name: an HMAC that does not verify, or
// none where the site signs its history files.
var ErrHistoryNotAuthentic = errors.New("timeline history not authenticated")

// SignedHistoriesKey returns the key of the object that says from which
// timeline on the site's history files are signed.
func (l Layout) SignedHistoriesKey() string { return l.join("hoard", "signed-histories") }

// signHistory adds to md, the metadata of history file name about to be
// stored (with its hash), its HMAC, after storing the site's
// SignedHistoriesKey if it is absent. In a site without keys it does
// nothing.
func (a *Archive) signHistory(ctx context.Context, name string, md storage.Metadata) error {
	c := a.Codec
	if c == nil || c.KeyID == "" || c.PublicKey == nil {
		return nil
	}
	tli, err := wal.ParseHistoryFileName(name)
	if err != nil {
		return err
	}
	mark := storage.Metadata{MetaFormat: "hoard-signed-histories-v1", MetaFirstSignedTimeline: strconv.FormatUint(uint64(tli), 10)}
	if err := c.signNamed(historyMACLabel, signedHistoriesName, mark, signedHistoriesMACKeys); err != nil {
		return err
	}
	// Before the history file: a crash between the two leaves a marker
	// and an unsigned file of an older hoard or none, both read as before.
	_, err = c.Create(ctx, a.Store, a.Layout.SignedHistoriesKey(), bytes.NewReader(nil), 0, mark)
	if err != nil && !errors.Is(err, storage.ErrExist) {
		return fmt.Errorf("store %s: %w", a.Layout.SignedHistoriesKey(), err)
	}
	return c.signNamed(historyMACLabel, name, md, historyMACKeys)
}

// checkHistory checks that key, history file name in a whose metadata is
// md, was stored by hoard under this name: its HMAC verifies, or it has
// none and the site's SignedHistoriesKey does not cover its timeline. The
// caller checks the decoded bytes against md's hash. In a site without
// keys nothing is checked: nothing there is authenticated.
func (a *Archive) checkHistory(ctx context.Context, key, name string, md storage.Metadata) error {
	c := a.Codec
	if c == nil || !c.RequireEncryption {
		return nil
	}
	switch c.namedAuth(historyMACLabel, name, md, historyMACKeys) {
	case AuthOK:
		if md[MetaHash] == "" {
			return fmt.Errorf("%w: %s has no hash to bind its bytes", ErrHistoryNotAuthentic, key)
		}
		return nil
	case AuthInvalid:
		return fmt.Errorf("%w: the metadata HMAC of %s does not verify for %s: another history file (or its metadata) "+
			"stored under this name, which would make recovery end at a timeline switch that did not happen", ErrHistoryNotAuthentic, key, name)
	}
	tli, err := wal.ParseHistoryFileName(name)
	if err != nil {
		return err
	}
	first, err := a.firstSignedTimeline(ctx)
	if err != nil || first == 0 || tli < first {
		return err
	}
	return fmt.Errorf("%w: %s has no metadata HMAC, but this site signs the history files of timeline %d and later (%s): "+
		"another history file stored under this name, which would make recovery end at a timeline switch that did not happen",
		ErrHistoryNotAuthentic, key, first, a.Layout.SignedHistoriesKey())
}

// firstSignedTimeline returns the timeline SignedHistoriesKey names, 0
// when it does not exist, and 1 (every history file must be signed)
// when it does not verify: someone wrote over it.
func (a *Archive) firstSignedTimeline(ctx context.Context) (uint32, error) {
	obj, err := a.Store.Stat(ctx, a.Layout.SignedHistoriesKey())
	if errors.Is(err, storage.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("stat %s: %w", a.Layout.SignedHistoriesKey(), err)
	}
	if a.Codec.namedAuth(historyMACLabel, signedHistoriesName, obj.Metadata, signedHistoriesMACKeys) != AuthOK {
		return 1, nil
	}
	n, err := strconv.ParseUint(obj.Metadata[MetaFirstSignedTimeline], 10, 32)
	if err != nil || n == 0 {
		return 1, nil
	}
	return uint32(n), nil
}
