package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// What a stored .partial holds. Its metadata (MetaPartialDataSize, the
// hash) is not authenticated, not even in an encrypted site: anyone who
// can write to the bucket can set it. So how much WAL a .partial holds is
// read from its decoded content (the HMAC checked in an encrypted site,
// the page header checked against the name, as wal-fetch does), and a
// stored copy counts as holding the WAL the daemon is storing only when
// its bytes start with exactly that WAL (docs/security.md).

// ErrUnverifiedPartial is wrapped by PutPartialWAL's error when the stored
// .partial claims (in its metadata) more WAL than the file holds, or
// claims nothing (hoard before 2026-12-02 recorded no claim) and the
// caller does not vouch for the file (PushOptions.HoldsSpool), and this
// process cannot read it to check (an encrypted site whose daemon holds
// only the public key): the file is neither stored over it, which could
// take back WAL an earlier run stored, nor reported stored. A later copy
// holding at least as much as the claim is stored.
var ErrUnverifiedPartial = errors.New("the stored .partial may hold more WAL than this copy and cannot be read to check")

// PartialRefused reports whether err, from PutPartialWAL, is a refusal
// that retrying cannot end: the stored .partial may not be replaced by
// the file, being a copy that may hold more WAL and cannot be read to
// check (ErrUnverifiedPartial) or one of other WAL (ErrWALConflict). Only
// moving the stored object away ends it.
func PartialRefused(err error) bool {
	return errors.Is(err, ErrUnverifiedPartial) || errors.Is(err, ErrWALConflict)
}

// readPartial decodes the stored .partial key, called name, writing its
// decoded bytes to sink (when not nil) as they come: read to EOF (an
// encrypted object's HMAC checked), its page header must be that of
// name's segment (wal.CheckSegment) and it may not be longer than the
// segment size that header gives. It returns the position after the
// last non-zero byte: how much WAL it holds. sink sees bytes before they
// are checked: nothing it saw counts unless readPartial returns nil. An
// object that is not that WAL gives an error for which NotWAL is true.
func (a *Archive) readPartial(ctx context.Context, key, name string, sink io.Writer) (int64, error) {
	rc, _, err := a.Codec.Open(ctx, a.Store, key)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	hdr := make([]byte, wal.PageHeaderSize)
	if n, err := io.ReadFull(rc, hdr); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return 0, fmt.Errorf("%w: %s holds %d bytes, less than a page header", wal.ErrBadPageHeader, key, n)
		}
		return 0, err
	}
	// The size is checked below, once known.
	h, err := wal.CheckSegment(name, hdr, wal.PageHeaderSize)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", key, err)
	}
	segSize := int64(h.SegmentSize)
	rest := io.LimitReader(rc, segSize-wal.PageHeaderSize+1)
	if sink != nil {
		if _, err := sink.Write(hdr); err != nil {
			return 0, err
		}
		rest = io.TeeReader(rest, sink)
	}
	counted := &storage.CountingReader{R: rest}
	n, err := dataSize(counted)
	if err != nil {
		return 0, err
	}
	if wal.PageHeaderSize+counted.N > segSize {
		return 0, fmt.Errorf("%w: %s decodes to more than the %d-byte segment", wal.ErrBadPageHeader, key, segSize)
	}
	// The LimitReader may have stopped short of the decoder's EOF, where
	// an encrypted object's HMAC is checked.
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return 0, err
	}
	if n == 0 {
		return int64(len(bytes.TrimRight(hdr, "\x00"))), nil
	}
	return wal.PageHeaderSize + n, nil
}

// partialMatch is readPartial's sink when a copy is checked against the
// stored .partial: it compares the stored bytes, as they come, with the
// first data bytes of the copy's file f, and keeps them while there are
// at most max of them (for the copies after it: PartialCache.ahead).
type partialMatch struct {
	f       io.ReaderAt
	data    int64
	max     int64
	off     int64 // stored bytes seen
	differs bool  // a difference within the first data bytes
	diffAt  int64 // where the first difference is, when differs
	kept    []byte
	dropped bool // more than max: nothing kept
	buf     []byte
}

func (m *partialMatch) Write(p []byte) (int, error) {
	if n := min(int64(len(p)), m.data-m.off); n > 0 && !m.differs {
		if int64(cap(m.buf)) < n {
			m.buf = make([]byte, n)
		}
		b := m.buf[:n]
		if _, err := m.f.ReadAt(b, m.off); err != nil {
			return 0, fmt.Errorf("read the copy: %w", err)
		}
		for i := range b {
			if b[i] != p[i] {
				m.differs, m.diffAt = true, m.off+int64(i)
				break
			}
		}
	}
	m.off += int64(len(p))
	if m.off > m.max {
		m.kept, m.dropped = nil, true
	} else if !m.dropped {
		m.kept = append(m.kept, p...)
	}
	return len(p), nil
}

// same reports whether the stored bytes start with the copy's data bytes.
func (m *partialMatch) same() bool { return !m.differs && m.off >= m.data }

// NotWAL reports whether err, from reading a stored WAL object
// (PartialDataSize), says the object is not WAL of its name that this
// process can read: it does not decode (tampered, truncated, corrupt,
// unencrypted in a site that encrypts) or its page header is another
// segment's. A missing private key and errors of the store itself are
// not such errors: they say nothing about the object.
func NotWAL(err error) bool {
	var de *DecodeError
	return errors.Is(err, wal.ErrBadPageHeader) || errors.As(err, &de) && !errors.Is(err, ErrNoPrivateKey)
}

// sameWAL reports whether the file at path holds exactly the first data
// bytes of content (data is the position after the file's last non-zero
// byte): content, a stored copy read earlier, is a copy of the same
// stream, at least as long.
func sameWAL(path string, data int64, content []byte) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	m := &partialMatch{f: f, data: data}
	for p := content; len(p) > 0 && !m.differs && m.off < data; {
		n := min(len(p), 1<<20)
		if _, err := m.Write(p[:n]); err != nil {
			return false, err
		}
		p = p[n:]
	}
	return m.same(), nil
}

// checkStored decides, for the stored .partial obj that the caller does
// not know as its own last copy, whether the file at path (fileSize bytes,
// its WAL data ending at data) is stored over it. It returns done when it
// must not be: res.Stale when the stored copy holds this file's WAL and
// more (a restarted receiver's first copies), or nothing to do when it
// holds exactly this file. When the stored object is not this stream's
// WAL, res.Replaced says why and the file is stored over it; with keep
// (wal-push, PushWAL), it is stored over only when it is a shorter copy
// of the file's WAL (its bytes up to its last non-zero one are the
// file's), and any other is an error wrapping ErrWALConflict.
//
// The object's metadata is a hint only where following it cannot lose
// WAL to anyone but a writer who could delete the object anyway: one
// that claims less WAL than the file (and another hash) is stored over
// without being read. One that claims nothing and cannot be read is
// stored over only when holdsSpool (PushOptions.HoldsSpool). Any other is read (readPartial): about
// one segment downloaded for the first copy of a segment after a restart
// or a failed copy. The caller's later copies compare with what cache
// keeps (partialAhead) instead of reading it again.
func (a *Archive) checkStored(ctx context.Context, obj storage.Object, path string, fileSize, data int64, holdsSpool, keep bool, cache *PartialCache, res *PushResult) (done bool, err error) {
	claim, claimed := int64(0), false
	if v, ok := obj.Metadata[MetaPartialDataSize]; ok {
		if n, err := parseDataSize(obj.Key, v); err == nil {
			claim, claimed = n, true
		}
	}
	sameHash := obj.Metadata[MetaHash] == res.Hash && obj.Metadata[MetaHashAlgorithm] == res.HashAlgorithm
	if claimed && claim < data && !sameHash {
		return false, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	m := &partialMatch{f: f, data: data, max: cache.max()}
	stored, err := a.readPartial(ctx, obj.Key, res.Name, m)
	switch {
	case errors.Is(err, ErrNoPrivateKey):
		if claimed && claim <= data {
			// Storing the file loses nothing even if the claim is true.
			return false, nil
		}
		if !claimed && holdsSpool {
			// An earlier version's copy, of the spool file the caller's
			// copy holds all the WAL of (PushOptions.HoldsSpool).
			return false, nil
		}
		if !claimed {
			return false, fmt.Errorf("%s: %w: it records no %s (stored by hoard before 2026-12-02, or by another writer) (%v)",
				obj.Key, ErrUnverifiedPartial, MetaPartialDataSize, err)
		}
		return false, fmt.Errorf("%s: %w (%v)", obj.Key, ErrUnverifiedPartial, err)
	case NotWAL(err) && keep:
		return false, fmt.Errorf("%w: %s is not this segment's WAL as hoard stores it: %w", ErrWALConflict, obj.Key, err)
	case NotWAL(err):
		res.Replaced = err
		return false, nil
	case err != nil:
		return false, fmt.Errorf("read the stored copy %s: %w", obj.Key, err)
	}
	switch {
	case !m.same() && keep && m.differs && m.diffAt < stored:
		return false, fmt.Errorf("%s holds other WAL than the local file from byte %d on, and is not a shorter copy of it: %w", obj.Key, m.diffAt, ErrWALConflict)
	case !m.same() && keep:
		// A shorter copy of the file's WAL: stored over, as a
		// longer copy of a growing segment is.
		return false, nil
	case !m.same():
		res.Replaced = fmt.Errorf("%s is not the WAL the server sent: it does not start with this copy's %d bytes of WAL", obj.Key, data)
		return false, nil
	case stored > data:
		res.Stale = true
		if cache != nil {
			cache.keepAhead(res.Name, stored, m.kept)
		}
		return true, nil
	case m.off == fileSize:
		// The same bytes: a retry after a crash, or a segment that did
		// not grow. The push that stored it may have died before its
		// own fsyncs.
		return true, storage.Sync(ctx, a.Store, obj.Key)
	}
	// The same WAL, padded otherwise: stored as this copy.
	return false, nil
}
