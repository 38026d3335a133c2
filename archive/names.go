package archive

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
)

// Folders of a site's archive, as PGHoard names them (pghoard-format.md c.1).
const (
	XLogDir            = "xlog"
	TimelineDir        = "timeline"
	BasebackupDir      = "basebackup"
	BasebackupChunkDir = "basebackup_chunk"
)

// ControlSuffix ends the key of a pghoard-bb-v2 control object:
// basebackup/<name>.00000000.pghoard.
const ControlSuffix = ".00000000.pghoard"

// Layout maps the names of a site's files to storage keys. Prefix is the
// site's prefix (PGHoard's site "prefix", by default the site name); the
// storage-wide object_storage prefix is the Store's business.
type Layout struct {
	Prefix string
}

func (l Layout) join(dir, name string) string {
	if l.Prefix == "" {
		return dir + "/" + name
	}
	return strings.TrimSuffix(l.Prefix, "/") + "/" + dir + "/" + name
}

// Dir returns the key prefix of one of the site's folders, ending in "/".
func (l Layout) Dir(dir string) string { return l.join(dir, "") }

// WALKey returns the key of a WAL file: segments, .partial and .backup files
// go under xlog/, .history files under timeline/.
func (l Layout) WALKey(name string) string {
	if IsHistoryFile(name) {
		return l.join(TimelineDir, name)
	}
	return l.join(XLogDir, name)
}

// BackupKey returns the key of a backup's main (control) object. name is the
// backup name with or without the ".00000000.pghoard" suffix.
func (l Layout) BackupKey(name string) string {
	return l.join(BasebackupDir, BackupName(name)+ControlSuffix)
}

// ChunkFilename returns a chunk's name relative to basebackup_chunk/, as the
// control object's JSON records it: <bb>/<bb>.%08d.pghoard, numbered from 1.
func ChunkFilename(backup string, n int) string {
	b := BackupName(backup)
	return fmt.Sprintf("%s/%s.%08d.pghoard", b, b, n)
}

// ChunkKey returns the key of a chunk given its chunk_filename.
func (l Layout) ChunkKey(chunkFilename string) string {
	return l.join(BasebackupChunkDir, chunkFilename)
}

// BackupName strips the control suffix and any folder from a backup key or
// name: "site/basebackup/2024-01-01_10-00_0.00000000.pghoard" and
// "2024-01-01_10-00_0" both give "2024-01-01_10-00_0".
func BackupName(s string) string {
	return strings.TrimSuffix(path.Base(s), ControlSuffix)
}

// WAL file names (PostgreSQL's xlog_internal.h): a segment is
// TTTTTTTTXXXXXXXXYYYYYYYY, the timeline and the segment number split in
// two by the number of segments per 4 GiB "xlogid".

// IsSegmentName reports whether name is a 24-hex-digit WAL segment name.
func IsSegmentName(name string) bool {
	if len(name) != 24 {
		return false
	}
	for _, c := range name {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// IsHistoryFile reports whether name is a timeline history file: 8 hex
// digits followed by ".history".
func IsHistoryFile(name string) bool {
	base, ok := strings.CutSuffix(name, ".history")
	return ok && len(base) == 8 && isUpperHex(base)
}

// IsPartialName reports whether name is a segment name followed by ".partial".
func IsPartialName(name string) bool {
	base, ok := strings.CutSuffix(name, ".partial")
	return ok && IsSegmentName(base)
}

// IsBackupHistoryName reports whether name is a backup history file such as
// 000000010000000000000003.00000028.backup.
func IsBackupHistoryName(name string) bool {
	base, ok := strings.CutSuffix(name, ".backup")
	if !ok || len(base) != 24+1+8 || base[24] != '.' {
		return false
	}
	return IsSegmentName(base[:24]) && isUpperHex(base[25:])
}

func isUpperHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return s != ""
}

// Segment identifies one WAL segment: its timeline and its number (the LSN
// divided by the segment size).
type Segment struct {
	Timeline uint32
	No       uint64
}

// segmentsPerXLogID is the number of segments in a 4 GiB xlogid.
func segmentsPerXLogID(segSize uint64) uint64 { return 0x100000000 / segSize }

// SegmentOf returns the segment that holds lsn.
func SegmentOf(tli uint32, lsn pglogrepl.LSN, segSize uint64) Segment {
	return Segment{Timeline: tli, No: uint64(lsn) / segSize}
}

// Name returns the segment's 24-hex file name.
func (s Segment) Name(segSize uint64) string {
	per := segmentsPerXLogID(segSize)
	return fmt.Sprintf("%08X%08X%08X", s.Timeline, s.No/per, s.No%per)
}

// StartLSN returns the LSN at which the segment begins.
func (s Segment) StartLSN(segSize uint64) pglogrepl.LSN {
	return pglogrepl.LSN(s.No * segSize)
}

// Next returns the following segment on the same timeline.
func (s Segment) Next() Segment { return Segment{Timeline: s.Timeline, No: s.No + 1} }

// ParseSegmentName parses a 24-hex segment name. segSize must be a power of
// two between 1 MiB and 1 GiB, as PostgreSQL allows.
func ParseSegmentName(name string, segSize uint64) (Segment, error) {
	if !IsSegmentName(name) {
		return Segment{}, fmt.Errorf("parse wal segment name %q: not 24 hex digits", name)
	}
	tli, _ := strconv.ParseUint(name[0:8], 16, 32)
	hi, _ := strconv.ParseUint(name[8:16], 16, 32)
	lo, _ := strconv.ParseUint(name[16:24], 16, 32)
	per := segmentsPerXLogID(segSize)
	if lo >= per {
		return Segment{}, fmt.Errorf("parse wal segment name %q: segment %X out of range for %d-byte segments", name, lo, segSize)
	}
	return Segment{Timeline: uint32(tli), No: hi*per + lo}, nil
}

// HistoryFileName returns the name of a timeline's history file.
func HistoryFileName(tli uint32) string { return fmt.Sprintf("%08X.history", tli) }
