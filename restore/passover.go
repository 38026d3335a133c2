package restore

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/storage"
)

// PassedOver is a backup the automatic choice chose, then refused before
// writing anything, and passed over for an older one: its incremental
// chain is broken (Err wraps ErrBrokenChain), or it is damaged (Err wraps
// one of the errors of damage, see damaged).
type PassedOver struct {
	Backup *archive.BackupInfo
	Err    error
}

// damage are the errors that say a backup itself cannot be restored,
// whoever reads it again and whenever: its stored bytes do not decode
// (archive.DecodeError: a failed HMAC, corrupt compressed data, a
// truncated object, an unencrypted object in a site that encrypts), its
// control object is malformed, fails its checks or is another backup's,
// its manifest lists fewer chunks than its metadata counts, or its
// backup_manifest is missing or unreadable.
var damage = []error{
	ErrMissingChunks, ErrPGManifest, ErrNoBackupLabel, ErrUnsafeMember, ErrSizeMismatch,
	archive.ErrBadControl, archive.ErrBadManifest, archive.ErrControlLimit, archive.ErrForeignControl,
	archive.ErrBadDeltaManifest, archive.ErrStoredTooLarge, archive.ErrCompressionMismatch, archive.ErrUnencrypted,
	crypto.ErrTampered, compress.ErrCorrupt, storage.ErrChecksum, storage.ErrBadMetadata, tar.ErrHeader,
}

// damaged reports whether err, returned by the checks of a backup before
// anything is written, says that the backup is damaged: then the
// automatic choice passes it over for an older one. An error that says
// nothing about the backup (the store down or refusing access, a
// connection reset, a key that is not configured, the restore cancelled)
// is not damage, even when it is mixed with one: taking an older backup
// for it would silently make recovery replay more WAL, or restore an
// older state, for a fault that a retry mends.
func damaged(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, storage.ErrPermanent) || errors.Is(err, archive.ErrNoPrivateKey) {
		return false
	}
	if de := (*archive.DecodeError)(nil); errors.As(err, &de) {
		return true
	}
	for _, d := range damage {
		if errors.Is(err, d) {
			return true
		}
	}
	return false
}

// ErrUnreadableNewer is returned (wrapped) by an automatic restore with
// Target.Immediate when a backup that may be newer than the one chosen
// has metadata that cannot be read or does not authenticate (see
// unreadableNewer).
var ErrUnreadableNewer = errors.New("a newer backup's metadata cannot be read or does not authenticate")

// unreadableNewer returns the error of an automatic restore with
// Target.Immediate that chose b while a backup that may be newer was left
// out for its metadata: the automatic choice never sees an entry whose
// metadata cannot be read (damagedMD), nor, where backups authenticate, a
// backup whose metadata does not (untrusted). Recovery stops as soon as b
// is consistent, so restoring b instead of a newer one gives b's state,
// without the commits in between, and nothing would fail (immediateRefused
// says the same of a newer backup refused as damaged). nil when none may
// be newer.
//
// Nothing about such an entry is trusted, so it counts as newer unless
// what can be read of it says it is older: a backup whose metadata does
// not authenticate by the start time (then name) it claims, as the
// listing sorts it; an entry whose metadata cannot be read by its name,
// which hoard and PGHoard make from the time the backup started
// (archive.BackupNameSpan), only when that whole minute (or day) lies
// before b's own. An entry under a name they never give a backup is no
// backup of theirs and does not count: it is logged as damaged
// (checkDamaged), as before.
func unreadableNewer(b *archive.BackupInfo, untrusted []*archive.BackupInfo, damagedMD []*archive.DamagedBackup) error {
	bStart := b.StartTime
	if from, _, ok := archive.BackupNameSpan(b.Name); ok {
		bStart = from
	}
	var why []string
	for _, d := range damagedMD {
		_, to, ok := archive.BackupNameSpan(d.Name)
		if !ok || !to.After(bStart) {
			continue
		}
		why = append(why, fmt.Sprintf("%s (%s: its metadata cannot be read: %v)", d.Name, d.Key, d.Err))
	}
	for _, u := range untrusted {
		if u.StartTime.Before(b.StartTime) || u.StartTime.Equal(b.StartTime) && u.Name <= b.Name {
			continue
		}
		why = append(why, fmt.Sprintf("%s (%s: its metadata does not authenticate%s)", u.Name, u.Key, keyMissing(u)))
	}
	if len(why) == 0 {
		return nil
	}
	return fmt.Errorf("the automatic choice is backup %s, but it may not be the newest: %s; with --target-immediate a backup that may be newer "+
		"is not passed over: recovery would stop where %s ends, an older state without the commits after it. "+
		"Restore that state on purpose with --basebackup %s, or a later one with --target-lsn or --target-time instead of --target-immediate "+
		"(hoard list and hoard verify name the backups): %w",
		b.Name, strings.Join(why, "; "), b.Name, b.Name, ErrUnreadableNewer)
}

// keyMissing says, for a backup whose metadata does not authenticate,
// when the configuration lacks the public key it names.
func keyMissing(b *archive.BackupInfo) string {
	if b.KeyMissing == "" {
		return ""
	}
	return fmt.Sprintf(": it is signed with key %s, whose public key is not in the configuration (encryption_keys.%s.public)", b.KeyMissing, b.KeyMissing)
}
