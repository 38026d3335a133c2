package archive

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"

	"github.com/hoardbackup/hoard/wal"
)

// ErrForeignControl is returned (wrapped) for a control object that is not
// its backup's: its backup_label or manifest says the backup starts
// elsewhere, or is of another system, than the backup's metadata.
var ErrForeignControl = errors.New("control object is not this backup's")

// backupLabel is what CheckControl reads of a backup_label.
type backupLabel struct {
	Start    pglogrepl.LSN // START WAL LOCATION
	Segment  string        // the file it names: "(file 000000010000000000000002)"
	Timeline uint32        // START TIMELINE (PostgreSQL 11+), 0 when absent
}

// parseLabel reads the lines of a backup_label CheckControl compares, as
// do_pg_backup_stop (xlog.c) writes them: "START WAL LOCATION: %X/%X
// (file %s)" and "START TIMELINE: %u".
func parseLabel(label string) (backupLabel, error) {
	var l backupLabel
	found := false
	for line := range strings.Lines(label) {
		line = strings.TrimRight(line, "\r\n")
		if v, ok := strings.CutPrefix(line, "START WAL LOCATION: "); ok && !found {
			lsn, rest, _ := strings.Cut(v, " ")
			start, err := pglogrepl.ParseLSN(lsn)
			if err != nil {
				return l, fmt.Errorf("START WAL LOCATION: %w", err)
			}
			l.Start, found = start, true
			if seg, ok := strings.CutPrefix(rest, "(file "); ok {
				l.Segment, _, _ = strings.Cut(seg, ")")
			}
		}
		if v, ok := strings.CutPrefix(line, "START TIMELINE: "); ok && l.Timeline == 0 {
			tli, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return l, fmt.Errorf("START TIMELINE: %w", err)
			}
			l.Timeline = uint32(tli)
		}
	}
	if !found {
		return l, errors.New("no START WAL LOCATION")
	}
	return l, nil
}

// CheckControl checks that c, read from backup b's control object, is b's:
// its backup_label's START WAL LOCATION (the LSN and the segment it names)
// and START TIMELINE, and its manifest's system identifier, must be those
// b's metadata records, where both record them.
//
// The envelope authenticates a control object's bytes and
// hoard-metadata-hmac the backup's name and metadata, but neither binds
// the one to the other: another backup's authentic control object copied
// under b's name, b's metadata kept, decrypts and its metadata verifies.
// Its manifest names the other backup's chunks, which are authentic too,
// and its backup_label makes PostgreSQL recover from the other backup's
// start: a restore of b would silently be one of the other backup, and
// --target-immediate would stop at the other backup's end. The start in
// backup_label is the backup's own, different for every backup of a
// system (each begins with a checkpoint of its own), so comparing it with
// the authenticated metadata closes that. An error wraps
// ErrForeignControl, naming what differs.
func CheckControl(b *BackupInfo, c *Control) error {
	if c.Label == nil {
		return fmt.Errorf("no %s of at most %d bytes: %w", ControlBackupLabel, maxLabelSize, ErrForeignControl)
	}
	l, err := parseLabel(string(c.Label))
	if err != nil {
		return fmt.Errorf("%s: %w: %w", ControlBackupLabel, err, ErrForeignControl)
	}
	differ := func(what string, label, metadata any) error {
		return fmt.Errorf("its %s says %s %v, the backup's metadata %v (another backup's control object copied under this name?); "+
			"restore another backup: %w", ControlBackupLabel, what, label, metadata, ErrForeignControl)
	}
	// PGHoard's backups record the start segment only, from which
	// BackupInfo takes StartLSN as the segment's start: the exact LSN is
	// compared only where hoard recorded it.
	switch {
	case b.Metadata[MetaStartLSN] != "" && l.Start != b.StartLSN:
		return differ("start LSN", l.Start, b.StartLSN)
	case l.Segment != "" && b.StartWALSegment != "" && !strings.EqualFold(l.Segment, b.StartWALSegment):
		return differ("start segment", l.Segment, b.StartWALSegment)
	case l.Timeline != 0 && b.StartTimeline != 0 && l.Timeline != b.StartTimeline:
		return differ("start timeline", l.Timeline, b.StartTimeline)
	}
	if seg, err := b.StartSegment(); err == nil && !startsIn(b, seg, l.Start) {
		return differ("start", l.Start, "segment "+seg.Name(b.SegmentSize()))
	}
	if h := c.Manifest.Hoard; h != nil && h.SystemID != "" && b.SystemID != "" && h.SystemID != b.SystemID {
		return fmt.Errorf("its manifest is of system %s, the backup's metadata %s (another cluster's control object copied under this name?); "+
			"restore another backup: %w", h.SystemID, b.SystemID, ErrForeignControl)
	}
	return nil
}

// startsIn reports whether lsn lies in seg, b's start segment: at b's
// segment size or, where b records none (PGHoard's backups, which
// BackupInfo reads as 16 MiB), at any size initdb --wal-segsize allows,
// since the segment's name alone does not say which: segment
// 000000010000000000000003 starts at 0/3000000 with 16 MiB segments and
// at 0/C000000 with 64 MiB ones.
func startsIn(b *BackupInfo, seg wal.Segment, lsn pglogrepl.LSN) bool {
	if wal.SegmentOf(seg.Timeline, lsn, b.SegmentSize()) == seg {
		return true
	}
	if b.WALSegmentSize != 0 || b.StartWALSegment == "" {
		return false
	}
	for size := uint64(wal.MinSegmentSize); size <= wal.MaxSegmentSize; size <<= 1 {
		if s, err := wal.ParseSegmentName(b.StartWALSegment, size); err == nil && wal.SegmentOf(s.Timeline, lsn, size) == s {
			return true
		}
	}
	return false
}
