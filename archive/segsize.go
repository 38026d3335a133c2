package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// PGHoard records no WAL segment size with its objects, and a cluster made
// with initdb --wal-segsize has segments of 1 MiB to 1 GiB. Read as 16 MiB,
// such a backup's start segment names another LSN (000000010000000100000003
// starts at 1/C000000 with 64 MiB segments, at 1/3000000 with 16 MiB), or
// no segment at all (segment 0x123 of a log exists only below 16 MiB): the
// backup was listed as damaged, never restored, and its WAL reach and
// retention bound were computed at the wrong size. The first page of every
// segment declares the size (xlp_seg_size in the long page header), so the
// size is learned from the site's WAL.

// SiteSegmentSize returns the WAL segment size the first page of a
// complete segment stored in a's own xlog/ declares: the first of starts
// (segment names, the start segments of the backups that record no size,
// the most useful first) that is stored and reads back checked, else the
// newest stored segment's. In a site with keys it reads the whole object
// (copyChecked: the HMAC, the hash, the page header against the name and
// the length), so that the declared size is authenticated against
// whoever holds no key; in a site without keys, where nothing
// authenticates, only the first page (firstPageSize). 0 with a
// nil error when no segment is stored or none reads back checked: the
// size is not known, and no WAL is readable at any size. An error of the
// store, while listing or reading a segment, is returned: a segment it
// could not read may be sound and say another size than the default.
func (a *Archive) SiteSegmentSize(ctx context.Context, starts []string) (uint64, error) {
	names := slices.Clone(starts)
	stored, err := a.ListSegments(ctx)
	if err != nil {
		return 0, err
	}
	slices.Sort(stored)
	if n := len(stored); n > 0 {
		names = append(names, stored[n-1])
	}
	for _, name := range names {
		size, err := a.segmentSize(ctx, name)
		if errors.Is(err, storage.ErrNotFound) || errors.Is(err, errNotChecked) {
			continue
		}
		if err != nil {
			return 0, err
		}
		return size, nil
	}
	return 0, nil
}

// errNotChecked marks a stored segment whose content does not pass
// copyChecked: it declares no size to trust.
var errNotChecked = errors.New("segment does not read back checked")

// learnedSizes holds, by StoreID, key and the object's size and time of
// writing (storage.Object.Changed), the segment size a stored segment
// declared when it read back checked, so that the daemon, which lists the
// backups again and again, reads the segment once per process. Another
// object under the name (hoard never replaces an archived segment, but a
// segment deleted and archived again by another cluster in the same
// site, or one planted, is) is read again: a wrong size reads the site's
// PGHoard backups as damaged, or refuses their restore, until the daemon
// restarts. A backend without a time of writing keys by the size alone.
// Stores without a StoreID (tests' memory stores) are not cached.
var learnedSizes sync.Map // string -> uint64

// segmentSize reads the stored segment name and returns the size its
// first page declares: the whole object in a site with keys, its first
// page in one without (firstPageSize).
func (a *Archive) segmentSize(ctx context.Context, name string) (uint64, error) {
	if !wal.IsSegmentName(name) {
		return 0, fmt.Errorf("%s: %w", name, errNotChecked)
	}
	key := a.Layout.WALKey(name)
	var cacheKey string
	if a.StoreID != "" {
		// The object's identity as the store records it (its size, and
		// when the store wrote it: a time no writer chooses), so that
		// another object under the name (the segment deleted, and a new
		// cluster of another segment size archived into the site) is
		// read again rather than answered from the cache: one HEAD per
		// listing in place of a GET per process.
		o, err := a.Store.Stat(ctx, key)
		if err != nil {
			return 0, fmt.Errorf("segment size from %s: %w", key, err)
		}
		cacheKey = fmt.Sprintf("%s\x00%s\x00%d\x00%d", a.StoreID, key, o.Size, o.Changed.UnixNano())
		if n, ok := learnedSizes.Load(cacheKey); ok {
			return n.(uint64), nil
		}
	}
	rc, md, err := a.Codec.Open(ctx, a.Store, key)
	if err != nil {
		var de *DecodeError
		if errors.As(err, &de) {
			return 0, fmt.Errorf("%s: %w: %w", name, errNotChecked, err)
		}
		return 0, fmt.Errorf("segment size from %s: %w", key, err)
	}
	defer rc.Close()
	if !a.Codec.hasKeys() {
		return a.firstPageSize(rc, cacheKey, key, name)
	}
	// A read error that is no DecodeError is the store's (a connection
	// reset halfway): the segment may be sound, so the size is not known
	// and the listing fails, rather than skip to a guess.
	read := &errReader{r: rc}
	h, _, err := copyChecked(io.Discard, read, md, key, name)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		var de *DecodeError
		if read.err != nil && !errors.As(read.err, &de) {
			return 0, fmt.Errorf("segment size from %s: %w", key, read.err)
		}
		return 0, fmt.Errorf("%s: %w: %w", name, errNotChecked, err)
	}
	if a.StoreID != "" {
		learnedSizes.Store(cacheKey, uint64(h.SegmentSize))
	}
	return uint64(h.SegmentSize), nil
}

// hasKeys reports whether c holds or requires encryption keys: then its
// objects' HMAC authenticates them against whoever holds no key.
func (c *Codec) hasKeys() bool {
	return c.PublicKey != nil || len(c.PublicKeys) != 0 || len(c.PrivateKeys) != 0 || c.RequireEncryption
}

// firstPageSize returns the size the first page of segment name, read
// from rc, declares, checked against the name (wal.CheckSegment: the
// page address at that size, the timeline). It is for a site without
// keys: there, anyone who can write the bucket can write the hash
// metadata too, so reading the whole segment to check its hash adds no
// authentication, only a download of up to 1 GiB per process. A first
// page that does not decode or check is errNotChecked; the store's
// read error is returned as such.
func (a *Archive) firstPageSize(rc io.Reader, cacheKey, key, name string) (uint64, error) {
	head := make([]byte, wal.PageHeaderSize)
	if _, err := io.ReadFull(rc, head); err != nil {
		var de *DecodeError
		if errors.As(err, &de) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, fmt.Errorf("%s: %w: %w", name, errNotChecked, err)
		}
		return 0, fmt.Errorf("segment size from %s: %w", key, err)
	}
	h, err := wal.DecodePageHeader(head)
	if err == nil {
		h, err = wal.CheckSegment(name, head, int64(h.SegmentSize))
	}
	if err != nil {
		return 0, fmt.Errorf("%s: %w: %w", name, errNotChecked, err)
	}
	if a.StoreID != "" {
		learnedSizes.Store(cacheKey, uint64(h.SegmentSize))
	}
	return uint64(h.SegmentSize), nil
}

// learnSegmentSize returns the segment size of a's WAL where one of the
// backups stats (main objects) records none (SiteSegmentSize, tried with
// their start segments, the newest first), 0 where all record one; assumed
// is set where some record none and no stored segment says it (read at
// DefaultSegmentSize).
func (a *Archive) learnSegmentSize(ctx context.Context, stats []storage.Object) (size uint64, assumed bool, err error) {
	var starts []string
	unrecorded := false
	for _, st := range stats {
		if st.Metadata[MetaWALSegmentSize] != "" {
			continue
		}
		unrecorded = true
		if s := st.Metadata[MetaStartWALSegment]; wal.IsSegmentName(s) && !slices.Contains(starts, s) {
			starts = append(starts, s)
		}
	}
	if !unrecorded {
		return 0, false, nil
	}
	// Names sort as positions do, at any segment size.
	slices.Sort(starts)
	slices.Reverse(starts)
	size, err = a.SiteSegmentSize(ctx, starts)
	if err != nil {
		return 0, false, fmt.Errorf("site %s: WAL segment size of its PGHoard backups: %w", a.Site, err)
	}
	return size, size == 0, nil
}

// assumedNoted holds, by StoreID and prefix, the sites whose assumed
// segment size was logged: once per process, as the daemon lists again
// and again. Stores without a StoreID are logged at every listing.
var assumedNoted sync.Map // string -> struct{}

// noteAssumedSize logs, once per process for a's site, that its backups
// that record no segment size are read at DefaultSegmentSize: no segment
// stored in its xlog/ says the size (none is stored, or none reads back
// checked). Right for a cluster made without initdb --wal-segsize; for
// one made with it, such a backup reads as damaged until a segment is
// archived.
func (a *Archive) noteAssumedSize() {
	if a.StoreID != "" {
		if _, seen := assumedNoted.LoadOrStore(a.StoreID+"\x00"+a.Layout.Prefix, struct{}{}); seen {
			return
		}
	}
	a.Log.Warn().Str("site", a.Site).Uint64("segment_size", DefaultSegmentSize).
		Msg("no archived wal segment says the segment size of the pghoard backups: read at the default size")
}
