package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// ErrTruncatedSegment is wrapped by the error for a complete segment
// whose WAL ends before the segment does, with zeros after it and no WAL
// switch: an earlier copy of the segment (a .partial the daemon stored
// while it grew) put under the complete segment's name. Its page header,
// its hash metadata and its envelope are all sound, and PostgreSQL,
// reading zeros where the WAL went on, would take them as the end of the
// WAL and end recovery there without an error.
var ErrTruncatedSegment = errors.New("truncated segment")

// ErrNotTruncated is wrapped by TruncatedEnd's error for a segment that
// is stored and that wal-fetch delivers without accepting it: accepting
// it would change nothing.
var ErrNotTruncated = errors.New("stored and not refused as truncated")

// shortPageHeaderSize is SizeOfXLogShortPHD, the header of a page after
// a segment's first.
const shortPageHeaderSize = 24

// segmentEnd is a writer that reads a complete segment as it is copied:
// where its valid records end, whether the last one is an XLOG_SWITCH,
// and where its last non-zero byte is.
type segmentEnd struct {
	rec     wal.RecordEnd
	off     int64 // bytes written
	nonZero int64 // the offset after the last non-zero byte
}

func (s *segmentEnd) Write(p []byte) (int, error) {
	_, _ = s.rec.Write(p)
	for b, off := p, s.off; len(b) > 0; {
		n := min(len(b), len(zeroBlock))
		if !bytes.Equal(b[:n], zeroBlock[:n]) {
			s.nonZero = off + int64(len(bytes.TrimRight(b[:n], "\x00")))
		}
		b, off = b[n:], off+int64(n)
	}
	s.off += int64(len(p))
	return len(p), nil
}

// check refuses the segment name (whole, h its first page header) when
// its WAL stops before its end, unless the last record is an XLOG_SWITCH,
// and nothing but zeros follows: either after the record (or record or
// page header) the walk found invalid, or in the last page beyond its
// header (which PostgreSQL before 18 writes after a switch). PostgreSQL
// writes every page of a segment before it archives or sends it, and the
// only WAL that leaves the rest of a segment empty is a switch: a copy of
// the segment cut at some byte, zeros after, stops the walk at the record
// the cut falls in, which ends at or after the cut, wherever in the
// segment the cut is. A cut inside the segment's last record, one that
// goes on in the next segment, is not told from the whole segment: the
// walk cannot check that record's CRC, and its bytes in this segment may
// end in zeros (a row of zeros, a page image).
func (s *segmentEnd) check(h wal.PageHeader) error {
	block := int64(h.BlockSize)
	if !s.rec.Stopped() || s.rec.Switched() || block == 0 || s.nonZero > max(s.rec.Stop(), s.off-block+shortPageHeaderSize) {
		return nil
	}
	return &TruncatedSegmentError{End: h.PageAddr + pglogrepl.LSN(s.rec.End()), Offset: s.rec.End()}
}

// TruncatedSegmentError is the error, wrapping ErrTruncatedSegment, for
// a complete segment refused as truncated: End is the LSN its WAL ends
// at, Offset the same in the segment. Recovery through it ends there.
type TruncatedSegmentError struct {
	End    pglogrepl.LSN
	Offset int64
}

func (e *TruncatedSegmentError) Error() string {
	return fmt.Sprintf("%v: its WAL ends at %s (offset %d) without a WAL switch and zeros follow to the end of the segment: "+
		"an earlier copy of the segment (a .partial) stored under the complete segment's name, which recovery would take "+
		"as the end of the WAL", ErrTruncatedSegment, e.End, e.Offset)
}

func (e *TruncatedSegmentError) Unwrap() error { return ErrTruncatedSegment }

// AcceptHint says how an operator accepts the segment name refused with
// e, and what that costs: wal-fetch's refusal and verify's report give it.
// The acceptance it gives names the end too (SEGMENT@LSN), so that no
// other copy of the segment, cut earlier, is delivered in its place.
func (e *TruncatedSegmentError) AcceptHint(name string) string {
	return fmt.Sprintf("only if this segment is legitimately cut (a standby's last segment of an ended timeline, "+
		"or PGHoard's walreceiver mode) and you accept ending recovery at %s: pass --accept-truncated %s@%s to wal-fetch "+
		"(hoard restore --accept-truncated-wal %s writes it); transactions committed after %s are then not restored", e.End, name, e.End, name, e.End)
}

// ParseAcceptTruncated reads an acceptance of wal-fetch --accept-truncated:
// a complete segment's name, or NAME@LSN, which accepts only a copy whose
// WAL ends at LSN (end; 0 for the name alone, which accepts any end).
func ParseAcceptTruncated(s string) (name string, end pglogrepl.LSN, err error) {
	name, at, pinned := strings.Cut(s, "@")
	if !wal.IsSegmentName(name) {
		return "", 0, fmt.Errorf("%q: %s is not a WAL segment name", s, name)
	}
	if !pinned {
		return name, 0, nil
	}
	if end, err = pglogrepl.ParseLSN(at); err != nil || end == 0 {
		return "", 0, fmt.Errorf("%q: %q is not an LSN (as 0/70000A0)", s, at)
	}
	return name, end, nil
}

// acceptedTruncated finds name among accept (FetchOptions.AcceptTruncated):
// ok when accepted, end the LSN its WAL must end at (0: any). A value
// that does not parse accepts nothing.
func acceptedTruncated(accept []string, name string) (end pglogrepl.LSN, ok bool) {
	for _, s := range accept {
		if n, e, err := ParseAcceptTruncated(s); err == nil && n == name {
			return e, true
		}
	}
	return 0, false
}

// acceptTruncated returns nil where the operator's acceptance ending at
// end (0: any) lifts the refusal t of segment name, else its error. A
// copy whose WAL ends elsewhere than the accepted end is not the copy
// accepted: an earlier copy of the segment (a .partial the daemon stored
// while it grew) put in its place after a restore read the accepted one
// would end recovery earlier than accepted.
func acceptTruncated(t *TruncatedSegmentError, name string, end pglogrepl.LSN) error {
	if end == 0 || t.End == end {
		return nil
	}
	return fmt.Errorf("%w: --accept-truncated %s@%s accepts only a copy whose WAL ends at %s, and this one's ends at %s: "+
		"not the copy accepted (an earlier copy of the segment put in its place?); recovery stops rather than end before %s",
		ErrTruncatedSegment, name, end, end, t.End, end)
}

// timelineEnd returns err, or nil where err is the *TruncatedSegmentError
// of the complete segment name and a later timeline's history file in the
// archive records that name's timeline ending exactly where the segment's
// WAL does: the last segment of a timeline that ended, which a standby
// with archive_mode = always archives under its complete name, zeros
// after the switch point when the file was new (walreceiver.c). The
// history file is read through readHistory's checks (its hash, and in a
// site with keys its envelope and that hoard stored it for the system the
// segment's first page h names), so someone without the key cannot vouch
// for a cut copy with one of their own. Later timelines are tried upwards until one has no history file
// (PostgreSQL numbers a new timeline one above the newest it finds); a
// history file that cannot be read keeps the refusal.
func (a *Archive) timelineEnd(ctx context.Context, name string, h wal.PageHeader, err error) error {
	t, ok := errors.AsType[*TruncatedSegmentError](err)
	if !ok {
		return err
	}
	tli := wal.SegmentTimeline(name)
	for next := tli + 1; next > tli; next++ {
		hist, _, herr := a.readHistory(ctx, next, h.SystemID)
		if herr != nil {
			return err
		}
		if end, _, ok := hist.Switch(tli); ok && end == t.End {
			return nil
		}
	}
	return err
}

// TruncatedEnd returns the refusal that wal-fetch --accept-truncated name
// would lift: the complete segment name, in a or the first site it moved
// from that holds it (as FetchWAL looks), checked as FetchWAL checks it
// (hash, envelope, page header, the history file that may vouch for its
// end). The error wraps storage.ErrNotFound when no site holds name, and
// ErrNotTruncated when it is stored and delivered without accepting it,
// so that hoard restore refuses a name that would not protect anything
// (a typo, a segment of another timeline) before it writes anything.
func (a *Archive) TruncatedEnd(ctx context.Context, name string) (*TruncatedSegmentError, error) {
	for _, s := range a.sites() {
		f := WALFile{Name: name, Key: s.Layout.WALKey(name), Archive: s}
		// Stat first: a missing object, not a missing history file
		// its checks look for, is what makes the name unknown here.
		if _, err := s.Store.Stat(ctx, f.Key); errors.Is(err, storage.ErrNotFound) {
			continue
		} else if err != nil {
			return nil, err
		}
		err := f.Check(ctx)
		if t, ok := errors.AsType[*TruncatedSegmentError](err); ok {
			return t, nil
		}
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%s (%s): %w", name, f.Key, ErrNotTruncated)
	}
	return nil, fmt.Errorf("%s is not in the archive: %w", name, storage.ErrNotFound)
}
