package wal

import (
	"fmt"
	"strconv"

	"github.com/jackc/pglogrepl"
)

// Segment identifies one WAL segment: its timeline and its number (the LSN
// divided by the segment size). The segment size is not part of it: the
// cluster chooses it at initdb (1 MiB to 1 GiB, a power of two), so every
// conversion between numbers, LSNs and names takes it.
type Segment struct {
	Timeline uint32
	No       uint64
}

// Bounds of the WAL segment size (initdb --wal-segsize).
const (
	MinSegmentSize = 1 << 20
	MaxSegmentSize = 1 << 30
)

// ValidSegmentSize reports whether n is a segment size PostgreSQL allows:
// a power of two from MinSegmentSize to MaxSegmentSize.
func ValidSegmentSize(n uint64) bool {
	return powerOfTwo(n) && n >= MinSegmentSize && n <= MaxSegmentSize
}

// segmentsPerXLogID is the number of segments in a 4 GiB xlogid
// (XLogSegmentsPerXLogId).
func segmentsPerXLogID(segSize uint64) uint64 { return 0x100000000 / segSize }

// SegmentOf returns the segment that holds lsn on timeline tli.
func SegmentOf(tli uint32, lsn pglogrepl.LSN, segSize uint64) Segment {
	return Segment{Timeline: tli, No: uint64(lsn) / segSize}
}

// Name returns the segment's 24-hex file name (XLogFileName).
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

// ParseSegmentName parses a 24-hex segment name (XLogFromFileName). segSize
// must be a power of two between 1 MiB and 1 GiB, as PostgreSQL allows.
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
