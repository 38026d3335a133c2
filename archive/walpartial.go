package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"

	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// MetaPartialDataSize is the metadata key, on .partial objects, of the
// number of bytes up to the last non-zero byte of the plain file: how much
// WAL the copy holds (the rest is zero padding). hoard's addition.
const MetaPartialDataSize = "partial-data-size"

// PutPartialWAL stores the .partial segment at path (its base name must be
// "<segment>.partial") as xlog/<segment>.partial, replacing an object of
// that name that holds less WAL. It exists for the daemon's WAL receiver,
// which uploads the segment it is still receiving every
// wal_partial_upload_interval as it grows, and the last .partial of an
// ended timeline once it is final: each copy holds more WAL than the
// previous one, so the longest wins.
//
// A copy never goes backwards: a restarted receiver streams the segment
// again from its start, and its first copies hold less than what an
// earlier run stored. A file that holds less WAL than the stored object
// is not stored (Stale in the result), but only once the stored object
// was decoded and found to start with exactly the file's WAL: its
// metadata (MetaPartialDataSize, the hash) is not authenticated, and a
// Stale copy counts as stored for the daemon, which in synchronous mode
// acknowledges it to PostgreSQL. A stored object that is not the file's
// WAL (not decodable, another segment's, other bytes) is stored over,
// and Replaced in the result says why (checkStored). A stored object
// whose metadata claims less WAL than the file is stored over without
// being read: hoard's own copies record their true size, and a writer
// who lowered it could as well have deleted the object.
//
// It is never used for complete segments, .history or .backup files: those
// go through PushWAL, which never overwrites an archived object. A .partial
// object is never needed by a restore that has the complete segment, and
// restores fall back to it only at the end of the archive, so replacing it
// with a longer copy cannot make the archive worse than before.
//
// When the stored object decodes to the file's very bytes, nothing is
// written.
//
// With o.StoredPartial (the caller stored the last copy itself, of a
// file that size, and nothing wrote the name since), the store is not
// asked: a shorter file is Stale, any other is stored. With o.Partial,
// a last copy that was Stale counts too: the daemon's receiver passes the
// size of its last copy, stored or not, and after a restart its first
// copies are stale against the previous run's; a file holding less WAL
// than the store held then, and whose WAL is a prefix of what was read
// of it then (kept in o.Partial up to partialCacheMax, else read
// again), is Stale as well, never stored over it. The daemon's
// receiver stores the copies of a growing segment this way, one at a
// time and in order, so a copy costs one round trip (the PUT) instead of
// two, and the stored object is read at most once per segment after a
// start or a failed copy.
func (a *Archive) PutPartialWAL(ctx context.Context, path string, o PushOptions) (PushResult, error) {
	name := filepath.Base(path)
	if !wal.IsPartialName(name) {
		return PushResult{}, fmt.Errorf("put partial %s: %q is not a <segment>.partial file name", path, name)
	}
	if o.Partial == nil {
		return a.putPartial(ctx, path, name, o, nil, false)
	}
	o.Partial.mu.Lock()
	defer o.Partial.mu.Unlock()
	if o.StoredPartial == 0 {
		o.Partial.drop()
	}
	res, err := a.putPartial(ctx, path, name, o, o.Partial, false)
	if err != nil {
		// What the failed copy left in the store is unknown; the next
		// starts from scratch (it comes with StoredPartial zero too).
		o.Partial.drop()
	} else if s := o.Partial.s; s != nil && res.SegmentSize != 0 && s.n >= int64(res.SegmentSize) {
		// A whole segment (an ended timeline's final copy, padded)
		// grows no more: nothing is left to append, and what the cache
		// holds would stay until the next segment.
		o.Partial.drop()
	}
	return res, err
}

// putPartial is PutPartialWAL, with the copy encoded through cache when
// not nil (locked by the caller) and its codec has an appender, else from
// the start. With keep (PushWAL), a stored object that is not a shorter
// copy of the file's WAL is not stored over (checkStored).
func (a *Archive) putPartial(ctx context.Context, path, name string, o PushOptions, cache *PartialCache, keep bool) (PushResult, error) {
	var (
		res         PushResult
		fileSize    int64
		size        int64 // the WAL's data size
		storeObject func(md storage.Metadata) error
	)
	var cp *cachedPartial
	if cache != nil {
		alg := o.HashAlgorithm
		if alg == "" {
			alg = DefaultHashAlgorithm
		}
		res = PushResult{Name: name, Key: a.Layout.WALKey(name), HashAlgorithm: alg, PGVersion: o.PGVersion}
		var err error
		if cp, err = cache.prepare(a.Codec, path, name, &res); err != nil {
			return res, fmt.Errorf("put partial %s: %w", path, err)
		}
	}
	if cp != nil {
		fileSize, size = cp.size, cp.data
		storeObject = func(md storage.Metadata) error {
			return cp.store(ctx, a, &res, walMetadata(&res, md))
		}
	} else {
		src, r, err := a.openWALUpload(path, name, o, true)
		res = r
		if err != nil {
			return res, fmt.Errorf("put partial %s: %w", path, err)
		}
		defer src.Close()
		if size, err = dataSize(src.reader()); err != nil {
			return res, fmt.Errorf("put partial %s: %w", path, err)
		}
		fileSize = src.size
		storeObject = func(md storage.Metadata) error { return a.storeWAL(ctx, src, &res, md, false, 0) }
	}
	obj, err := a.statPartial(ctx, res.Key, o.StoredPartial)
	if errors.Is(err, errKnownPartial) {
		switch ahead := cache.aheadOf(name); {
		case o.StoredPartial > fileSize:
			// Both files are prefixes of the same stream: a shorter
			// file holds no more WAL.
			res.Stale = true
			return res, nil
		case ahead == nil || size >= ahead.data:
		case ahead.wal == nil:
			// The caller's last copy was stale against a longer copy
			// too large to keep: read it again.
			obj, err = a.Store.Stat(ctx, res.Key)
		default:
			// The caller's last copy was stale: the store holds the
			// longer copy found then, which this one must be a prefix
			// of to count as stored.
			same, err := sameWAL(path, size, ahead.wal)
			if err != nil {
				return res, fmt.Errorf("put partial %s: %w", path, err)
			}
			if same {
				res.Stale = true
				return res, nil
			}
			res.Replaced = fmt.Errorf("%s is not the WAL the server sent: its first %d bytes differ from this copy's", res.Key, size)
		}
	}
	switch {
	case errors.Is(err, errKnownPartial), errors.Is(err, storage.ErrNotFound):
	case err != nil:
		return res, fmt.Errorf("put partial %s: stat %s: %w", path, res.Key, err)
	default:
		done, err := a.checkStored(ctx, obj, path, fileSize, size, o.HoldsSpool, keep, cache, &res)
		if err != nil {
			return res, fmt.Errorf("put partial %s: %w", path, err)
		}
		if done {
			return res, nil
		}
	}

	md := storage.Metadata{MetaPartialDataSize: strconv.FormatInt(size, 10)}
	if keep {
		// Stored as PushWAL stores any file, without the claim: the
		// size counts every non-zero byte of PostgreSQL's file, also
		// past its end of WAL, and a claim above what the daemon's
		// receiver holds of the segment would have its final copy
		// fail (ErrUnverifiedPartial) where it holds only the public
		// key.
		md = nil
	}
	if err := storeObject(md); err != nil {
		return res, fmt.Errorf("put partial %s: %w", path, err)
	}
	if cache != nil {
		cache.ahead = partialAhead{}
	}
	return res, nil
}

// errKnownPartial is statPartial's answer when the caller knows what
// the stored .partial holds.
var errKnownPartial = errors.New("stored .partial known")

// statPartial stats the stored .partial key, unless known (the caller's
// PushOptions.StoredPartial) says how much WAL it holds: then it returns
// errKnownPartial without a round trip.
func (a *Archive) statPartial(ctx context.Context, key string, known int64) (storage.Object, error) {
	if known > 0 {
		return storage.Object{}, errKnownPartial
	}
	return a.Store.Stat(ctx, key)
}

// zeroBlock is dataSize's all-zero comparand.
var zeroBlock [256 << 10]byte

// dataSize returns the position after the last non-zero byte of r. A
// block of zeros, most of a .partial copy, is skipped with one
// comparison (vectorised), not a byte at a time.
func dataSize(r io.Reader) (int64, error) {
	buf := make([]byte, len(zeroBlock))
	var off, end int64
	for {
		n, err := r.Read(buf)
		if n > 0 && !bytes.Equal(buf[:n], zeroBlock[:n]) {
			i := n - 1
			for buf[i] == 0 {
				i--
			}
			end = off + int64(i) + 1
		}
		off += int64(n)
		if err == io.EOF {
			return end, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// DeletePartialWAL removes xlog/<segment>.partial, a copy of the segment
// while it was being received, once the complete segment is stored: the
// complete segment supersedes it. A missing object is not an error.
func (a *Archive) DeletePartialWAL(ctx context.Context, segment string) error {
	if !wal.IsSegmentName(segment) {
		return fmt.Errorf("delete partial: %q is not a WAL segment name", segment)
	}
	key := a.Layout.WALKey(segment + ".partial")
	if err := a.Store.Delete(ctx, key); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}
