package restore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/wal"
)

// defaultScanSegments bounds findRestorePoint's scan for the automatic
// choice of a backup.
const defaultScanSegments = 64

// Restore point records, from catalog/pg_control.h and access/xlog_internal.h.
const (
	rmXLogID         = 0    // RM_XLOG_ID
	xlogRestorePoint = 0x70 // XLOG_RESTORE_POINT
	restorePointSize = 8 + restorePointNameSize
	xlrInfoMask      = 0x0F // XLR_INFO_MASK
)

// restorePointNameSize is MAXFNAMELEN, the size of xl_restore_point's name.
const restorePointNameSize = 64

// restorePointName returns the name of rec's restore point, false when
// rec is no XLOG_RESTORE_POINT record. Its main data (xl_restore_point)
// is an 8-byte timestamp then a 64-byte name field that PostgreSQL fills
// with strlcpy (XLogRestorePoint in xlog.c): only the name and its
// terminating NUL are defined, the rest is whatever the stack held.
func restorePointName(rec wal.Record) (string, bool) {
	if rec.RmgrID() != rmXLogID || rec.Info()&^xlrInfoMask != xlogRestorePoint {
		return "", false
	}
	m, ok := rec.MainData()
	if !ok || len(m) != restorePointSize {
		return "", false
	}
	field := m[8:]
	n := bytes.IndexByte(field, 0)
	if n < 0 {
		return "", false
	}
	return string(field[:n]), true
}

// checkRestorePointName checks a restore point's name as PostgreSQL
// bounds it (MAXFNAMELEN - 1 bytes).
func checkRestorePointName(name string) error {
	if len(name) == 0 || len(name) > 63 {
		return fmt.Errorf("%w: restore point name must be 1 to 63 bytes", ErrBadTarget)
	}
	return nil
}

// segmentReader reads the segments of w for the restore point scans,
// keeping the last one read: the newest-first scan reads the segment
// after the one it scans again to complete a record continued into it,
// and that is the segment it read just before.
type segmentReader struct {
	w       walIndex
	segSize uint64
	bufs    [2][]byte
	names   [2]string
}

// read returns the contents of segment n of w, valid until the second
// read of another segment.
func (s *segmentReader) read(ctx context.Context, n string) ([]byte, error) {
	if s.names[0] == n {
		return s.bufs[0], nil
	}
	s.bufs[0], s.bufs[1] = s.bufs[1], s.bufs[0]
	s.names[0], s.names[1] = s.names[1], s.names[0]
	if s.names[0] == n {
		return s.bufs[0], nil
	}
	data, err := readScanSegment(ctx, s.w, n, s.segSize, s.bufs[0])
	if err != nil {
		s.names[0] = ""
		return nil, err
	}
	s.bufs[0], s.names[0] = data, n
	return data, nil
}

// errFound stops a record walk at the record it looks for.
var errFound = errors.New("found")

// onPath returns the name of the copy of segment no that recovery along
// p reads (PostgreSQL's XLogFileReadAnyTLI: the newest of p's timelines
// that began at or before it and has it), "" when w holds none.
func onPath(w walIndex, p wal.History, no, segSize uint64) string {
	for _, tli := range p.Timelines(no, segSize) {
		if n := (wal.Segment{Timeline: tli, No: no}).Name(segSize); w[n] != nil {
			return n
		}
	}
	return ""
}

// pointScope bounds findRestorePoint's scan.
type pointScope struct {
	// max is how many segments it reads, newest first (0: 64; -1: no
	// bound).
	max int
	// from is the first segment number it reads.
	from uint64
	// path, when set, restricts it to the copies recovery along it
	// reads (onPath); else it reads every timeline's copy.
	path wal.History
}

// findRestorePoint scans the newest archived WAL segments of w (the
// segments of a listing the caller made: restore.Run's one listing of
// xlog/, with the sites a moved from), within scope, newest first, for
// an XLOG_RESTORE_POINT record called name, and returns the LSN just past
// the record (not MAXALIGNed), 0 when none is found. Records are decoded
// whole (wal.RecordReader): one split across a page, or continued into
// the next segment, is put together, and one whose CRC-32C does not
// match is no record.
func findRestorePoint(ctx context.Context, w walIndex, name string, segSize uint64, scope pointScope) (pglogrepl.LSN, error) {
	end, _, err := findRestorePointIn(ctx, w, name, segSize, scope)
	return end, err
}

// findRestorePointIn is findRestorePoint that also returns the name of
// the segment copy the point's record starts in ("" when none is found).
func findRestorePointIn(ctx context.Context, w walIndex, name string, segSize uint64, scope pointScope) (pglogrepl.LSN, string, error) {
	limit := scope.max
	if limit == 0 {
		limit = defaultScanSegments
	}
	if err := checkRestorePointName(name); err != nil {
		return 0, "", err
	}
	type segment struct {
		name string
		seg  wal.Segment
	}
	var segs []segment
	for n := range w {
		seg, err := wal.ParseSegmentName(n, segSize)
		if err != nil || seg.No < scope.from {
			continue
		}
		if scope.path != nil && onPath(w, scope.path, seg.No, segSize) != n {
			continue
		}
		segs = append(segs, segment{n, seg})
	}
	// By position, newest first, then timeline.
	sort.Slice(segs, func(i, j int) bool {
		if segs[i].seg.No != segs[j].seg.No {
			return segs[i].seg.No > segs[j].seg.No
		}
		return segs[i].seg.Timeline > segs[j].seg.Timeline
	})
	sr := &segmentReader{w: w, segSize: segSize}
	for i, s := range segs {
		if limit > 0 && i >= limit {
			break
		}
		data, err := sr.read(ctx, s.name)
		if err != nil {
			return 0, "", err
		}
		var found pglogrepl.LSN
		match := func(rec wal.Record) error {
			if n, ok := restorePointName(rec); ok && n == name {
				found = pglogrepl.LSN(rec.End)
			}
			return nil
		}
		r := wal.NewRecordReader(segSize)
		start := uint64(s.seg.StartLSN(segSize))
		if err := r.Segment(start, data, match); err != nil {
			return 0, "", err
		}
		if r.Pending() {
			// The segment's last record goes on in the next one: the
			// copy recovery reads after this one.
			next := wal.Segment{Timeline: s.seg.Timeline, No: s.seg.No + 1}.Name(segSize)
			if scope.path != nil {
				next = onPath(w, scope.path, s.seg.No+1, segSize)
			}
			if next != "" && w[next] != nil {
				data, err := sr.read(ctx, next)
				if err != nil {
					return 0, "", err
				}
				err = r.Segment(start+segSize, data, func(rec wal.Record) error {
					if rec.LSN < start+segSize {
						_ = match(rec)
					}
					return errFound // only the record continued into it
				})
				if err != nil && !errors.Is(err, errFound) {
					return 0, "", err
				}
			}
		}
		if found != 0 {
			return found, s.name, nil
		}
	}
	return 0, "", nil
}

// earlierRestorePoint looks for another restore point called name before
// the one findRestorePoint found, which ends at before, in the WAL
// recovery along path p replays from from (the chosen backup's start)
// to that point: the copy of each segment recovery reads (onPath), never
// another timeline's, oldest first. It returns where the first one that
// starts at or after from ends, as findRestorePoint does, or 0.
// Restore point names need not be unique, and PostgreSQL stops at the
// first point of the name that recovery replays (recoveryStopsAfter,
// xlogrecovery.c), not at the newest one: a script's point made again
// each day with no backup in between would stop recovery a day early.
// The scan stops at the first point it finds, so it reads no more WAL
// than recovery replays from the backup's start before it stops; it has
// no bound of its own, as a scan newest first would need to find a first
// point far before the newest.
func earlierRestorePoint(ctx context.Context, w walIndex, p wal.History, name string, segSize uint64, from, before pglogrepl.LSN) (pglogrepl.LSN, error) {
	if err := checkRestorePointName(name); err != nil {
		return 0, err
	}
	if before <= from {
		return 0, nil
	}
	first := wal.SegmentOf(0, from, segSize).No
	last := wal.SegmentOf(0, before-1, segSize).No
	sr := &segmentReader{w: w, segSize: segSize}
	r := wal.NewRecordReader(segSize)
	var found pglogrepl.LSN
	for no := first; no <= last; no++ {
		n := onPath(w, p, no, segSize)
		if n == "" {
			continue // a gap: the reader starts afresh after it
		}
		data, err := sr.read(ctx, n)
		if err != nil {
			return 0, err
		}
		err = r.Segment(no*segSize, data, func(rec wal.Record) error {
			if rec.End >= uint64(before) {
				return errFound // the point found, or past it
			}
			if rec.LSN < uint64(from) {
				// Before the backup's start, where recovery does not
				// replay.
				return nil
			}
			if n, ok := restorePointName(rec); ok && n == name {
				found = pglogrepl.LSN(rec.End)
				return errFound
			}
			return nil
		})
		if errors.Is(err, errFound) {
			return found, nil
		}
		if err != nil {
			return 0, err
		}
	}
	return 0, nil
}

// readScanSegment reads segment n of w into buf's space, for the restore
// point scans.
func readScanSegment(ctx context.Context, w walIndex, n string, segSize uint64, buf []byte) ([]byte, error) {
	src := w[n]
	rc, _, err := src.Codec.Open(ctx, src.Store, src.Layout.WALKey(n))
	if err != nil {
		return nil, fmt.Errorf("open WAL %s: %w", n, err)
	}
	// At most one byte past the segment size is held: an object
	// that decodes to more is no segment, whatever it would decode
	// to (a compression bomb).
	b := bytes.NewBuffer(buf[:0])
	_, err = io.Copy(b, io.LimitReader(rc, int64(segSize)+1))
	rc.Close()
	if err == nil && uint64(b.Len()) > segSize {
		err = fmt.Errorf("%w: more than the %d-byte segment size", archive.ErrWALTooLarge, segSize)
	}
	if err != nil {
		return nil, fmt.Errorf("read WAL %s: %w", src.Layout.WALKey(n), err)
	}
	return b.Bytes(), nil
}

// checkRestorePoints checks that recovery of b along path p stops at the
// restore point called name that the operator means: newest is the
// newest point of the name the automatic choice found (it chose b for
// it), 0 for a backup named with --basebackup, for which the newest
// point recovery from b can reach is looked for here, in every segment
// from b's start on along p, with no bound (a name given wrong reads all
// of that WAL before it is refused). It refuses (ErrBadTarget) when
// recovery from b replays no point of the name, where PostgreSQL would
// replay the whole archive and stop with "recovery ended before
// configured recovery target was reached", and when an earlier point of
// the name comes first (earlierRestorePoint): PostgreSQL would stop
// there, not at the newest.
func checkRestorePoints(ctx context.Context, w walIndex, b *archive.BackupInfo, p wal.History, name string, newest pglogrepl.LSN) error {
	segSize := b.SegmentSize()
	if newest == 0 {
		scope := pointScope{max: -1, from: wal.SegmentOf(0, b.StartLSN, segSize).No, path: p}
		var err error
		if newest, err = findRestorePoint(ctx, w, name, segSize, scope); err != nil {
			return err
		}
		if newest == 0 {
			return fmt.Errorf("%w: no restore point %q in the archived WAL from where backup %s started (at %s) on, along timeline %d: "+
				"a point of that name made before backup %s started is never replayed from it, and PostgreSQL would replay the whole archive "+
				"and stop with \"recovery ended before configured recovery target was reached\"; name an older backup, or, for a point "+
				"made since the last segment was stored, run select pg_switch_wal() on the primary, wait until hoard list shows the stored "+
				"WAL past the point's LSN (what pg_create_restore_point returned), then restore again",
				ErrBadTarget, name, b.Name, b.StartLSN, p.Timeline(), b.Name)
		}
		// One that started after the newest point of the name (in its
		// start segment) replays none either.
		if b.StartLSN != 0 && newest <= b.StartLSN {
			return fmt.Errorf("%w: the newest restore point %q in the archived WAL ends at %s, before backup %s started (at %s): "+
				"recovery from it replays no point of that name, and PostgreSQL would stop with \"recovery ended before configured recovery "+
				"target was reached\"; name an older backup, or leave out --basebackup to let restore choose", ErrBadTarget, name, (newest+7)&^7, b.Name, b.StartLSN)
		}
	}
	earlier, err := earlierRestorePoint(ctx, w, p, name, segSize, b.StartLSN, newest)
	if err != nil {
		return err
	}
	if earlier != 0 {
		// As pg_create_restore_point returned them: the end of the
		// record, MAXALIGNed (XLogInsertRecord's EndPos).
		earlier, newest := (earlier+7)&^7, (newest+7)&^7
		return fmt.Errorf("%w: restore point %q was made more than once: recovery from backup %s would stop at the first one it replays, "+
			"ending at %s, not at the newest, ending at %s; restore to the one you mean by the LSN pg_create_restore_point returned for it, "+
			"with --target-inclusive=false (the newest: --target-lsn %s --target-inclusive=false)", ErrBadTarget, name, b.Name, earlier, newest, newest)
	}
	return nil
}

// pointOnPath checks that the restore point called name the automatic
// choice chose b by, ending at newest in segment copy seg (the newest in
// the newest segments of every timeline: the target timeline depends on
// the backup chosen), is on b's recovery path p: the copy of its segment
// recovery along p reads (onPath). A point made on a timeline p does not
// follow there (an old primary's history after a failover, a restore
// thrown away) is never replayed. Then the newest point of the name along
// p from b's start is the one meant, looked for as for --basebackup (up
// to all the WAL from b's start on, newest first): it returns that one,
// and refuses (ErrBadTarget) when there is none, where PostgreSQL would
// replay the whole archive and stop with "recovery ended before
// configured recovery target was reached", or when it ends before b did.
func pointOnPath(ctx context.Context, log zerolog.Logger, w walIndex, b *archive.BackupInfo, p wal.History, name string, newest pglogrepl.LSN, seg string) (pglogrepl.LSN, error) {
	segSize := b.SegmentSize()
	s, err := wal.ParseSegmentName(seg, segSize)
	if err != nil || onPath(w, p, s.No, segSize) == seg {
		return newest, nil
	}
	scope := pointScope{max: -1, from: wal.SegmentOf(0, b.StartLSN, segSize).No, path: p}
	found, err := findRestorePoint(ctx, w, name, segSize, scope)
	if err != nil {
		return 0, err
	}
	where := fmt.Sprintf("the newest restore point %q in the archived WAL, ending at %s, was found on timeline %d (segment %s), which recovery from backup %s along %s never replays",
		name, (newest+7)&^7, s.Timeline, seg, b.Name, pathString(p))
	if found == 0 {
		return 0, fmt.Errorf("%w: %s, and there is no point of that name along that path from where backup %s started (at %s): PostgreSQL would replay the whole archive "+
			"and stop with \"recovery ended before configured recovery target was reached\"; to restore to the point on timeline %d, add --target-timeline %d",
			ErrBadTarget, where, b.Name, b.StartLSN, s.Timeline, s.Timeline)
	}
	if end := endLSN(b); found <= b.StartLSN || (end != 0 && found < end) {
		return 0, fmt.Errorf("%w: %s; the newest point of that name along that path ends at %s, before backup %s ended (at %s), and recovery from it cannot stop there: "+
			"name an older backup with --basebackup, or, to restore to the point on timeline %d, add --target-timeline %d",
			ErrBadTarget, where, (found+7)&^7, b.Name, end, s.Timeline, s.Timeline)
	}
	log.Warn().Str("restore_point", name).Uint32("timeline", s.Timeline).Str("passed_over", ((newest+7)&^7).String()).
		Str("restoring_to", ((found+7)&^7).String()).Str("path", pathString(p)).
		Msg("the newest restore point of the name is on a timeline recovery does not replay; restoring to the newest along the recovery path")
	return found, nil
}

// pathString describes recovery path p: "timeline 1, then 2 from 0/4186A0".
func pathString(p wal.History) string {
	var sb strings.Builder
	for i, h := range p {
		if i == 0 {
			fmt.Fprintf(&sb, "timeline %d", h.Timeline)
			continue
		}
		fmt.Fprintf(&sb, ", then %d from %s", h.Timeline, h.Begin)
	}
	return sb.String()
}
