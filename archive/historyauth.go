package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
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
//
// The HMAC above binds the name, not the cluster: where sites share a key
// pair, another cluster's signed 00000003.history copied here verifies,
// and recovery to the latest timeline follows that cluster's fork points.
// So hoard now signs with historyMACLabelV2, binding MetaSystemID too, the
// system identifier of the cluster that wrote the file; a reader that
// knows the system it reads for refuses another's. So that a v1 file (or
// an unsigned one) cannot stand in for a v2 one, the first v2 file is
// preceded by SignedHistoriesV2Key, binding its timeline and the system:
// from that timeline on, a history file must be v2, and where the reader
// knows its system, the marker must name it too (or every file must be
// v2: the marker was planted from another site, or written over).

// historyMACLabel is the HKDF info of the history files' HMAC key of
// hoard before history files were bound to a system (v1), and of
// SignedHistoriesKey.
const historyMACLabel = "hoard timeline history v1"

// historyMACLabelV2 is the HKDF info of the HMAC key of history files
// bound to their cluster's system identifier, and of SignedHistoriesV2Key.
const historyMACLabelV2 = "hoard timeline history v2"

// historyMACKeys are the metadata keys a v1 history file's HMAC binds
// with its name.
var historyMACKeys = []string{MetaHashAlgorithm, MetaHash, MetaEncryptionKeyID}

// historyMACKeysV2 are the metadata keys a v2 history file's HMAC binds
// with its name: v1's and the system identifier.
var historyMACKeysV2 = []string{MetaHashAlgorithm, MetaHash, MetaEncryptionKeyID, MetaSystemID}

// MetaFirstSignedTimeline is the metadata key of SignedHistoriesKey's
// timeline: the first whose history file hoard signed (and of
// SignedHistoriesV2Key's: the first hoard signed with its system).
const MetaFirstSignedTimeline = "hoard-first-signed-timeline"

// signedHistoriesMACKeys are the metadata keys SignedHistoriesKey's HMAC
// binds with its name.
var signedHistoriesMACKeys = []string{MetaFormat, MetaFirstSignedTimeline, MetaEncryptionKeyID}

// signedHistoriesV2MACKeys are the metadata keys SignedHistoriesV2Key's
// HMAC binds with its name.
var signedHistoriesV2MACKeys = []string{MetaFormat, MetaFirstSignedTimeline, MetaSystemID, MetaEncryptionKeyID}

// signedHistoriesName and signedHistoriesV2Name are what the markers'
// HMACs bind as their names.
const (
	signedHistoriesName   = "hoard/signed-histories"
	signedHistoriesV2Name = "hoard/signed-histories-v2"
)

// ErrHistoryNotAuthentic is wrapped by the error of a history file that
// hoard did not store under its name: an HMAC that does not verify, or
// none where the site signs its history files. That of another system's
// history file wraps ErrOtherSystem too.
var ErrHistoryNotAuthentic = errors.New("timeline history not authenticated")

// SignedHistoriesKey returns the key of the object that says from which
// timeline on the site's history files are signed.
func (l Layout) SignedHistoriesKey() string { return l.join("hoard", "signed-histories") }

// SignedHistoriesV2Key returns the key of the object that says from which
// timeline on the site's history files are signed with the system
// identifier, and which system that is.
func (l Layout) SignedHistoriesV2Key() string { return l.join("hoard", "signed-histories-v2") }

// historyMarker is one of the markers that say from which timeline on
// history files must be signed.
type historyMarker struct {
	key, name, format, label string
	keys                     []string
}

// markers returns a's two markers: SignedHistoriesKey (signed, v1 or v2)
// and SignedHistoriesV2Key (signed with the system identifier).
func (a *Archive) markers() (v1, v2 historyMarker) {
	return historyMarker{a.Layout.SignedHistoriesKey(), signedHistoriesName, "hoard-signed-histories-v1", historyMACLabel, signedHistoriesMACKeys},
		historyMarker{a.Layout.SignedHistoriesV2Key(), signedHistoriesV2Name, "hoard-signed-histories-v2", historyMACLabelV2, signedHistoriesV2MACKeys}
}

// signHistory adds to md, the metadata of history file name about to be
// stored (with its hash), system, the system identifier of the cluster
// that wrote it, as MetaSystemID, in every site (0, not known: none),
// and, in a site with keys, its HMAC binding that system, after storing
// the site's markers that are absent. Without keys MetaSystemID is a
// claim, the writer's word (checkHistoryClaim); with keys, an unknown
// system (0) is an error: an unbound file would be refused once a bound
// one is stored.
func (a *Archive) signHistory(ctx context.Context, name string, md storage.Metadata, system uint64) error {
	sys := strconv.FormatUint(system, 10)
	if system != 0 {
		md[MetaSystemID] = sys
	}
	c := a.Codec
	if !c.signs() {
		return nil
	}
	tli, err := wal.ParseHistoryFileName(name)
	if err != nil {
		return err
	}
	if system == 0 {
		return fmt.Errorf("sign %s: the system identifier of the cluster that wrote it is not known", name)
	}
	v1, v2 := a.markers()
	for _, m := range []historyMarker{v1, v2} {
		mark := storage.Metadata{MetaFormat: m.format, MetaFirstSignedTimeline: strconv.FormatUint(uint64(tli), 10)}
		if m.name == signedHistoriesV2Name {
			mark[MetaSystemID] = sys
		}
		if err := c.signNamed(m.label, m.name, mark, m.keys); err != nil {
			return err
		}
		// Before the history file: a crash between the two leaves a
		// marker and an older hoard's file or none, both read as before
		// (an older hoard's of this timeline is then refused: run one
		// version of one archiver per site).
		_, err = c.Create(ctx, a.Store, m.key, bytes.NewReader(nil), 0, mark)
		if err != nil && !errors.Is(err, storage.ErrExist) {
			return fmt.Errorf("store %s: %w", m.key, err)
		}
	}
	return c.signNamed(historyMACLabelV2, name, md, historyMACKeysV2)
}

// HistoriesBound reports whether the site's history files are checked
// (checkHistory): in a site with keys, each is authenticated and bound to
// its database system; without, nothing is, and only the system a
// history file's metadata claims (checkHistoryClaim) is looked at.
func (a *Archive) HistoriesBound() bool { return a.Codec != nil && a.Codec.RequireEncryption }

// historyAuth returns what history file name's metadata md says of
// itself, and whether it claims to be v2 (bound to a system).
func (c *Codec) historyAuth(name string, md storage.Metadata) (auth BackupAuth, v2 bool) {
	if _, v2 = md[MetaSystemID]; v2 {
		return c.namedAuth(historyMACLabelV2, name, md, historyMACKeysV2), true
	}
	return c.namedAuth(historyMACLabel, name, md, historyMACKeys), false
}

// checkHistory checks that key, history file name in a whose metadata is
// md, was stored by hoard under this name, for the cluster whose system
// identifier is system (0: not known, not checked): its HMAC verifies and,
// when bound to a system, names this one; or it is not bound to one (v1,
// or no HMAC) and the markers do not cover its timeline. The caller
// checks the decoded bytes against md's hash. In a site without keys
// nothing is authenticated: only the system md claims is compared
// (checkHistoryClaim).
func (a *Archive) checkHistory(ctx context.Context, key, name string, md storage.Metadata, system uint64) error {
	if !a.HistoriesBound() {
		return checkHistoryClaim(key, name, md, system)
	}
	c := a.Codec
	auth, v2 := c.historyAuth(name, md)
	switch {
	case auth == AuthInvalid:
		return fmt.Errorf("%w: the metadata HMAC of %s does not verify for %s: another history file (or its metadata) "+
			"stored under this name, which would make recovery end at a timeline switch that did not happen", ErrHistoryNotAuthentic, key, name)
	case auth == AuthOK && md[MetaHash] == "":
		return fmt.Errorf("%w: %s has no hash to bind its bytes", ErrHistoryNotAuthentic, key)
	case auth == AuthOK && v2:
		if system != 0 && md[MetaSystemID] != strconv.FormatUint(system, 10) {
			// Refused, or ignored at or below the reader's timeline
			// (IgnoreUpgradedHistory).
			return otherSystemHistory(key, name, md[MetaSystemID], system, false)
		}
		return nil
	}
	tli, err := wal.ParseHistoryFileName(name)
	if err != nil {
		return err
	}
	// v1 or unsigned: allowed only below the markers' timelines.
	v1m, v2m := a.markers()
	first, err := a.markerTimeline(ctx, v2m, system)
	if err != nil {
		return err
	}
	if first != 0 && tli >= first {
		return fmt.Errorf("%w: %s is not signed with its database system, but this site signs the history files of timeline %d "+
			"and later so (%s; every timeline when that marker does not verify, or names another database system than the one read for): "+
			"an older hoard's or another site's history file stored under this name, which would make recovery end at a "+
			"timeline switch that did not happen", ErrHistoryNotAuthentic, key, first, v2m.key)
	}
	if auth == AuthOK {
		return nil
	}
	first, err = a.markerTimeline(ctx, v1m, 0)
	if err != nil || first == 0 || tli < first {
		return err
	}
	return fmt.Errorf("%w: %s has no metadata HMAC, but this site signs the history files of timeline %d and later (%s): "+
		"another history file stored under this name, which would make recovery end at a timeline switch that did not happen",
		ErrHistoryNotAuthentic, key, first, v1m.key)
}

// markerTimeline returns the timeline marker m names, 0 when it does not
// exist, and 1 (every history file must be signed) when it does not
// verify (someone wrote over it) or, system being known (not 0), names
// another database system (copied from another site sharing the key
// pair before this site stored its own).
func (a *Archive) markerTimeline(ctx context.Context, m historyMarker, system uint64) (uint32, error) {
	obj, err := a.Store.Stat(ctx, m.key)
	if errors.Is(err, storage.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("stat %s: %w", m.key, err)
	}
	if a.Codec.namedAuth(m.label, m.name, obj.Metadata, m.keys) != AuthOK {
		return 1, nil
	}
	if system != 0 && slices.Contains(m.keys, MetaSystemID) && obj.Metadata[MetaSystemID] != strconv.FormatUint(system, 10) {
		return 1, nil
	}
	n, err := strconv.ParseUint(obj.Metadata[MetaFirstSignedTimeline], 10, 32)
	if err != nil || n == 0 {
		return 1, nil
	}
	return uint32(n), nil
}
