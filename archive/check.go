package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/hoardbackup/hoard/storage"
)

// CheckBackup checks that backup b, stored in a, can be read back. Its
// control object (or, for formats without one, its main object) is
// decoded to the end, so its integrity checks run, the manifest parsed,
// and the object checked to be b's own (ReadBackupControl); then the
// manifest's chunks and delta objects are checked (CheckChunks, with
// full).
//
// Retention relies on it before deleting a backup (Archive.PlanRetention):
// any error, whatever its cause, means b is not known good. IsDamage
// tells an error that shows b damaged (an object missing, of another
// size, that does not decode, not b's) from one that only says the check
// could not be made (the storage failed).
//
// A backup whose control object is encrypted with a key whose private half
// a does not hold (a daemon configured with the public key only) cannot be
// decoded: it is checked sealed instead (CheckBackupSealed), with or
// without full.
func (a *Archive) CheckBackup(ctx context.Context, b *BackupInfo, full bool) error {
	_, err := a.checkBackup(ctx, b, full)
	return err
}

// checkBackup is CheckBackup. It also returns the manifest it read and
// found b's own, whatever the check of the chunks then found, so that a
// caller uses what was checked rather than what a second read of the
// control object finds (someone who can write the bucket may replace it
// meanwhile): nil when it read none (a sealed backup, a format without
// a control object, a control object that failed).
func (a *Archive) checkBackup(ctx context.Context, b *BackupInfo, full bool) (*Manifest, error) {
	sealed, err := a.sealed(ctx, b)
	if err != nil {
		return nil, err
	}
	if sealed {
		return nil, a.CheckBackupSealed(ctx, b)
	}
	switch b.Format {
	case FormatBBv2, FormatDeltaV1, FormatDeltaV2:
	default:
		// A single object: decoding it is the only check there is.
		return nil, a.decodeAll(ctx, b.Key, -1)
	}
	c, err := a.ReadBackupControl(ctx, b, nil)
	if err != nil {
		return nil, err
	}
	return c.Manifest, a.CheckChunks(ctx, b, c.Manifest, full)
}

// CheckChunks checks what manifest m, read from backup b's control object
// (ReadBackupControl), lists: every chunk must exist with the stored size
// it records. With full, every chunk is then also decoded to its end (its
// integrity checks run) and must decode to the size the manifest
// records. A delta backup's delta objects (DeltaRefs) must exist, and
// with full decode to their end; one whose stored size is not the one the
// manifest records must decode to the file's size and digest
// (checkDeltaRef). A caller that reads the control object for more than
// the check (an incremental backup's parent: its backup_manifest) reads
// it once, with ReadBackupControl, and checks its chunks with this.
func (a *Archive) CheckChunks(ctx context.Context, b *BackupInfo, m *Manifest, full bool) error {
	chunkDir := BasebackupChunkDir
	if b.Format != FormatBBv2 {
		chunkDir = basebackupDeltaChunkDir
	}
	for _, c := range m.Chunks {
		if !strings.HasPrefix(c.ChunkFilename, b.Name+"/") || strings.Contains(c.ChunkFilename, "..") {
			return damaged(fmt.Errorf("manifest names chunk %s outside the backup's folder", Quoted(c.ChunkFilename)))
		}
		key := a.Layout.join(chunkDir, c.ChunkFilename)
		st, err := a.Store.Stat(ctx, key)
		if errors.Is(err, storage.ErrNotFound) {
			return damaged(fmt.Errorf("chunk %s is missing", key))
		}
		if err != nil {
			return fmt.Errorf("chunk %s: %w", key, err)
		}
		if c.ResultSize > 0 && st.Size != c.ResultSize {
			return damaged(fmt.Errorf("chunk %s: stored size %d, manifest says %d", key, st.Size, c.ResultSize))
		}
	}
	// With full, the chunks are decoded only once all are there: a
	// missing one fails the check as fast as without full, so that
	// retention checks in full at once what it would check both ways
	// (keepKnownGood), reading the control object once.
	if full {
		for _, c := range m.Chunks {
			want := c.InputSize
			if want <= 0 {
				want = -1
			}
			if err := a.decodeAll(ctx, a.Layout.join(chunkDir, c.ChunkFilename), want); err != nil {
				return err
			}
		}
	}
	if b.Format == FormatBBv2 {
		return nil
	}
	refs, err := DeltaRefs(m)
	if err != nil {
		return damaged(fmt.Errorf("control object %s: %w", b.Key, err))
	}
	for digest, ref := range refs {
		if err := a.checkDeltaRef(ctx, digest, ref, full); err != nil {
			return err
		}
	}
	return nil
}

// checkDeltaRef checks the delta object of digest that a backup's manifest
// records as ref. It must exist. Of the stored size the manifest records,
// it is taken as the object the backup stored or reused: with full it is
// decoded to its end. Of another size it may still be sound: a delta
// backup that could not trust it (the public key only, and no backup's
// reference list names it: PGHoard's and older hoard's backups have none)
// stored the same bytes over it, encoded again. So it is read whole then,
// with or without full, and must decode (the HMAC checked where it is
// encrypted) to the file's size and BLAKE2s-256 digest (CheckDeltaObject),
// as restore requires: its stored size alone says nothing about its
// bytes.
func (a *Archive) checkDeltaRef(ctx context.Context, digest string, ref DeltaRef, full bool) error {
	key := a.Layout.DeltaKey(digest)
	st, err := a.Store.Stat(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return damaged(fmt.Errorf("delta object %s is missing", key))
	}
	if err != nil {
		return fmt.Errorf("delta object %s: %w", key, err)
	}
	if ref.StoredSize <= 0 || st.Size == ref.StoredSize {
		if full {
			want := ref.FileSize
			if want <= 0 {
				want = -1
			}
			return a.decodeAll(ctx, key, want)
		}
		return nil
	}
	if _, err := a.CheckDeltaObject(ctx, digest, ref.FileSize); err != nil {
		return fmt.Errorf("%w (stored size %d, manifest says %d)", err, st.Size, ref.StoredSize)
	}
	return nil
}

// decodeAll decodes the object at key to its end and checks that it
// decodes to want bytes (any size when want < 0). One byte past want is
// enough to know it is too long: no more is decoded, whatever the object
// would decode to.
func (a *Archive) decodeAll(ctx context.Context, key string, want int64) error {
	rc, _, err := a.Codec.Open(ctx, a.Store, key)
	if err != nil {
		return fmt.Errorf("open %s: %w", key, err)
	}
	defer rc.Close()
	var r io.Reader = rc
	if want >= 0 {
		r = io.LimitReader(rc, want+1)
	}
	n, err := io.CopyBuffer(io.Discard, r, make([]byte, 256<<10))
	switch {
	case err != nil:
		return fmt.Errorf("decode %s: %w", key, err)
	case want >= 0 && n > want:
		return damaged(fmt.Errorf("%s decodes to more than the %d bytes the manifest says", key, want))
	case want >= 0 && n != want:
		return damaged(fmt.Errorf("%s decodes to %d bytes, manifest says %d", key, n, want))
	}
	return nil
}

// ReadBackupControl reads backup b's control object once, to its end
// so that its integrity checks run, within the limits restore reads it
// with (ReadControl, which gives check every member after the manifest:
// ControlMember keeps one), and checks that the object is b's own, as
// restore does (CheckControl): another backup's authentic control object
// copied under b's name, b's metadata kept, lists the other backup's
// chunks and delta objects, and retention would keep those for b and
// delete what b refers to; an incremental backup would be taken against
// the other backup's backup_manifest. What a caller uses of the object
// comes from this one read: a second read may find another object.
func (a *Archive) ReadBackupControl(ctx context.Context, b *BackupInfo, check ControlCheck) (*Control, error) {
	c, err := a.ReadControl(ctx, b.Key, check)
	if err != nil {
		return nil, err
	}
	if err := CheckControl(b, c); err != nil {
		return nil, fmt.Errorf("control object %s: %w", b.Key, err)
	}
	return c, nil
}

// sealed reports whether b's main object is encrypted with a key whose
// private half a's codec does not hold.
func (a *Archive) sealed(ctx context.Context, b *BackupInfo) (bool, error) {
	o, err := a.Store.Stat(ctx, b.Key)
	if err != nil {
		return false, fmt.Errorf("backup %s: %w", b.Key, err)
	}
	kid := o.Metadata[MetaEncryptionKeyID]
	return kid != "" && a.Codec.PrivateKeys[kid] == nil, nil
}

// CheckBackupSealed checks b without decrypting anything, which is all a
// holder of the public key alone can do: the backup's chunk folder must
// hold at least as many chunks as its chunk-count metadata says (at least
// one for a format with chunks), holding at least the bytes its
// total-size-enc metadata says, where the backup records them; objects in
// the folder that its manifest does not list only add. It cannot see
// tampering inside an object: the restore host's verify does.
func (a *Archive) CheckBackupSealed(ctx context.Context, b *BackupInfo) error {
	chunkDir := BasebackupChunkDir
	switch b.Format {
	case FormatBBv2:
	case FormatDeltaV1, FormatDeltaV2:
		chunkDir = basebackupDeltaChunkDir
	default:
		return nil // a single object, which exists: it was listed
	}
	var n int
	var total int64
	var bad error // the first object a local store lists as damaged
	err := a.Store.List(ctx, a.Layout.Dir(chunkDir)+b.Name+"/", func(o storage.Object) error {
		if strings.HasSuffix(o.Key, DeltaRefsSuffix) || strings.HasSuffix(o.Key, DeltaRunningSuffix) || strings.HasSuffix(o.Key, NameClaimSuffix) {
			return nil // a delta backup's reference list or marker, a name's claim: not a chunk
		}
		if o.Damaged != nil {
			// A FIFO, a socket or a directory in a chunk's place is
			// no chunk. (A chunk's file missing beside its sidecar
			// is not listed: the count below falls short.)
			if bad == nil {
				bad = o.Damaged
			}
			return nil
		}
		n++
		total += o.Size
		return nil
	})
	if err != nil {
		return fmt.Errorf("list chunks of backup %s: %w", b.Name, err)
	}
	switch {
	case bad != nil:
		return damaged(fmt.Errorf("backup %s: %w", b.Name, bad))
	case b.ChunkCount > 0 && n < b.ChunkCount:
		return damaged(fmt.Errorf("backup %s has %d chunks stored, its metadata says %d", b.Name, n, b.ChunkCount))
	case n == 0 && b.Format == FormatBBv2:
		return damaged(fmt.Errorf("backup %s has no chunks stored", b.Name))
	case b.TotalSizeEnc > 0 && b.Format == FormatBBv2 && total < b.TotalSizeEnc:
		return damaged(fmt.Errorf("backup %s: its chunks hold %d bytes, its metadata says %d", b.Name, total, b.TotalSizeEnc))
	}
	return nil
}
