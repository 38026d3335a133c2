package wal

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
)

// HistoryEntry is one timeline of a History: the timeline and the LSN
// where it began, its parent's switch point (0 for the first timeline).
// It ends where the next entry begins; the last entry goes on.
type HistoryEntry struct {
	Timeline uint32
	Begin    pglogrepl.LSN
}

// History is the path of timelines that leads to a timeline, oldest first
// and ending with that timeline: what PostgreSQL's readTimeLineHistory
// reads from the timeline's history file, and what recovery follows
// (XLogFileReadAnyTLI).
type History []HistoryEntry

// ParseHistory parses the history file of timeline tli as the server
// writes it (writeTimeLineHistory in PostgreSQL's timeline.c): one line per
// ancestor timeline, "parentTLI<TAB>switchpoint<TAB>reason", oldest first.
// Blank lines and lines starting with # are ignored, as readTimeLineHistory
// does. Timelines must increase, up to tli itself, and switch points must
// not go back.
func ParseHistory(tli uint32, data []byte) (History, error) {
	var h History
	var begin pglogrepl.LSN
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return nil, fmt.Errorf("history of timeline %d, line %d: want timeline and switch point in %q", tli, i+1, line)
		}
		parent, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("history of timeline %d, line %d: bad timeline in %q", tli, i+1, line)
		}
		sw, err := pglogrepl.ParseLSN(f[1])
		if err != nil {
			return nil, fmt.Errorf("history of timeline %d, line %d: bad switch point in %q", tli, i+1, line)
		}
		if n := len(h); n > 0 && (uint32(parent) <= h[n-1].Timeline || sw < begin) {
			return nil, fmt.Errorf("history of timeline %d, line %d: timelines and switch points must increase at %q", tli, i+1, line)
		}
		h = append(h, HistoryEntry{Timeline: uint32(parent), Begin: begin})
		begin = sw
	}
	if n := len(h); n > 0 && tli <= h[n-1].Timeline {
		return nil, fmt.Errorf("history of timeline %d: ancestor timeline %d is not below it", tli, h[n-1].Timeline)
	}
	return append(h, HistoryEntry{Timeline: tli, Begin: begin}), nil
}

// Timeline returns the timeline whose history h is: its last entry's.
func (h History) Timeline() uint32 {
	if len(h) == 0 {
		return 0
	}
	return h[len(h)-1].Timeline
}

// TimelineAt returns the timeline that holds the WAL at lsn (PostgreSQL's
// tliOfPointInHistory): a switch point belongs to the newer timeline.
func (h History) TimelineAt(lsn pglogrepl.LSN) uint32 {
	for i := 0; i+1 < len(h); i++ {
		if lsn < h[i+1].Begin {
			return h[i].Timeline
		}
	}
	return h.Timeline()
}

// Switch returns where timeline tli ends in h and the timeline that
// follows it (PostgreSQL's tliSwitchPoint). ok is false when tli is not an
// ancestor in h: the last timeline does not end.
func (h History) Switch(tli uint32) (end pglogrepl.LSN, next uint32, ok bool) {
	for i := 0; i+1 < len(h); i++ {
		if h[i].Timeline == tli {
			return h[i+1].Begin, h[i+1].Timeline, true
		}
	}
	return 0, 0, false
}

// Contains reports whether h runs through timeline tli at lsn: whether
// the WAL of tli up to lsn is on the path (a target timeline must descend
// from a backup's timeline after the backup).
func (h History) Contains(tli uint32, lsn pglogrepl.LSN) bool {
	for i, e := range h {
		if e.Timeline != tli {
			continue
		}
		return i == len(h)-1 || h[i+1].Begin >= lsn
	}
	return false
}

// Timelines returns the timelines segment no may be read from, newest
// first: those that began at or before it (PostgreSQL's
// XLogFileReadAnyTLI) and did not end before it. The segment holding a
// switch point exists on both; PostgreSQL prefers the newer.
func (h History) Timelines(no, segSize uint64) []uint32 {
	var out []uint32
	for i := len(h) - 1; i >= 0; i-- {
		if uint64(h[i].Begin)/segSize > no {
			continue
		}
		if i < len(h)-1 && uint64(h[i+1].Begin)/segSize < no {
			continue
		}
		out = append(out, h[i].Timeline)
	}
	return out
}
