package archive

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// fetchTempPrefix starts the names of FetchWAL's temporary files in the
// destination's directory (pg_wal). Each download holds a flock on its file
// (createLockedTemp): one whose lock can be taken is a dead download's
// (removeDeadTemps). staleFetchTemp is the age after which one is taken
// for a dead download's where flock fails (a file system without locks).
const (
	fetchTempPrefix = ".hoard-fetch-"
	staleFetchTemp  = time.Hour
)

// FetchOptions configure FetchWAL.
type FetchOptions struct {
	// Spool is the prefetch spool directory (SpoolDir of the destination);
	// "" turns prefetching off. A segment found in the spool is moved into
	// place without a storage round trip, and each delivered segment is
	// recorded there for the prefetch worker (PrefetchWAL). Where pg_wal's
	// file system is full, the spooled segments are removed for any WAL
	// file, a history file included.
	Spool string
	// StandIn, when set, is called with the key of the .partial object
	// delivered in place of a missing segment (see WALListing.StandIn).
	StandIn func(key string)
	// SystemEnd, when set, is called instead of StandIn where the
	// .partial delivered ends SystemID's WAL with another system's WAL
	// stored after it (WALListing.SystemEndAt).
	SystemEnd func(e *SystemEnd)
	// SystemID, when not zero, is the system identifier of the cluster
	// the file is fetched for (its pg_control's): a segment or .partial
	// whose first page names another is refused (ErrOtherSystem), and so
	// is a history file bound to another (checkHistory), unless its
	// timeline is at most Timeline.
	SystemID uint64
	// Timeline, when not zero, is the timeline the cluster is on (its
	// pg_control's latest checkpoint's): a history file bound to another
	// system whose timeline is this one or an earlier one is treated as
	// absent, and so is one of a later timeline where the archive holds
	// no WAL of SystemID on that timeline or later (IgnoreOtherHistory):
	// the error wraps both storage.ErrNotFound and an
	// *IgnoredHistoryError, the warning to give.
	Timeline uint32
	// ReplayStart, when known, is a lower bound of where the cluster's
	// recovery starts (ClusterControl.ReplayStart): that WAL below it is not
	// read in looking for the system's own (IgnoreOtherHistory).
	ReplayStart ReplayStart
	// AcceptTruncated names complete segments the operator accepts
	// although they are refused as truncated (a *TruncatedSegmentError),
	// each as NAME, or NAME@LSN to accept only a copy whose WAL ends at
	// LSN (ParseAcceptTruncated; hoard restore writes that form):
	// a standby's last segment of an ended timeline, or one PGHoard's
	// walreceiver mode stored unfinished. Such a segment is delivered,
	// and recovery ends where its WAL does. Every other check still
	// refuses it (hash, envelope, page header, timeline, system).
	AcceptTruncated []string
	// Truncated, when set, is called with the refusal a segment of
	// AcceptTruncated was delivered despite, once it is in place.
	Truncated func(e *TruncatedSegmentError)
	// Asker, when not nil, is the process that asked for the file
	// (NewAsker): the file is put in place at dest only while it still
	// runs and still asks through this process (checkPlace).
	Asker *Asker
}

// FetchWAL restores the WAL file name (a segment, .partial, .history or
// .backup file) to dest, as PostgreSQL's restore_command does with %f and
// %p. The file is decoded into a temporary file beside dest, checked (a
// segment's page header must match its name, and a recorded hash must
// match), fsynced and renamed into place: dest never exists half-written.
// A file in none of the searched folders gives an error wrapping
// storage.ErrNotFound; PostgreSQL reads that as the end of the archive.
//
// A missing segment at the very end of the archive is answered with its
// .partial copy when one stands in for it (WALListing.StandIn), padded
// with zeros to the segment size: recovery replays it up to its last
// valid record and ends there, as it does with a .partial in pg_wal. So
// is one whose .partial ends the WAL of SystemID, with another system's
// WAL stored after it (WALListing.SystemEndAt: pg_upgrade into the same
// prefix).
func (a *Archive) FetchWAL(ctx context.Context, name, dest string, o FetchOptions) error {
	if _, _, ok := walKind(name); !ok {
		return fmt.Errorf("fetch %s: not a WAL segment, .partial, .history or .backup file name", name)
	}
	dir, err := os.OpenRoot(filepath.Dir(dest))
	if err != nil {
		return fmt.Errorf("fetch %s: %w", name, err)
	}
	defer dir.Close()
	removeDeadTemps(dir, fetchTempPrefix)
	spooled := o.Spool != "" && wal.IsSegmentName(name)
	if spooled {
		if sp, err := openSpool(o.Spool, false); err == nil {
			sp.dropBefore(name)
			h, ok, refused, err := sp.take(name, dest, o.SystemID, a.spoolIdentity())
			if refused != nil {
				a.logSpoolRefused(name, sp.path(name), refused)
			}
			if ok {
				sp.want(name, uint64(h.SegmentSize))
			}
			sp.close()
			if err != nil {
				return fmt.Errorf("fetch %s: %w", name, err)
			}
			if ok {
				return nil
			}
		}
	}
	keys := make([]string, 0, 1+len(a.MovedFrom))
	var ignored error // an IgnoredHistoryError, reported if nothing else is found
	for _, arc := range a.sites() {
		key := arc.Layout.WALKey(name)
		keys = append(keys, key)
		chk := fetchChecks{hist: a, systemID: o.SystemID, timeline: o.Timeline, from: o.ReplayStart, asker: o.Asker}
		if end, ok := acceptedTruncated(o.AcceptTruncated, name); ok {
			chk.truncatedEnd = end
			chk.truncated = func(*TruncatedSegmentError) {}
			if o.Truncated != nil {
				chk.truncated = o.Truncated
			}
		}
		h, err := arc.fetchKey(ctx, chk, key, name, dir, filepath.Base(dest), fetchTempPrefix)
		if errors.Is(err, syscall.ENOSPC) && o.Spool != "" && clearSpool(o.Spool) {
			// The segments spooled ahead may be what fills pg_wal's
			// file system: they are only a head start, and recovery
			// must not stop for want of their room.
			h, err = arc.fetchKey(ctx, chk, key, name, dir, filepath.Base(dest), fetchTempPrefix)
		}
		if errors.Is(err, storage.ErrNotFound) {
			if _, ok := errors.AsType[*IgnoredHistoryError](err); ok && ignored == nil {
				ignored = err
			}
			continue
		}
		if err != nil {
			return noSpace(dir, a.objectInSite(err, key, arc))
		}
		if spooled {
			if sp, err := openSpool(o.Spool, true); err == nil {
				sp.want(name, uint64(h.SegmentSize))
				sp.close()
			}
		}
		return nil
	}
	if wal.IsSegmentName(name) {
		switch err := a.fetchStandIn(ctx, name, dir, filepath.Base(dest), o); {
		case err == nil:
			if spooled {
				if sp, err := openSpool(o.Spool, false); err == nil {
					sp.clear()
					sp.close()
				}
			}
			return nil
		case !errors.Is(err, storage.ErrNotFound):
			return noSpace(dir, err)
		}
	}
	if spooled {
		// PostgreSQL asks for a missing segment at the end of the archive,
		// and at the end of every recovery: what is spooled is no longer
		// needed (a standby asks again and gets it from storage).
		if sp, err := openSpool(o.Spool, false); err == nil {
			sp.clear()
			sp.close()
		}
	}
	if ignored != nil {
		return ignored
	}
	return fmt.Errorf("fetch %s: not in the archive (%s): %w", name, strings.Join(keys, ", "), storage.ErrNotFound)
}

// objectInSite adds to err, wal-fetch's refusal of object key of src (a
// or a site it moved from), "(object KEY of site S)" when a has moved_from
// sites (InSite): their keys can be a's, and a bucket's error names the
// key alone (a local store's, the full path), so only the site tells
// which storage holds the copy to fix. err is wrapped: the exit code
// wal-fetch derives from it is unchanged. err as it is otherwise, or
// when it is nil or ErrNotFound (no object was refused).
func (a *Archive) objectInSite(err error, key string, src *Archive) error {
	in := a.InSite(src)
	if err == nil || in == "" || errors.Is(err, storage.ErrNotFound) {
		return err
	}
	return fmt.Errorf("%w (object %s%s)", err, key, in)
}

// fetchStandIn delivers the .partial that stands in for the missing
// segment name to destName in dir, or returns an error wrapping
// storage.ErrNotFound when none does.
func (a *Archive) fetchStandIn(ctx context.Context, name string, dir *os.Root, destName string, o FetchOptions) error {
	if !a.partialStored(ctx, name) {
		return storage.ErrNotFound
	}
	l, err := a.ListStoredWAL(ctx)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", name, err)
	}
	// The cluster's own recovery's listing: after a pg_upgrade into the
	// site, the old cluster's later timeline is not one it follows.
	own := l
	if o.SystemID != 0 && o.Timeline != 0 {
		if own, err = a.RecoveryListing(ctx, l, o.Timeline, o.SystemID, o.ReplayStart); err != nil {
			return fmt.Errorf("fetch %s: %w", name, err)
		}
	}
	p, ok := own.StandIn(name)
	var end *SystemEnd
	if !ok {
		if end, err = l.SystemEndAt(ctx, name, o.SystemID); err != nil {
			return fmt.Errorf("fetch %s: %w", name, err)
		}
		if end == nil {
			return storage.ErrNotFound
		}
		p = end.Partial
	}
	if _, err := p.Archive.fetchKey(ctx, fetchChecks{hist: a, systemID: o.SystemID, asker: o.Asker}, p.Key, p.Name, dir, destName, fetchTempPrefix); err != nil {
		return a.objectInSite(err, p.Key, p.Archive)
	}
	switch {
	case end != nil && o.SystemEnd != nil:
		o.SystemEnd(end)
	case end == nil && o.StandIn != nil:
		o.StandIn(p.Key)
	}
	return nil
}

// partialStored reports whether a or a site it moved from may hold the
// .partial of segment name: false only when each site's storage answers
// that no object has its key. Both ways a .partial answers for a missing
// segment (WALListing.StandIn, SystemEndAt) take that object, so without
// it fetchStandIn answers "not archived" without listing xlog/ and
// timeline/ of every site: in a site kept for years, hundreds of
// thousands of objects and as many listing requests, for the segment
// after the archive's end that a standby in archive recovery asks for
// every few seconds. Any other answer (the object, a damaged one, an
// error) is left to the listing, as before.
func (a *Archive) partialStored(ctx context.Context, name string) bool {
	for _, s := range a.sites() {
		if _, err := s.Store.Stat(ctx, s.Layout.WALKey(name+wal.PartialSuffix)); !errors.Is(err, storage.ErrNotFound) {
			return true
		}
	}
	return false
}

// fetchChecks is what fetchKey checks a file against beyond its object.
type fetchChecks struct {
	// hist holds (with the sites it moved from) the timeline histories
	// that say where each timeline began.
	hist *Archive
	// systemID is the cluster's system identifier; 0: not checked.
	systemID uint64
	// timeline is the cluster's timeline (FetchOptions.Timeline); 0: not
	// known.
	timeline uint32
	// from is FetchOptions.ReplayStart.
	from ReplayStart
	// truncated, when not nil, accepts a complete segment refused as
	// truncated only (FetchOptions.AcceptTruncated) and is called once
	// it is in place.
	truncated func(e *TruncatedSegmentError)
	// truncatedEnd, when not 0, is where the accepted segment's WAL must
	// end (wal-fetch --accept-truncated NAME@LSN).
	truncatedEnd pglogrepl.LSN
	// asker is FetchOptions.Asker; nil: not checked.
	asker *Asker
}

// checkPlace returns an error where the file fetched must not be renamed
// into place: the fetch was told to stop (ctx), or the process that asked
// for it is gone (chk.asker). Either way nobody reads the file: the
// startup process that asked for it has exited (a stop signal reaches its
// process group, and it exits at once). And a server started again since
// runs a new wal-fetch into the same pg_wal/RECOVERYXLOG: renamed over the
// new one's file before PostgreSQL takes it (KeepFileRestoredFromArchive
// in xlogarchive.c), another segment there would be read as the one asked
// for, its wrong page address taken for the end of the archive, and
// recovery would end early. Between this check and the rename, the asker
// dying and a new server starting and completing a wal-fetch cannot all
// happen: the server's start alone takes far longer.
func (chk fetchChecks) checkPlace(ctx context.Context) error {
	if ctx.Err() != nil {
		return fmt.Errorf("not put in place: %w", context.Cause(ctx))
	}
	if chk.asker != nil {
		if err := chk.asker.Check(); err != nil {
			return fmt.Errorf("not put in place: %w: a server started again may be fetching into the same file, "+
				"and this wal-fetch is an orphan of the one that asked", err)
		}
	}
	return nil
}

// fetchKeyOnce decodes key into destName of dir through a temporary file whose
// name starts with tmpPrefix, checks it, and renames it into place. The
// temporary file is created anew (O_EXCL) and both names are resolved in
// dir, so no link is followed. For a segment or .partial file it returns
// the checked page header; a first page on an older timeline than the
// name's is checked against the name's timeline history, found in chk.hist
// or the sites it moved from (checkTimelineStart), and the page's system
// identifier against chk.systemID (checkSystemID). A history file must
// have been stored by hoard under its name (checkHistory). A .partial
// shorter than its segment is padded with zeros to the segment size:
// PostgreSQL refuses a segment file of any other size.
func (a *Archive) fetchKeyOnce(ctx context.Context, chk fetchChecks, key, name string, dir *os.Root, destName, tmpPrefix string) (wal.PageHeader, error) {
	rc, md, err := a.Codec.Open(ctx, a.Store, key)
	if err != nil {
		return wal.PageHeader{}, fmt.Errorf("fetch %s: %w", name, err)
	}
	defer rc.Close()

	tmp, lock, tmpName, err := createLockedTemp(dir, tmpPrefix+name+"-")
	if err != nil {
		return wal.PageHeader{}, fmt.Errorf("fetch %s: %w", name, err)
	}
	// The lock outlives tmp's Close, up to the rename: a file that is
	// still a temporary file is always a live download's.
	defer lock.Close()
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			dir.Remove(tmpName)
		}
	}()

	// Into the prefetch spool, the bytes checked are summed as they are
	// written, for spool.take to find them unchanged (spoolsum.go).
	var w io.Writer = tmp
	var crc hash.Hash32
	if tmpPrefix == spoolTmpPrefix {
		crc = crc32.New(spoolCRC)
		w = io.MultiWriter(tmp, crc)
	}
	h, truncated, err := a.decodeChecked(ctx, chk, w, rc, md, key, name)
	if err != nil {
		return h, err
	}
	if wal.IsPartialName(name) && h.SegmentSize > 0 {
		if fi, err := tmp.Stat(); err != nil || fi.Size() < int64(h.SegmentSize) {
			if err == nil {
				err = tmp.Truncate(int64(h.SegmentSize))
			}
			if err != nil {
				return h, fmt.Errorf("fetch %s: pad to the segment size: %w", name, err)
			}
		}
	}
	if err := tmp.Sync(); err != nil {
		return h, fmt.Errorf("fetch %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return h, fmt.Errorf("fetch %s: %w", name, err)
	}
	if err := chk.checkPlace(ctx); err != nil {
		return h, fmt.Errorf("fetch %s: %w", name, err)
	}
	if crc != nil {
		if err := writeSpoolSum(dir, destName, spoolSum{crc: crc.Sum32(), size: int64(h.SegmentSize)}); err != nil {
			return h, fmt.Errorf("fetch %s: %w", name, err)
		}
	}
	if err := dir.Rename(tmpName, destName); err != nil {
		return h, fmt.Errorf("fetch %s: in %s: %w", name, dir.Name(), err)
	}
	committed = true
	if err := syncDir(dir); err != nil {
		return h, fmt.Errorf("fetch %s: %w", name, err)
	}
	if truncated != nil {
		chk.truncated(truncated)
	}
	return h, nil
}

// decodeChecked copies rc, the decoded object key (metadata md) of the WAL
// file name, to w and runs every check wal-fetch makes of it: copyChecked's,
// the end of a timeline's last segment, the timeline of its first pages
// (checkTimelineStart), its system identifier (checkSystemID) and, for a
// history file, checkHistory. It returns the page header of a segment or
// .partial file and the truncation chk.truncated accepted, if any.
func (a *Archive) decodeChecked(ctx context.Context, chk fetchChecks, w io.Writer, rc io.Reader, md storage.Metadata, key, name string) (wal.PageHeader, *TruncatedSegmentError, error) {
	h, pages, err := copyChecked(w, rc, md, key, name)
	err = chk.hist.timelineEnd(ctx, name, h, err)
	// copyChecked checks a segment's end last, after its hash, envelope
	// and page header passed: the operator's acceptance lifts that check
	// alone, and the timeline and system checks below still run.
	truncated, _ := errors.AsType[*TruncatedSegmentError](err)
	if truncated != nil && chk.truncated != nil {
		err = acceptTruncated(truncated, name, chk.truncatedEnd)
	}
	if err != nil {
		return h, nil, fmt.Errorf("fetch %s from %s: %w", name, key, err)
	}
	if err := chk.hist.checkTimelineStart(ctx, name, h, pages, chk.systemID); err != nil {
		return h, nil, fmt.Errorf("fetch %s from %s: %w", name, key, err)
	}
	if err := checkSystemID(name, h, chk.systemID); err != nil {
		return h, nil, fmt.Errorf("fetch %s from %s: %w", name, key, err)
	}
	if wal.IsHistoryFile(name) {
		if err := a.checkHistory(ctx, key, name, md, chk.systemID); err != nil {
			return h, nil, fmt.Errorf("fetch %s: %w", name, chk.hist.IgnoreOtherHistory(ctx, err, chk.timeline, chk.from))
		}
	}
	return h, truncated, nil
}

// copyChecked copies r, the decoded bytes of a WAL file called name whose
// object (key) has metadata md, to w, and checks what it copied: the bytes
// against the hash metadata, then, for a segment or .partial file, the page
// header against the name and size (wal.CheckSegment), which it returns,
// and a complete segment's end (segmentEnd.check: not an earlier copy).
// It stops with an error wrapping ErrWALTooLarge at the first byte past
// what a file of name's kind holds (walSizeCap), before writing it. A
// hash algorithm hoard does not know is a *DecodeError: a hash that cannot
// be checked is not skipped, the object is refused as one whose hash does
// not match would be. When the first page is on an older timeline than the
// name's, it also returns the headers of the pages after it (pageMarks),
// for checkTimelineStart.
func copyChecked(w io.Writer, r io.Reader, md storage.Metadata, key, name string) (wal.PageHeader, []pageMark, error) {
	var head headBuffer
	pages := &pageMarks{}
	if segment, partial, _ := walKind(name); segment || partial {
		pages.tli = wal.SegmentTimeline(name)
	}
	// head first: the cap reads the first page header from it.
	dst := io.MultiWriter(&head, newWALSizeCap(name, &head), w, pages)
	var end *segmentEnd
	if wal.IsSegmentName(name) {
		end = &segmentEnd{}
		dst = io.MultiWriter(dst, end)
	}
	alg, want := MetadataHash(md)
	var sum hash.Hash
	if want != "" {
		var err error
		if sum, err = NewHash(alg); err != nil {
			return wal.PageHeader{}, nil, &DecodeError{Key: key, Err: fmt.Errorf("metadata %s: %w", MetaHashAlgorithm, err)}
		}
		dst = io.MultiWriter(dst, sum)
	}
	n, err := io.CopyBuffer(dst, r, make([]byte, copyBufferSize))
	if err != nil {
		return wal.PageHeader{}, nil, err
	}
	if sum != nil {
		if got := hex.EncodeToString(sum.Sum(nil)); got != want {
			return wal.PageHeader{}, nil, fmt.Errorf("decoded bytes hash to %s, metadata says %s: damaged object", got, want)
		}
	}
	if segment, partial, _ := walKind(name); segment || partial {
		h, err := wal.CheckSegment(name, head.b, n)
		if err == nil && end != nil {
			err = end.check(h)
		}
		return h, pages.marks, err
	}
	return wal.PageHeader{}, nil, nil
}

// pageMark is what a page header says: its timeline and address.
type pageMark struct {
	tli  uint32
	addr pglogrepl.LSN
}

// pageMarks is a writer that keeps the timeline and address of every
// page after the first of a segment whose first page (a long header) is
// on a timeline below tli, the name's; of other files it keeps nothing.
// Pages whose magic is not the first page's (zeros) are skipped.
type pageMarks struct {
	tli   uint32
	first []byte // the long header, while incomplete
	block int64  // page size; 0 until known, -1 when nothing is kept
	magic uint16
	off   int64 // bytes written
	cur   []byte
	marks []pageMark
}

const shortPageHeader = 16 // xlp_magic, xlp_info, xlp_tli, xlp_pageaddr

func (p *pageMarks) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 && p.block >= 0 {
		if p.block == 0 {
			need := wal.PageHeaderSize - len(p.first)
			take := min(need, len(b))
			p.first = append(p.first, b[:take]...)
			b, p.off = b[take:], p.off+int64(take)
			if len(p.first) < wal.PageHeaderSize {
				break
			}
			h, err := wal.DecodePageHeader(p.first)
			if err != nil || p.tli == 0 || h.Timeline >= p.tli || h.BlockSize == 0 {
				p.block = -1
				break
			}
			p.block, p.magic = int64(h.BlockSize), h.Magic
			continue
		}
		in := p.off % p.block
		if in >= shortPageHeader {
			skip := min(p.block-in, int64(len(b)))
			b, p.off = b[skip:], p.off+skip
			continue
		}
		take := min(shortPageHeader-in, int64(len(b)))
		p.cur = append(p.cur, b[:take]...)
		b, p.off = b[take:], p.off+take
		if len(p.cur) == shortPageHeader {
			if le := binary.LittleEndian; le.Uint16(p.cur) == p.magic {
				p.marks = append(p.marks, pageMark{tli: le.Uint32(p.cur[4:]), addr: pglogrepl.LSN(le.Uint64(p.cur[8:]))})
			}
			p.cur = p.cur[:0]
		}
	}
	return n, nil
}

// ErrWrongTimeline is wrapped by FetchWAL's error for a segment whose
// first page is on an older timeline than its name's where the name's
// timeline history says the segment starts on its own timeline (or on
// another one): the segment of an older timeline stored under this name.
var ErrWrongTimeline = errors.New("segment of another timeline")

// checkTimelineStart checks the first page of the segment or .partial
// name, h, when it is on an older timeline than the name's. That is right
// only for the segment holding the switch point (PostgreSQL starts the new
// timeline's first segment as a copy of the old one's up to there), and
// then on the timeline that the name's timeline history (in a or a site it
// moved from) puts at the segment's start. Any other such segment is an
// older timeline's, which whoever can write the storage can put under the
// name without a key (encrypted objects move whole): PostgreSQL, reading
// its pages after the newer timeline's, takes them as the end of the WAL
// and ends recovery there without an error. In the segment where the
// timeline began, no page (pages, the headers after the first) may be on
// a timeline older than the one the history puts at its address: the old
// timeline's own copy of that segment, which an old primary that went on
// writing archives too, holds the old timeline's WAL after the switch
// point, which recovery would replay as the new timeline's. A history that
// is not stored, or cannot be read, is an error too: the segment cannot be
// checked. Files whose first page is on the name's timeline, and other
// files, cost nothing.
func (a *Archive) checkTimelineStart(ctx context.Context, name string, h wal.PageHeader, pages []pageMark, system uint64) error {
	segment, partial, _ := walKind(name)
	if !segment && !partial {
		return nil
	}
	tli := wal.SegmentTimeline(name)
	if h.Timeline == 0 || h.Timeline >= tli {
		return nil
	}
	histName := wal.HistoryFileName(tli)
	path, f, err := a.readHistory(ctx, tli, system)
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("its first page is on timeline %d, below its name's %d, and %s, which says whether it may be, "+
			"is not in the archive", h.Timeline, tli, histName)
	}
	if err != nil {
		return fmt.Errorf("its first page is on timeline %d, below its name's %d, and %s cannot be read to check that: %w", h.Timeline, tli, f.Key, err)
	}
	if want := path.TimelineAt(h.PageAddr); want != h.Timeline {
		return fmt.Errorf("%w: its first page is on timeline %d, but %s puts its start (%s) on timeline %d: "+
			"a segment of an older timeline stored under this name", ErrWrongTimeline, h.Timeline, histName, h.PageAddr, want)
	}
	for _, p := range pages {
		if want := path.TimelineAt(p.addr); p.tli < want {
			return fmt.Errorf("%w: its page at %s is on timeline %d, but %s puts that address on timeline %d: "+
				"the older timeline's copy of the segment where timeline %d began, stored under this name",
				ErrWrongTimeline, p.addr, p.tli, histName, want, tli)
		}
	}
	return nil
}

// syncDir is storage.SyncRoot, the fsync of a directory after a rename
// into it; a variable so that tests can make it fail.
var syncDir = storage.SyncRoot

// headBuffer keeps the first wal.PageHeaderSize bytes written to it.
type headBuffer struct{ b []byte }

func (h *headBuffer) Write(p []byte) (int, error) {
	if need := wal.PageHeaderSize - len(h.b); need > 0 {
		h.b = append(h.b, p[:min(need, len(p))]...)
	}
	return len(p), nil
}

// readDir lists dir's top directory; nil when it cannot be read.
func readDir(dir *os.Root) []fs.DirEntry {
	d, err := dir.Open(".")
	if err != nil {
		return nil
	}
	defer d.Close()
	entries, _ := d.ReadDir(-1)
	return entries
}

// The prefetch spool. restore_command runs once per file, so a background
// worker (PrefetchWAL, started detached by wal-fetch) downloads the next
// segments into a spool directory beside the destination while PostgreSQL
// replays the current one. The spool holds:
//
//	lock      flock'ed by the running worker: at most one per spool
//	want      "<segment> <segment size>": the last segment delivered
//	identity  the archive the segments were fetched from (spoolIdentity):
//	          written by the worker, before it spools anything, after it
//	          removed the segments of another identity
//	<segment> a segment, complete and verified: only ever created by rename
//	<segment>.crc32c  the CRC-32C and size of its bytes, written before
//	          the segment's rename; take hands over only a segment that
//	          still matches them (spoolsum.go)
//	.tmp-*    a worker's download in progress
//
// wal-fetch moves <segment> into place by rename (same directory tree, same
// filesystem), so a spooled segment costs no storage round trip.
const (
	// SpoolDirName is the spool's directory name beside restore_command's
	// %p: pg_wal/hoard-prefetch for pg_wal/RECOVERYXLOG. BASE_BACKUP leaves
	// pg_wal's contents out, and PostgreSQL ignores directories in pg_wal.
	SpoolDirName = "hoard-prefetch"

	spoolLockFile  = "lock"
	spoolWantFile  = "want"
	spoolTmpPrefix = ".tmp-"
)

// SpoolDir returns the prefetch spool directory for restore_command's
// destination path dest.
func SpoolDir(dest string) string { return filepath.Join(filepath.Dir(dest), SpoolDirName) }

// spool is a prefetch spool directory. It lies in pg_wal of a restored data
// directory, where a link could have been planted: it is opened from its
// parent without following a link at its own name, and everything in it is
// reached through root, so nothing outside the spool is read, written or
// removed. Its methods used by FetchWAL are best effort: a spool that
// cannot be read or cleaned only costs speed, so its errors never fail a
// fetch.
type spool struct {
	dir    string
	parent *os.Root // the directory holding the spool (pg_wal)
	root   *os.Root // the spool
}

// openSpool opens the spool directory dir, creating it (mode 0700) when
// create is set. A link, or anything but a directory, at dir is refused.
func openSpool(dir string, create bool) (*spool, error) {
	parent, err := os.OpenRoot(filepath.Dir(dir))
	if err != nil {
		return nil, err
	}
	base := filepath.Base(dir)
	if create {
		if err := parent.Mkdir(base, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			parent.Close()
			return nil, err
		}
	}
	fi, err := parent.Lstat(base)
	if err == nil && !fi.IsDir() {
		err = fmt.Errorf("spool %s is not a directory (%v)", dir, fi.Mode().Type())
	}
	var root *os.Root
	if err == nil {
		root, err = parent.OpenRoot(base)
	}
	if err != nil {
		parent.Close()
		return nil, err
	}
	return &spool{dir: dir, parent: parent, root: root}, nil
}

func (s *spool) close() {
	s.root.Close()
	s.parent.Close()
}

func (s *spool) path(name string) string { return filepath.Join(s.dir, name) }

// take moves the spooled segment name to dest, which must be in the
// spool's parent directory, if it is there, a regular file, its bytes
// still those its download checked (spoolSum) and its page header still
// fits its name and size and names system sysid (0: any), and if the
// spool's segments were fetched for identity id (the caller's
// archive's spoolIdentity). A spool filled for another identity is
// cleared: its segments came from another site, storage, prefix or keys,
// which may hold other bytes under the same names. A spooled segment
// that fails these checks is removed, and refused says why (the caller
// logs it and downloads the segment). An error is a failed fsync of
// dest's directory after the segment was moved there.
func (s *spool) take(name, dest string, sysid uint64, id string) (h wal.PageHeader, ok bool, refused, err error) {
	// PostgreSQL passes %p relative to the data directory
	// (pg_wal/RECOVERYXLOG), wal-fetch the spool absolute: compared as
	// written, they never matched, and nothing was ever taken.
	destDir, err := filepath.Abs(filepath.Dir(dest))
	if err != nil {
		return wal.PageHeader{}, false, nil, nil
	}
	spoolParent, err := filepath.Abs(filepath.Dir(s.dir))
	if err != nil || destDir != spoolParent {
		return wal.PageHeader{}, false, nil, nil
	}
	if s.identity() != id {
		s.clear()
		return wal.PageHeader{}, false, nil, nil
	}
	fi, err := s.root.Lstat(name)
	if err != nil {
		return wal.PageHeader{}, false, nil, nil
	}
	h, err = s.check(name, fi)
	if err == nil {
		err = checkSystemID(name, h, sysid)
	}
	if err != nil {
		s.remove(name)
		return h, false, err, nil
	}
	// Checked, the checksum goes before the segment: a worker that
	// spools the segment again once it has left writes its copy's
	// checksum before its copy's rename, and this removal cannot come
	// between the two.
	s.root.Remove(name + spoolSumSuffix)
	if err := s.parent.Rename(filepath.Join(filepath.Base(s.dir), name), filepath.Base(dest)); err != nil {
		return h, false, nil, nil
	}
	if s.identity() != id {
		// A worker of another identity took the spool over (cleared it,
		// recorded its own, spooled) between the check above and the
		// rename: the segment moved may be its. The caller downloads
		// the segment instead, over dest.
		s.parent.Remove(filepath.Base(dest))
		return h, false, nil, nil
	}
	if err := syncDir(s.parent); err != nil {
		// The rename may not last a crash, and the disk has said it
		// failed: wal-fetch fails (PostgreSQL stops recovery) rather
		// than answer that the segment is in place.
		return h, false, nil, err
	}
	return h, true, nil, nil
}

// segments returns the names of the segments in the spool.
func (s *spool) segments() []string {
	var out []string
	for _, e := range readDir(s.root) {
		if wal.IsSegmentName(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

// dropBefore removes spooled segments that sort before name: PostgreSQL has
// moved past them (names sort by timeline, then position).
func (s *spool) dropBefore(name string) {
	for _, n := range s.spooled() {
		if n < name {
			s.remove(n)
		}
	}
}

// clearSpool removes every segment spooled in dir, and reports whether
// it removed any.
func clearSpool(dir string) bool {
	sp, err := openSpool(dir, false)
	if err != nil {
		return false
	}
	defer sp.close()
	n := len(sp.segments())
	sp.clear()
	return n > 0
}

// clear removes every spooled segment.
func (s *spool) clear() {
	for _, n := range s.spooled() {
		s.remove(n)
	}
}

// want records name as the last segment delivered, for the worker. It is
// a hint: when it cannot be written the worker prefetches nothing new, and
// every fetch still reads from storage.
func (s *spool) want(name string, segSize uint64) {
	tmp := spoolWantFile + ".new"
	s.root.Remove(tmp)
	f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return
	}
	_, werr := fmt.Fprintf(f, "%s %d\n", name, segSize)
	if err := f.Close(); err != nil || werr != nil {
		return
	}
	_ = s.root.Rename(tmp, spoolWantFile)
}

// readWant returns the last segment delivered and the segment size.
func (s *spool) readWant() (wal.Segment, uint64, error) {
	f, err := s.root.Open(spoolWantFile)
	if err != nil {
		return wal.Segment{}, 0, err
	}
	b, err := io.ReadAll(io.LimitReader(f, 256))
	f.Close()
	if err != nil {
		return wal.Segment{}, 0, fmt.Errorf("read %s: %w", s.path(spoolWantFile), err)
	}
	var name string
	var segSize uint64
	if _, err := fmt.Sscanf(string(b), "%s %d", &name, &segSize); err != nil {
		return wal.Segment{}, 0, fmt.Errorf("read %s: %w", s.path(spoolWantFile), err)
	}
	if !wal.ValidSegmentSize(segSize) {
		return wal.Segment{}, 0, fmt.Errorf("read %s: bad segment size %d", s.path(spoolWantFile), segSize)
	}
	seg, err := wal.ParseSegmentName(name, segSize)
	return seg, segSize, err
}

// lock takes the spool's worker lock without waiting. It returns
// ErrPrefetchBusy when another worker holds it.
func (s *spool) lock() (*os.File, error) {
	f, err := s.root.OpenFile(spoolLockFile, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := flockExclusive(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// CreateSpoolFile creates the file name in the spool directory dir (the
// prefetch worker's log), replacing an earlier one, as the spool's other
// files are: never through a link, never outside the spool.
func CreateSpoolFile(dir, name string) (*os.File, error) {
	s, err := openSpool(dir, true)
	if err != nil {
		return nil, err
	}
	defer s.close()
	if err := s.root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return s.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
}

// ErrPrefetchBusy is returned (wrapped) by PrefetchWAL when another worker
// is already prefetching into the spool.
var ErrPrefetchBusy = errors.New("another prefetch worker holds the spool")

// PrefetchRunning reports whether a prefetch worker holds the spool dir.
func PrefetchRunning(dir string) bool {
	s, err := openSpool(dir, true)
	if err != nil {
		return false
	}
	defer s.close()
	f, err := s.lock()
	if err != nil {
		return errors.Is(err, ErrPrefetchBusy)
	}
	f.Close()
	return false
}

// PrefetchOptions configure PrefetchWAL.
type PrefetchOptions struct {
	// Count is how many segments after the last one delivered to keep
	// ready, downloading as many at once (restore_prefetch; at least 1).
	Count int
	// DataDir is the data directory whose pg_wal holds the spool: the
	// worker stops (ErrPrefetchStopped) once the server that runs there
	// as it starts has stopped (watchSpool). "": the spool only is
	// watched.
	DataDir string
	// Watch is how often the worker looks at its spool and server; 0:
	// every second.
	Watch time.Duration
	// AcceptTruncated are wal-fetch's FetchOptions.AcceptTruncated: the
	// worker stops before the first of them instead of failing on its
	// refusal. wal-fetch downloads it itself, with the warning naming
	// where recovery ends (FetchOptions.Truncated), which a spooled copy
	// would skip; recovery ends in it, so nothing after it is needed.
	AcceptTruncated []string
}

// PrefetchResult tells what a PrefetchWAL run did.
type PrefetchResult struct {
	Fetched []string // segments downloaded into the spool
	// Missing is the first segment not found in the archive, where the
	// worker stopped; "" when it stopped because it was Count ahead.
	Missing string
	// NoRoom is set when the worker left a segment it would have spooled
	// undownloaded because its file system had no room for it (see
	// spool.room): PostgreSQL's call downloads it.
	NoRoom bool
}

// PrefetchWAL is the prefetch worker: it keeps the Count segments that
// follow the last delivered one (recorded in the spool by FetchWAL) in the
// spool dir, on the same timeline, downloading them in parallel, as many
// as its file system has room for (spool.room; NoRoom says it had less).
// Each is decoded and verified (hash, page header) into a temporary file,
// fsynced, its checksum recorded (spoolSum), and only then renamed to its
// name; wal-fetch takes it only while its bytes still match that
// checksum. The worker stops at the first segment missing from the
// archive, when a round finds that PostgreSQL has not asked for a newer segment
// since the round began, and, within o.Watch, when its server stops or its
// spool is removed (an error wrapping ErrPrefetchStopped; what it was
// downloading is removed). At most one worker runs per spool: PrefetchWAL
// returns an error wrapping ErrPrefetchBusy when another holds the lock.
func (a *Archive) PrefetchWAL(ctx context.Context, dir string, o PrefetchOptions) (PrefetchResult, error) {
	var res PrefetchResult
	s, err := openSpool(dir, true)
	if err != nil {
		return res, fmt.Errorf("prefetch into %s: %w", dir, err)
	}
	defer s.close()
	lock, err := s.lock()
	if err != nil {
		return res, fmt.Errorf("prefetch into %s: %w", dir, err)
	}
	defer lock.Close()
	// Holding the lock, no other worker is writing: every temporary file is
	// left over by one that was killed.
	storage.RemoveStaleTemps(s.root, spoolTmpPrefix, time.Now())
	// Segments a worker of another configuration spooled go before this
	// one records its own identity: a segment is only ever in the spool
	// under the identity of the archive it came from.
	if id := a.spoolIdentity(); s.identity() != id {
		s.clear()
		if err := s.setIdentity(id); err != nil {
			return res, fmt.Errorf("prefetch into %s: record its archive: %w", dir, err)
		}
	}
	ctx, stopWatch, err := watchSpool(ctx, s, o.DataDir, o.Watch)
	if err != nil {
		return res, err
	}
	defer stopWatch()

	count := max(o.Count, 1)
	var last wal.Segment
	for round := 0; ; round++ {
		if cause := context.Cause(ctx); errors.Is(cause, ErrPrefetchStopped) {
			return res, cause
		}
		from, segSize, err := s.readWant()
		if errors.Is(err, os.ErrNotExist) {
			return res, nil
		}
		if err != nil {
			return res, fmt.Errorf("prefetch into %s: %w", dir, err)
		}
		if round > 0 && from == last {
			return res, nil
		}
		last = from
		var names []string
		for i, seg := 0, from.Next(); i < count; i, seg = i+1, seg.Next() {
			name := seg.Name(segSize)
			if _, ok := acceptedTruncated(o.AcceptTruncated, name); ok {
				break
			}
			names = append(names, name)
		}
		room, err := s.room(segSize)
		if err != nil {
			return res, fmt.Errorf("prefetch into %s: %w", dir, err)
		}
		fetched, missing, full, err := a.prefetchRound(ctx, s, names, count, room)
		res.Fetched = append(res.Fetched, fetched...)
		res.NoRoom = res.NoRoom || full
		if cause := context.Cause(ctx); errors.Is(cause, ErrPrefetchStopped) {
			return res, cause
		}
		if err != nil {
			return res, fmt.Errorf("prefetch into %s: %w", dir, err)
		}
		if missing != "" {
			res.Missing = missing
			return res, nil
		}
	}
}

// prefetchRound downloads the names not yet spooled, parallel downloads at
// once, in order, scheduling none after the first missing one, and at most
// room of them: full reports that a name was left for want of room.
func (a *Archive) prefetchRound(ctx context.Context, s *spool, names []string, parallel, room int) (fetched []string, missing string, full bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		i       int
		missing bool
		err     error
	}
	results := make(chan result)
	var stop bool
	missingAt := len(names)
	running := 0
	next := 0
	for running > 0 || (!stop && next < len(names)) {
		if !stop && next < len(names) && running < parallel {
			i := next
			next++
			if _, err := s.root.Lstat(names[i]); err == nil {
				continue
			}
			if room <= 0 {
				full, stop = true, true
				continue
			}
			room--
			running++
			go func() {
				err := a.prefetchOne(ctx, s, names[i])
				results <- result{i: i, missing: errors.Is(err, storage.ErrNotFound), err: err}
			}()
			continue
		}
		r := <-results
		running--
		switch {
		case r.missing:
			stop = true
			missingAt = min(missingAt, r.i)
		case r.err != nil:
			if err == nil {
				err = r.err
			}
			stop = true
			cancel()
		default:
			fetched = append(fetched, names[r.i])
		}
	}
	if missingAt < len(names) {
		missing = names[missingAt]
	}
	return fetched, missing, full, err
}

// room returns how many more segments of segSize the spool may take: so
// few that its file system keeps at least as much free as the spool then
// holds, half of what would be free with the spool empty. The spool lies
// in pg_wal, whose file system often holds the data directory too: filled
// to its last byte, what recovery itself writes there fails (the startup
// process extending a relation stops recovery: "could not extend file"),
// for segments that are only a head start, which PostgreSQL's own call
// downloads as well. A download would fill it before failing with ENOSPC,
// then remove its file: the worker checks before, not after. The server
// writes there meanwhile: each round measures it anew.
func (s *spool) room(segSize uint64) (int, error) {
	d, err := s.root.Open(".")
	if err != nil {
		return 0, err
	}
	defer d.Close()
	var st syscall.Statfs_t
	if err := syscall.Fstatfs(int(d.Fd()), &st); err != nil {
		return 0, fmt.Errorf("free space of %s: %w", s.dir, err)
	}
	free := st.Bavail * uint64(st.Bsize)
	var held uint64
	n := 0
	for _, e := range readDir(s.root) {
		if !wal.IsSegmentName(e.Name()) {
			continue
		}
		n++
		if fi, err := e.Info(); err == nil {
			held += uint64(fi.Size())
		}
	}
	return max(int((free+held)/2/segSize)-n, 0), nil
}

// prefetchOne downloads one segment into the spool, searching the site and
// then the moved_from sites.
func (a *Archive) prefetchOne(ctx context.Context, s *spool, name string) error {
	for _, arc := range a.sites() {
		// The system identifier is checked when the segment leaves the
		// spool (spool.take).
		_, err := arc.fetchKey(ctx, fetchChecks{hist: a}, arc.Layout.WALKey(name), name, s.root, name, spoolTmpPrefix)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		return err
	}
	return fmt.Errorf("prefetch %s: %w", name, storage.ErrNotFound)
}

// flockExclusive takes an exclusive flock on f without waiting.
func flockExclusive(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.EWOULDBLOCK):
			return ErrPrefetchBusy
		default:
			return fmt.Errorf("lock %s: %w", f.Name(), err)
		}
	}
}
