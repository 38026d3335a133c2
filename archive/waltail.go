package archive

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/wal"
)

// The tail of the archive. The daemon stores the segment it is receiving
// as <segment>.partial every wal_partial_upload_interval, and the last
// segment of an ended timeline as a .partial too. When the primary is
// lost, that copy is the newest WAL there is. PostgreSQL treats a
// .partial at the end of pg_wal the same way: it is the end of its
// timeline, read up to its last valid record. restore_command is asked
// for the segment's own name, so wal-fetch answers with the .partial's
// bytes (zero-padded to the segment size, since recovery refuses a
// segment file of another size): recovery replays up to the last valid
// record in it, finds zeros, and ends there.
//
// A .partial stands in for its segment only at the very end of the
// archive (StandIn): a copy stored beside the complete segment, before a
// newer segment of its timeline, or on a timeline that a later one
// followed is never used. That keeps a .partial from ever being preferred
// over real WAL, whoever stored it, and keeps recovery off an old
// timeline's copy that a promotion has made obsolete: after a switch the
// new timeline's segment holds the same WAL up to the switch point, and
// PostgreSQL asks for it first.

// WALListing is what the xlog/ and timeline/ folders of an archive and of
// the sites it moved from hold (Archive.ListWAL, Archive.ListHistories).
// Where several sites hold a file, the copy wal-fetch reads is kept: the
// first in the order it searches them.
type WALListing struct {
	Segments  map[string]WALFile // complete segments by name
	Partials  map[string]WALFile // .partial objects by segment name (no suffix)
	Histories map[uint32]WALFile // timeline history files by timeline
	// BackupHistories are the backup history files
	// (<segment>.<offset>.backup), in listing order.
	BackupHistories []WALFile
	// Damaged holds, by name, the files under xlog/ and the timeline
	// history files under timeline/ stored in a state no read returns
	// that wal-fetch would read first for their name (DamagedWAL): not in
	// Segments, Partials, Histories or BackupHistories, whose readers
	// pass them over; verify names them. nil when none.
	Damaged map[string]DamagedWAL
	// StorageFailed, when not nil, says which errors of the reads
	// SystemEndAt and OwnWALAfter make are the storage failing to answer
	// (verify marks its store's errors): those are returned rather than
	// taken for no end or for the system's own WAL, so that a storage
	// outage stops the caller instead of reading as a gap. nil: every
	// read error counts as before (wal-fetch, restore).
	StorageFailed func(error) bool

	// dataSizes holds the answers of PartialDataSize, so that each
	// .partial's content is downloaded once per listing.
	dataSizes map[walObject]sizeAnswer
}

// walObject names a stored object of a listing: the archive (site)
// holding it and its key.
type walObject struct {
	a   *Archive
	key string
}

// sizeAnswer is a remembered answer of Archive.PartialDataSize.
type sizeAnswer struct {
	n   int64
	err error
}

// ListStoredWAL lists the segments, .partial objects, timeline
// histories and backup history files of a and the sites it moved from.
func (a *Archive) ListStoredWAL(ctx context.Context) (*WALListing, error) {
	files, damaged, err := a.listWAL(ctx)
	if err != nil {
		return nil, err
	}
	h, damagedHistories, err := a.listHistories(ctx)
	if err != nil {
		return nil, err
	}
	for name, d := range damagedHistories {
		if damaged == nil {
			damaged = map[string]DamagedWAL{}
		}
		damaged[name] = d
	}
	l := &WALListing{Segments: SegmentIndex(files), Partials: map[string]WALFile{}, Histories: h, Damaged: damaged}
	for _, f := range files {
		if wal.IsPartialName(f.Name) {
			if _, ok := l.Partials[f.Name[:24]]; !ok {
				l.Partials[f.Name[:24]] = f
			}
		}
		if wal.IsBackupHistoryName(f.Name) {
			l.BackupHistories = append(l.BackupHistories, f)
		}
	}
	return l, nil
}

// StandIn returns the .partial object that may stand in for the segment
// called name, which recovery asks for and the archive does not hold. It
// is the segment's .partial when all of these hold:
//
//   - the complete segment is not stored;
//   - no segment and no .partial after it is stored on its timeline: it
//     is the end of its timeline's WAL;
//   - no later timeline exists (no history file, segment or .partial of
//     a timeline above it): a promotion did not make it obsolete.
//
// Segment names order by position within a timeline (the log and segment
// fields are fixed-width hex), so no segment size is needed.
func (l *WALListing) StandIn(name string) (WALFile, bool) {
	p, ok := l.Partials[name]
	if !ok || !wal.IsSegmentName(name) {
		return WALFile{}, false
	}
	if _, ok := l.Segments[name]; ok {
		return WALFile{}, false
	}
	tli := wal.SegmentTimeline(name)
	for t := range l.Histories {
		if t > tli {
			return WALFile{}, false
		}
	}
	newer := func(n string) bool {
		t := wal.SegmentTimeline(n)
		return t > tli || t == tli && n[8:] > name[8:]
	}
	for n := range l.Segments {
		if newer(n) {
			return WALFile{}, false
		}
	}
	for n := range l.Partials {
		if newer(n) {
			return WALFile{}, false
		}
	}
	return p, true
}

// PartialDataSize returns how many bytes of WAL the stored .partial f
// holds: the position after the last non-zero byte of its decoded
// content, which must be the WAL of f's segment (readPartial), or after
// its last valid record (wal.RecordEnd) when that is further: a record
// may end in zero bytes, and a standby's backup ends at the end of the
// last record its primary wrote. Its MetaPartialDataSize is not used:
// anyone who can write to the bucket can set it, and a restore told a
// .partial holds more than it does would promise a recovery point it
// cannot reach. It costs a download of the object.
func (a *Archive) PartialDataSize(ctx context.Context, f WALFile) (int64, error) {
	var rec wal.RecordEnd
	n, err := f.Archive.readPartial(ctx, f.Key, f.Name, &rec)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", f.Key, err)
	}
	return max(n, rec.End()), nil
}

// PartialDataSize is Archive.PartialDataSize of the listed .partial f,
// read once per listing: a later call for the same object returns the
// first answer (an error too, unless it came from ctx), so the callers of
// one listing (a verify's tail and its WAL end) agree and the object is
// downloaded once. It is not safe for concurrent use.
func (l *WALListing) PartialDataSize(ctx context.Context, f WALFile) (int64, error) {
	o := walObject{a: f.Archive, key: f.Key}
	if d, ok := l.dataSizes[o]; ok {
		return d.n, d.err
	}
	n, err := f.Archive.PartialDataSize(ctx, f)
	if ctx.Err() == nil {
		if l.dataSizes == nil {
			l.dataSizes = map[walObject]sizeAnswer{}
		}
		l.dataSizes[o] = sizeAnswer{n: n, err: err}
	}
	return n, err
}

// WALEnd is the newest WAL byte an archive holds.
type WALEnd struct {
	// File is the object holding it: the newest complete segment or the
	// .partial standing in after it; "" when the archive holds no WAL.
	File    string
	Partial bool // File is a .partial
	// Timeline and LSN: the WAL stored ends at LSN on Timeline (the end
	// of the segment, or of the .partial's data).
	Timeline uint32
	LSN      pglogrepl.LSN
	// Stored is when that object was written, as the store reports it.
	Stored time.Time
}

// End returns the newest WAL byte stored: on the newest timeline holding
// WAL, the end of its newest complete segment or, when the .partial after
// it stands in (StandIn), of that .partial's data; a .partial that is not
// WAL recovery could read (NotWAL) does not count. segSize is the
// cluster's WAL segment size. A .partial's data size comes from its
// content (WALListing.PartialDataSize), never from its metadata alone.
func (l *WALListing) End(ctx context.Context, segSize uint64) (WALEnd, error) {
	var newest, best string
	for n := range l.Segments {
		if newest == "" || newerName(n, newest) {
			newest = n
		}
	}
	best = newest
	partial := false
	for n := range l.Partials {
		if (best == "" || newerName(n, best)) && l.standsIn(n) {
			best, partial = n, true
		}
	}
	if best == "" {
		return WALEnd{}, nil
	}
	// Only a .partial chosen above: one of the newest complete
	// segment's own name (stored before the segment was complete) is
	// superseded by it.
	var f WALFile
	if partial {
		f = l.Partials[best]
	}
	var n int64
	if partial {
		var err error
		n, err = l.PartialDataSize(ctx, f)
		switch {
		case NotWAL(err):
			// Not WAL recovery could read (wal-fetch refuses it): the
			// WAL ends before it.
			if best = newest; best == "" {
				return WALEnd{}, nil
			}
			partial = false
		case err != nil:
			return WALEnd{}, err
		}
	}
	seg, err := wal.ParseSegmentName(best, segSize)
	if err != nil {
		return WALEnd{}, err
	}
	if !partial {
		return WALEnd{File: best, Timeline: seg.Timeline, LSN: seg.Next().StartLSN(segSize), Stored: l.Segments[best].Modified}, nil
	}
	if uint64(n) > segSize {
		return WALEnd{}, fmt.Errorf("%s holds %d bytes of WAL, more than the %d-byte segment", f.Key, n, segSize)
	}
	return WALEnd{File: f.Name, Partial: true, Timeline: seg.Timeline,
		LSN: seg.StartLSN(segSize) + pglogrepl.LSN(n), Stored: f.Modified}, nil
}

// UpTo returns a copy of l without the segments, .partial objects and
// history files of timelines above top: what a recovery that follows
// timelines up to top (its latest, LatestTimeline) reads. After a
// pg_upgrade into the site, the old cluster's later timelines (their
// history files another system's, absent to the upgraded cluster's
// recovery) hold WAL it stored before the upgrade: l.End is there, the
// copy's End is where the upgraded cluster's WAL ends. The copy shares
// the .partial data sizes l read (PartialDataSize) when it has read any.
func (l *WALListing) UpTo(top uint32) *WALListing {
	c := *l
	above := func(name string, _ WALFile) bool { return wal.SegmentTimeline(name) > top }
	c.Segments = maps.Clone(l.Segments)
	maps.DeleteFunc(c.Segments, above)
	c.Partials = maps.Clone(l.Partials)
	maps.DeleteFunc(c.Partials, above)
	c.Histories = maps.Clone(l.Histories)
	maps.DeleteFunc(c.Histories, func(tli uint32, _ WALFile) bool { return tli > top })
	return &c
}

func (l *WALListing) standsIn(name string) bool {
	_, ok := l.StandIn(name)
	return ok
}

// newerName reports whether segment name a is newer than b: on a later
// timeline, or later on the same one.
func newerName(a, b string) bool {
	ta, tb := wal.SegmentTimeline(a), wal.SegmentTimeline(b)
	return ta > tb || ta == tb && a[8:] > b[8:]
}

// parseDataSize parses a MetaPartialDataSize value.
func parseDataSize(key, v string) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s: bad %s %q", key, MetaPartialDataSize, v)
	}
	return n, nil
}

// DefaultSegmentSize is PostgreSQL's default WAL segment size, assumed
// where no backup says otherwise.
const DefaultSegmentSize = 16 << 20

// NewestSegmentSize returns the WAL segment size of the newest backup in
// bs that Trusted keeps (a planted backup does not decide it where an
// authenticated one exists), DefaultSegmentSize when there is none.
func NewestSegmentSize(bs []*BackupInfo) uint64 {
	b := NewestTrusted(bs)
	if b == nil {
		return DefaultSegmentSize
	}
	return b.SegmentSize()
}

// WALEnd lists a's WAL (with the sites it moved from) and returns the
// newest byte stored (WALListing.End).
func (a *Archive) WALEnd(ctx context.Context, segSize uint64) (WALEnd, error) {
	l, err := a.ListStoredWAL(ctx)
	if err != nil {
		return WALEnd{}, err
	}
	return l.End(ctx, segSize)
}
