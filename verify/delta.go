package verify

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/restore"
	"github.com/hoardbackup/hoard/storage"
)

// deltaObject is one delta object of a delta backup (PGHoard's
// pghoard-delta-v1 and v2), checked once however many of its files share
// it.
type deltaObject struct {
	digest string
	size   int64    // the files' file_size
	files  []string // the files restored from it, the first few
	// all are all the files restored from it, whose entries in the
	// backup's backup_manifest pgm compares with it (full).
	all []string
}

// deltaControl checks the control object of delta backup b as restore
// reads it, and its manifest as restore plans it, and returns its bundles
// and delta objects to check.
func (c *checker) deltaControl(ctx context.Context, b *archive.BackupInfo, r *BackupReport) ([]chunkCheck, error) {
	ctrl, pgmErr, err := c.readControl(ctx, b, r, false)
	if ctrl == nil {
		return nil, err
	}
	src := c.a.ArchiveOf(b)
	m := ctrl.Manifest
	if err := restore.CheckDeltaManifest(src, m); err != nil {
		c.problem(r, true, "control object %s: %v", b.Key, err)
		return nil, nil
	}
	c.chunkCount(b, r, m)
	c.checksumFailures(b, r, m)
	dm, err := archive.ParseDelta(m) // CheckDeltaManifest parsed it
	if err != nil {
		return nil, err
	}
	objects := map[string]*deltaObject{}
	for _, f := range dm.SnapshotResult.State.Files {
		if f.Hexdigest == "" {
			continue
		}
		o := objects[f.Hexdigest]
		if o == nil {
			o = &deltaObject{digest: f.Hexdigest, size: f.FileSize}
			objects[f.Hexdigest] = o
		} else if o.size != f.FileSize {
			c.problem(r, true, "control object %s: files %s and %s share delta object %s but not their file_size (%d, %d)",
				b.Key, o.files[0], f.RelativePath, f.Hexdigest, o.size, f.FileSize)
		}
		if len(o.files) < 3 {
			o.files = append(o.files, f.RelativePath)
		}
		o.all = append(o.all, f.RelativePath)
	}
	pgm, err := c.pgManifest(ctx, b, r, ctrl, pgmErr, len(m.Chunks)+len(objects))
	if err != nil {
		return nil, err
	}
	c.checkDeltaRefs(ctx, src, b, r, objects)
	list := make([]chunkCheck, 0, len(m.Chunks)+len(objects))
	for _, ch := range m.Chunks {
		list = append(list, chunkCheck{r: r, src: src, key: src.Layout.DeltaChunkKey(ch.ChunkFilename), manifest: m, chunk: ch, bundle: true, pgm: pgm})
	}
	digests := make([]string, 0, len(objects))
	for d := range objects {
		digests = append(digests, d)
	}
	sort.Strings(digests)
	for _, d := range digests {
		list = append(list, chunkCheck{r: r, src: src, key: src.Layout.DeltaKey(d), manifest: m, object: objects[d], pgm: pgm})
	}
	c.mu.Lock()
	r.Chunks = len(list)
	c.mu.Unlock()
	return list, nil
}

// checkDeltaRefs compares the reference list of delta backup b, which
// retention reads where it has only the public key, with the delta
// objects its manifest refers to: a list that does not verify, or that
// leaves out an object the manifest names (retention with the public key
// only could delete it) or names one it does not, is reported. The
// backup still restores, so it is not called broken. A backup without a
// list (PGHoard's, an older hoard's, one of a site that does not
// encrypt) is not reported. src holds b.
func (c *checker) checkDeltaRefs(ctx context.Context, src *archive.Archive, b *archive.BackupInfo, r *BackupReport, objects map[string]*deltaObject) {
	refs, err := src.ReadDeltaRefs(ctx, b.Name)
	switch {
	case errors.Is(err, archive.ErrNoDeltaRefs):
		return
	case err != nil:
		c.problem(r, false, "reference list of %s: %v (retention with the public key only deletes no delta object while it is so)", b.Name, err)
		return
	}
	var missing, extra []string
	for d := range objects {
		if !refs[d] {
			missing = append(missing, d)
		}
	}
	for d := range refs {
		if objects[d] == nil {
			extra = append(extra, d)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		c.problem(r, false, "reference list %s leaves out %d delta objects the manifest refers to (first %s): retention with the public key only could delete them",
			src.Layout.DeltaRefsKey(b.Name), len(missing), missing[0])
	}
	if len(extra) > 0 {
		c.problem(r, false, "reference list %s names %d delta objects the manifest does not refer to (first %s)",
			src.Layout.DeltaRefsKey(b.Name), len(extra), extra[0])
	}
}

// statDeltaObject checks that a delta object exists in src. Its stored size is
// not compared with the manifest's stored_file_size: PGHoard may have
// stored the same bytes again, encoded otherwise, after an older manifest
// recorded it; the full check decodes it against its digest instead.
func (c *checker) statDeltaObject(ctx context.Context, src *archive.Archive, key string) error {
	_, err := src.Store.Stat(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return errors.New("missing")
	}
	if err != nil {
		return storeFailure(err)
	}
	return nil
}

// decodeDeltaObject decodes a delta object to its end (stopping just past
// its files' file_size): it must decode to exactly that many bytes, whose
// BLAKE2s-256 is its name, as restore requires. With pgm, the entry of
// each file restored from it in the backup's backup_manifest must then
// list those bytes' size and CRC-32C.
func (c *checker) decodeDeltaObject(ctx context.Context, src *archive.Archive, key string, o *deltaObject, pgm *restore.PGManifestCheck) error {
	rc, err := c.open(ctx, src, key, "")
	if err != nil {
		return err
	}
	defer rc.Close()
	sum := archive.NewDeltaHash()
	crc := restore.NewCRC32C()
	n, err := io.CopyBuffer(io.MultiWriter(sum, crc), io.LimitReader(rc, o.size+1), make([]byte, 256<<10))
	if err != nil {
		return err
	}
	if n > o.size {
		return fmt.Errorf("decodes to more than the manifest's file_size, %d bytes (file %s)", o.size, o.files[0])
	}
	// The integrity checks at EOF.
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return err
	}
	if n != o.size {
		return fmt.Errorf("decodes to %d bytes, the manifest's file_size is %d (file %s)", n, o.size, o.files[0])
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != o.digest {
		return fmt.Errorf("its content has BLAKE2s-256 %s, not the digest it is named by (altered or swapped; file %s)", got, o.files[0])
	}
	if pgm == nil {
		return nil
	}
	for _, f := range o.all {
		if err := pgm.DeltaFile(f, n, crc.Sum32()); err != nil {
			return err
		}
	}
	return nil
}
