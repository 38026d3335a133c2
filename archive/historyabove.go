package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// After a pg_upgrade into the same site, the old cluster's history files
// of timelines above the upgraded cluster's are bound to the old system,
// and refusing them (historyupgrade.go) makes the upgraded cluster's
// backups there unrecoverable: PostgreSQL asks for the history file of
// the next timeline at its start and when it promotes, and stops on
// wal-fetch's refusal.
//
// The refusal guards against another system's T.history put in place of
// this system's own (copied from a site sharing the key pair): treated as
// absent, recovery would end without this system's timeline T. But
// putting it there means this system's own T.history is gone, as if
// deleted, and deleting it gives that same end. The refusal matters only
// where this system has WAL that a T.history of its own would lead
// recovery to, on timeline T or a later one: that WAL a planted file
// would make recovery pass over although the archive holds it. So another
// system's T.history above the reader's timeline is also treated as
// absent where the archive (a and the sites it moved from) holds no
// segment or .partial on timeline T or later whose first page names the
// reader's system. Making this system's WAL there look like none takes
// deleting it or writing another cluster's over it, which loses it
// anyway. A first page that cannot be read (no private key, a damaged
// object) could be this system's: the file stays refused.
//
// Only this system's WAL at or after where the reader's recovery starts
// can be WAL that a T.history would lead it to: PostgreSQL switches to
// timeline T only where T forked off at or after the position it has
// replayed to (an older fork is "not a child of this server's history"),
// and this system's WAL on T or later begins at that fork. So segments
// and .partials below the segment of a lower bound R of the reader's
// start (ReplayStart) are passed over unread: the refusal never depended
// on them, and a writer without keys gains nothing by putting WAL there
// or taking it away. R is taken where PostgreSQL starts (pg_control's
// REDO and backup_label, the backup's start), never above it: below, it
// only costs reads; R not known means no bound.

// ReplayStart is a lower bound of where a reader's recovery starts
// replaying: LSN, with the reader's WAL segment size. The zero value (or
// either zero) is no bound.
type ReplayStart struct {
	LSN         pglogrepl.LSN
	SegmentSize uint64
}

// ReplayStart returns where recovery of b starts: its start LSN, with
// its recorded segment size (not recorded: no bound, as the 16 MiB
// SegmentSize assumes could be smaller than the real one, and a name
// read with too small a size can fall below a start it is not below).
func (b *BackupInfo) ReplayStart() ReplayStart {
	return ReplayStart{LSN: b.StartLSN, SegmentSize: b.WALSegmentSize}
}

// LowestReplayStart returns the lowest of rs, a lower bound of where each
// of those recoveries starts; no bound (the zero ReplayStart) where rs is
// empty, one of them is no bound, or their segment sizes differ.
func LowestReplayStart(rs []ReplayStart) ReplayStart {
	var low ReplayStart
	for i, r := range rs {
		if r.LSN == 0 || !wal.ValidSegmentSize(r.SegmentSize) || i > 0 && r.SegmentSize != low.SegmentSize {
			return ReplayStart{}
		}
		if i == 0 || r.LSN < low.LSN {
			low = r
		}
	}
	return low
}

// below tells whether the segment or .partial name lies wholly below the
// segment holding r's LSN (false when r is no bound, or name does not
// parse with its segment size).
func (r ReplayStart) below(name string) bool {
	if r.LSN == 0 || !wal.ValidSegmentSize(r.SegmentSize) {
		return false
	}
	s, err := wal.ParseSegmentName(name[:24], r.SegmentSize)
	return err == nil && s.No < uint64(r.LSN)/r.SegmentSize
}

// IgnoreOtherHistory is IgnoreUpgradedHistory, the rule of every reader
// that knows its timeline at (0: not known, nothing is ignored), and the
// rule above it: an *OtherSystemHistoryError of a history file above at
// is returned as an *IgnoredHistoryError (NoOwnWAL) when a holds no WAL
// of the reader's system on the file's timeline or a later one, at or
// after from (ownWALFrom); otherwise as is, with what was found or could
// not be read.
func (a *Archive) IgnoreOtherHistory(ctx context.Context, err error, at uint32, from ReplayStart) error {
	return a.IgnoreOtherHistoryWith(ctx, a.ListWAL, err, at, from)
}

// WALFiles is Archive.ListWAL, or a listing of it a caller keeps
// (IgnoreOtherHistoryWith).
type WALFiles func(ctx context.Context) ([]WALFile, error)

// IgnoreOtherHistoryWith is IgnoreOtherHistory with the WAL searched for
// the reader's own listed by files, for a caller that judges many
// backups (each with its own from) and keeps one listing of xlog/ for
// all of them, rather than list it again for each backup.
func (a *Archive) IgnoreOtherHistoryWith(ctx context.Context, files WALFiles, err error, at uint32, from ReplayStart) error {
	err = IgnoreUpgradedHistory(err, at)
	o, ok := errors.AsType[*OtherSystemHistoryError](err)
	if !ok || at == 0 {
		return err
	}
	key, oerr := ownWALFrom(ctx, files, o.Want, o.Timeline, from)
	switch {
	case oerr != nil:
		return fmt.Errorf("%w (whether the archive holds WAL of database system %d on timeline %d or later, which would make "+
			"this history file's place its own, could not be told: %v)", err, o.Want, o.Timeline, oerr)
	case key != "":
		return fmt.Errorf("%w (the archive holds WAL of database system %d on timeline %d or later, %s: its own %s "+
			"was there)", err, o.Want, o.Timeline, key, wal.HistoryFileName(o.Timeline))
	}
	return &IgnoredHistoryError{Other: o, At: at, NoOwnWAL: true}
}

// ownWALFrom returns the key of a segment or .partial stored in a or a
// site it moved from, on timeline tli or a later one, whose first page
// names database system system; "" when there is none. Only names are
// listed; a first page is read only for a name on such a timeline not
// below from's segment, the newest first.
func ownWALFrom(ctx context.Context, list WALFiles, system uint64, tli uint32, from ReplayStart) (string, error) {
	files, err := list(ctx)
	if err != nil {
		return "", err
	}
	// A copy: the caller's listing may be kept for other backups.
	files = slices.DeleteFunc(slices.Clone(files), func(f WALFile) bool {
		segment, partial, _ := walKind(f.Name)
		return !(segment || partial) || nameTimeline(f.Name) < tli || from.below(f.Name)
	})
	slices.SortStableFunc(files, func(x, y WALFile) int { return strings.Compare(y.Name, x.Name) })
	for _, f := range files {
		h, err := f.firstPage(ctx, false)
		if errors.Is(err, storage.ErrNotFound) {
			continue // deleted since the listing
		}
		if err != nil {
			return "", fmt.Errorf("first page of %s: %w", f.Key, err)
		}
		if h.SystemID == system {
			return f.Key, nil
		}
	}
	return "", nil
}

// FirstBlockRange is how many stored bytes a read of the start of an
// object that is not authenticated asks the storage for (firstPage
// without whole, verify's quick check of a single-tar backup): the first
// block of every stream hoard and PGHoard write fits, with the pghoa1
// envelope's header (a snappy chunk and hoard's lz4 blocks hold at most
// 64 KiB, a zstd block 128 KiB).
const FirstBlockRange = 256 << 10

// firstPage decodes f, a segment or .partial, up to its long page header;
// with whole, to its end before the header counts, so that an object
// that does not decode or authenticate (the envelope's HMAC is checked
// at EOF) gives an error.
//
// Without whole, the header is decoded from the first FirstBlockRange
// stored bytes (Stat for the metadata, then one ranged GET), not from
// a GET of the whole object, which a real storage sends on after the
// reader closes it until the connection is torn down: the veto
// (OwnWALAfter) reads the first page of every WAL file stored after a
// pg_upgrade's .partial, thousands of objects of up to 16 MiB each.
// Where that fails otherwise than with ErrNotFound (a header that
// needs more of the stream, from an object written with larger blocks;
// an object replaced between Stat and the GET, as the daemon replaces a
// growing .partial), the header is read from the whole object, whose
// answer counts.
func (f WALFile) firstPage(ctx context.Context, whole bool) (wal.PageHeader, error) {
	if !whole {
		h, err := f.FirstBlockRanged(ctx)
		if err == nil || errors.Is(err, storage.ErrNotFound) || ctx.Err() != nil {
			return h, err
		}
	}
	rc, _, err := f.Open(ctx)
	if err != nil {
		return wal.PageHeader{}, err
	}
	defer rc.Close()
	b := make([]byte, wal.PageHeaderSize)
	if _, err := io.ReadFull(rc, b); err != nil {
		return wal.PageHeader{}, err
	}
	h, err := wal.DecodePageHeader(b)
	if !whole {
		return h, err
	}
	// No further than the segment size the header declares (the
	// largest one when it does not decode): past it, the object is
	// no WAL file, whatever it would decode to.
	rest := int64(wal.MaxSegmentSize)
	if err == nil {
		rest = int64(h.SegmentSize)
	}
	rest -= wal.PageHeaderSize
	n, cerr := io.Copy(io.Discard, io.LimitReader(rc, rest+1))
	switch {
	case cerr != nil:
		return wal.PageHeader{}, cerr
	case n > rest:
		return wal.PageHeader{}, fmt.Errorf("%s: %w: more than %d bytes", f.Key, ErrWALTooLarge, rest+wal.PageHeaderSize)
	}
	return h, err
}

// FirstBlockRanged is firstPage without whole, from the first
// FirstBlockRange stored bytes of f.
func (f WALFile) FirstBlockRanged(ctx context.Context) (wal.PageHeader, error) {
	a := f.Archive
	obj, err := a.Store.Stat(ctx, f.Key)
	if err != nil {
		return wal.PageHeader{}, fmt.Errorf("stat %s: %w", f.Key, err)
	}
	rc, err := a.Store.OpenRange(ctx, f.Key, 0, min(obj.Size, FirstBlockRange))
	if err != nil {
		return wal.PageHeader{}, fmt.Errorf("open %s: %w", f.Key, err)
	}
	defer rc.Close()
	dec, err := a.Codec.DecodeObject(f.Key, rc, obj)
	if err != nil {
		return wal.PageHeader{}, err
	}
	defer dec.Close()
	b := make([]byte, wal.PageHeaderSize)
	if _, err := io.ReadFull(dec, b); err != nil {
		return wal.PageHeader{}, err
	}
	return wal.DecodePageHeader(b)
}

// nameTimeline returns the timeline of a segment or .partial name (its
// first 8 hex digits).
func nameTimeline(name string) uint32 {
	n, _ := strconv.ParseUint(name[:8], 16, 32)
	return uint32(n)
}

// noOwnWALWarning is IgnoredHistoryError's message for a file above the
// reader's timeline (NoOwnWAL).
func (e *IgnoredHistoryError) noOwnWALWarning() string {
	o := e.Other
	return fmt.Sprintf("%s %s, not of %d, the cluster it is read for, on "+
		"timeline %d, above %d, the one read for: treated as absent (PostgreSQL's search for the latest timeline stops "+
		"below it, and a promotion may choose timeline %d), as the archive holds no WAL of database system %d on timeline %d or later, "+
		"which a history file of its own would lead recovery to. After pg_upgrade into the same site, the old cluster's "+
		"history files stay there: set a new backup_sites.<site>.prefix for the upgraded cluster and take a backup there "+
		"(its own history file of timeline %d cannot be stored under the old one's name); otherwise another cluster's "+
		"history file was stored under this name: investigate",
		o.Key, o.ofSystem(), o.Want, o.Timeline, e.At, o.Timeline, o.Want, o.Timeline, o.Timeline)
}

// ForeignSegment reports whether the complete segment name stored in a
// (not a site it moved from) is not database system system's: its first
// page, read without authenticating it, names another system, or the
// segment is no longer stored (deleted since a listing). A download cut
// in the middle is tried again from the start, as wal-fetch's are
// (retryCut; the store's own retries cover opening it). A first page
// that still cannot be read (the storage refuses it, the object is
// truncated or not WAL) is no answer: an error naming the object, so
// that the caller says it could not tell rather than guess. A site
// whose configuration holds no private key for the object's key (the
// daemon's, holding only the public key) cannot read any first page:
// false, nil, the segment may be the system's. ctx's end is its error.
// The daemon's hole check asks it so that the old cluster's WAL, after
// a pg_upgrade into the same site, is not taken for the upgraded
// cluster's.
func (a *Archive) ForeignSegment(ctx context.Context, name string, system uint64) (bool, error) {
	f := WALFile{Name: name, Key: a.Layout.WALKey(name), Archive: a}
	h, err := retryCut(ctx, func() (wal.PageHeader, error) { return f.firstPage(ctx, false) })
	switch {
	case ctx.Err() != nil:
		return false, ctx.Err()
	case errors.Is(err, storage.ErrNotFound):
		return true, nil
	case errors.Is(err, ErrNoPrivateKey):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("first page of %s: %w", f.Key, err)
	}
	return h.SystemID != system, nil
}
