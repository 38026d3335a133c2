package wal

import (
	"fmt"
	"strconv"
	"strings"
)

// WAL file names (PostgreSQL's xlog_internal.h): a segment is
// TTTTTTTTXXXXXXXXYYYYYYYY, the timeline and the segment number split in
// two by the number of segments per 4 GiB "xlogid"; other WAL files add a
// suffix.
const (
	// PartialSuffix ends the name of a segment that was not completed on
	// its timeline (a promotion, or a receiver still writing it).
	PartialSuffix = ".partial"
	// HistorySuffix ends the name of a timeline history file.
	HistorySuffix = ".history"
	// BackupHistorySuffix ends the name of a backup history file.
	BackupHistorySuffix = ".backup"
)

// IsSegmentName reports whether name is a 24-hex-digit WAL segment name.
func IsSegmentName(name string) bool {
	return len(name) == 24 && isUpperHex(name)
}

// IsHistoryFile reports whether name is a timeline history file: 8 hex
// digits followed by ".history".
func IsHistoryFile(name string) bool {
	base, ok := strings.CutSuffix(name, HistorySuffix)
	return ok && len(base) == 8 && isUpperHex(base)
}

// IsPartialName reports whether name is a segment name followed by ".partial".
func IsPartialName(name string) bool {
	base, ok := strings.CutSuffix(name, PartialSuffix)
	return ok && IsSegmentName(base)
}

// IsBackupHistoryName reports whether name is a backup history file such as
// 000000010000000000000003.00000028.backup.
func IsBackupHistoryName(name string) bool {
	base, ok := strings.CutSuffix(name, BackupHistorySuffix)
	if !ok || len(base) != 24+1+8 || base[24] != '.' {
		return false
	}
	return IsSegmentName(base[:24]) && isUpperHex(base[25:])
}

// isUpperHex reports whether s is a non-empty run of the digits PostgreSQL
// writes in WAL file names: 0-9 and upper-case A-F.
func isUpperHex(s string) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return s != ""
}

// HistoryFileName returns the name of a timeline's history file.
func HistoryFileName(tli uint32) string { return fmt.Sprintf("%08X%s", tli, HistorySuffix) }

// ParseHistoryFileName returns the timeline of a history file name.
func ParseHistoryFileName(name string) (uint32, error) {
	if !IsHistoryFile(name) {
		return 0, fmt.Errorf("parse timeline history file name %q: not 8 hex digits and .history", name)
	}
	tli, _ := strconv.ParseUint(name[:8], 16, 32)
	return uint32(tli), nil
}

// SegmentTimeline returns the timeline of a segment, .partial or .backup
// file name (its first 8 hex digits), or 0 when name is none of those.
func SegmentTimeline(name string) uint32 {
	if !IsSegmentName(name) && !IsPartialName(name) && !IsBackupHistoryName(name) {
		return 0
	}
	tli, _ := strconv.ParseUint(name[:8], 16, 32)
	return uint32(tli)
}
