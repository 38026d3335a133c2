package archive

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"

	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// PartialCache keeps, between the copies of one growing .partial segment
// that PutPartialWAL stores (PushOptions.Partial), what encoding the
// earlier copies cost: the running hash of the WAL, where its data ends,
// and its compressed stream (a compress.Appender). A copy then reads,
// hashes and compresses only the WAL added since the previous one; the
// stored object is still one ordinary object, the whole compressed
// stream ended at this copy's end, encrypted as a whole with a key of its
// own (no key or keystream is shared by two copies: an attacker reading
// old versions in the bucket could combine them), which costs a pass of
// AES-CTR and HMAC over the compressed bytes.
//
// It holds at most one segment's compressed WAL, of at most
// partialCacheMax bytes of WAL. Compressions whose
// stream cannot be ended without ending the compressor (lzma, lz4 with
// its content checksum, which encrypted sites leave out) encode each copy
// from the start, as without a cache.
//
// The cache forgets everything (Reset) when PutPartialWAL is called with
// StoredPartial zero (the first copy of a segment or of a session, the
// copy after a failed one, the final copy of an ended timeline), when a
// copy fails to be stored, for another file name, for a file shorter than
// the last or whose last page before that end changed, and after a copy
// of a whole segment (it grows no more): the next copy is encoded from
// the start. The daemon resets it once the complete segment
// is stored. Safe for concurrent use, one copy at a time.
type PartialCache struct {
	mu sync.Mutex
	s  *partialState
	// limit, when not zero, replaces partialCacheMax (tests).
	limit int64
	// ahead is what the store was found to hold when a copy was Stale:
	// a copy that someone else stored (an earlier run of the daemon),
	// with more WAL, read and compared with the copy (checkStored). A
	// caller's StoredPartial is the size of its last copy, stale or
	// not: a later copy still shorter than ahead is stale too, not
	// stored over it, when it is a prefix of ahead's WAL.
	ahead partialAhead
}

// partialAhead is a stored .partial's name, WAL data size and WAL (nil
// when larger than the cache keeps: read again when needed).
type partialAhead struct {
	name string
	data int64
	wal  []byte
}

// keepAhead records the stored copy of the .partial name that a copy
// was Stale against: data bytes of WAL, and its content when kept (nil:
// too large, read again when needed).
func (c *PartialCache) keepAhead(name string, data int64, content []byte) {
	c.ahead = partialAhead{name: name, data: data}
	if content != nil {
		c.ahead.wal = content[:data]
	}
}

// aheadOf returns what c (nil: none) keeps of the stored copy of the
// .partial name that the last copy was Stale against, or nil.
func (c *PartialCache) aheadOf(name string) *partialAhead {
	if c == nil || c.ahead.name != name {
		return nil
	}
	return &c.ahead
}

// max returns how much WAL the cache (nil: none) holds at most.
func (c *PartialCache) max() int64 {
	if c == nil {
		return 0
	}
	if c.limit != 0 {
		return c.limit
	}
	return partialCacheMax
}

// partialCacheMax bounds the WAL a PartialCache holds the encoding of: a
// copy of a larger file (wal_segment_size goes up to 1 GiB) is encoded
// from the start, as without a cache, so that the daemon never holds
// more than about this much (a compressed stream holds up to as much as
// its plaintext, and all of it without compression).
const partialCacheMax = 64 << 20

// partialState is what a PartialCache holds for one file.
type partialState struct {
	name string
	key  partialCodecKey
	n    int64     // plaintext bytes hashed and appended
	h    hash.Hash // hash of those bytes
	data int64     // position after their last non-zero byte
	last []byte    // their last bytes (up to a page), checked against the file
	app  compress.Appender
	buf  []byte // read buffer
}

// partialCodecKey is what a cached stream depends on besides the WAL.
type partialCodecKey struct {
	alg     string
	level   int
	keyID   string
	pub     *rsa.PublicKey
	hashAlg string
}

// partialLastLen is how much of the cached WAL's end is compared with the
// file before more is appended: one WAL page.
const partialLastLen = 8192

// Reset forgets what the cache holds: the next copy is encoded from the
// start, and compared with the store's copy anew.
func (c *PartialCache) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.drop()
	c.ahead = partialAhead{}
}

func (c *PartialCache) drop() {
	if c.s != nil {
		c.s.app.Close()
		c.s = nil
	}
}

// cachedPartial is a .partial file's copy prepared through a
// PartialCache.
type cachedPartial struct {
	size int64 // the file's size
	data int64 // position after its last non-zero byte
	sum  string
	app  compress.Appender
}

// prepare brings the cache up to the file at path and returns the copy,
// or nil (and no error) when the codec has no appender or the file is
// larger than the cache holds (partialCacheMax): encode it from the
// start. res gets the file's hash, segment size and version.
func (c *PartialCache) prepare(codec *Codec, path, name string, res *PushResult) (*cachedPartial, error) {
	enc, err := codec.encrypts()
	if err != nil {
		return nil, err
	}
	key := partialCodecKey{alg: codec.Compression, level: codec.Level, keyID: codec.KeyID, pub: codec.PublicKey, hashAlg: res.HashAlgorithm}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	size := fi.Size()
	if err := checkWALHeader(f, name, size, res); err != nil {
		return nil, err
	}
	if size > c.max() {
		c.drop()
		return nil, nil
	}
	if s := c.s; s != nil && (s.name != name || s.key != key || size < s.n || !s.lastMatches(f)) {
		c.drop()
	}
	if c.s == nil {
		app, err := compress.NewAppender(codec.Compression, compress.Options{Level: codec.Level, NoChecksum: enc})
		if errors.Is(err, compress.ErrNoAppender) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		h, err := NewHash(res.HashAlgorithm)
		if err != nil {
			app.Close()
			return nil, err
		}
		c.s = &partialState{name: name, key: key, h: h, app: app, buf: make([]byte, 1<<20)}
	}
	if err := c.s.appendFile(f, size); err != nil {
		c.drop()
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	res.Hash = hex.EncodeToString(c.s.h.Sum(nil))
	return &cachedPartial{size: size, data: c.s.data, sum: res.Hash, app: c.s.app}, nil
}

// lastMatches reports whether the file still holds the cached WAL's last
// bytes where they were.
func (s *partialState) lastMatches(f io.ReaderAt) bool {
	b := make([]byte, len(s.last))
	_, err := f.ReadAt(b, s.n-int64(len(b)))
	return err == nil && bytes.Equal(b, s.last)
}

// appendFile reads the file from s.n to size and appends it: hash, data
// end, compressed stream.
func (s *partialState) appendFile(f io.ReaderAt, size int64) error {
	for s.n < size {
		p := s.buf[:min(int64(len(s.buf)), size-s.n)]
		if _, err := f.ReadAt(p, s.n); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		s.h.Write(p)
		if i := lastNonZero(p); i >= 0 {
			s.data = s.n + int64(i) + 1
		}
		if err := s.app.Append(p); err != nil {
			return fmt.Errorf("compress: %w", err)
		}
		s.n += int64(len(p))
		if len(p) >= partialLastLen {
			s.last = append(s.last[:0], p[len(p)-partialLastLen:]...)
		} else {
			s.last = append(s.last, p...)
			s.last = s.last[max(0, len(s.last)-partialLastLen):]
		}
	}
	return nil
}

// lastNonZero returns the index of p's last non-zero byte, or -1.
func lastNonZero(p []byte) int {
	for end := len(p); end > 0; {
		start := max(0, end-len(zeroBlock))
		if !bytes.Equal(p[start:end], zeroBlock[:end-start]) {
			i := end - 1
			for p[i] == 0 {
				i--
			}
			return i
		}
		end = start
	}
	return -1
}

// store stores the cached compressed stream as res.Key, encrypted anew.
func (cp *cachedPartial) store(ctx context.Context, a *Archive, res *PushResult, md storage.Metadata) error {
	parts, err := cp.app.Stream()
	if err != nil {
		return err
	}
	u, err := a.Codec.NewUpload(ctx, a.Store, res.Key, md, UploadOptions{Size: cp.size, compressed: true})
	if err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := u.Write(p); err != nil {
			break // Close returns the upload's error
		}
	}
	st, err := u.Close()
	if err != nil {
		return fmt.Errorf("store as %s: %w", res.Key, err)
	}
	st.PlainSize = cp.size
	res.Stored, res.Uploaded = st, true
	return nil
}

// checkWALHeader checks the page header of the segment or .partial file
// name of size bytes and records its segment size and version in res.
func checkWALHeader(src io.ReaderAt, name string, size int64, res *PushResult) error {
	hdr := make([]byte, wal.PageHeaderSize)
	if _, err := src.ReadAt(hdr, 0); err != nil {
		return fmt.Errorf("%w: read page header: %v", wal.ErrBadPageHeader, err)
	}
	h, err := wal.CheckSegment(name, hdr, size)
	if err != nil {
		return err
	}
	res.SegmentSize = uint64(h.SegmentSize)
	if res.PGVersion == 0 {
		res.PGVersion = h.ServerVersionNum()
	}
	return nil
}
