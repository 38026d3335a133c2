package walstream

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
)

// historyEntry is one line of a timeline history file: timeline Timeline
// holds WAL up to End, where the next timeline forked off.
type historyEntry struct {
	Timeline int32
	End      pglogrepl.LSN
}

// parseHistory parses a timeline history file as the server writes it
// (writeTimeLineHistory in PostgreSQL's timeline.c): one line per ancestor
// timeline, "parentTLI<TAB>switchpoint<TAB>reason", oldest first. Blank
// lines and lines starting with # are ignored, as readTimeLineHistory does.
func parseHistory(content []byte) ([]historyEntry, error) {
	var entries []historyEntry
	for i, line := range strings.Split(string(content), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			return nil, fmt.Errorf("timeline history line %d: want timeline and switch point", i+1)
		}
		tli, err := strconv.ParseUint(fields[0], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("timeline history line %d: %w", i+1, err)
		}
		end, err := pglogrepl.ParseLSN(fields[1])
		if err != nil {
			return nil, fmt.Errorf("timeline history line %d: %w", i+1, err)
		}
		if n := len(entries); n > 0 && (uint32(tli) <= uint32(entries[n-1].Timeline) || end < entries[n-1].End) {
			return nil, fmt.Errorf("timeline history line %d: timelines and switch points must increase", i+1)
		}
		entries = append(entries, historyEntry{Timeline: int32(tli), End: end})
	}
	return entries, nil
}

// timelineOf returns the timeline that holds the WAL at lsn according to
// history, whose latest timeline is current (PostgreSQL's
// tliOfPointInHistory): a switch point belongs to the newer timeline.
func timelineOf(history []historyEntry, current int32, lsn pglogrepl.LSN) int32 {
	for _, e := range history {
		if lsn < e.End {
			return e.Timeline
		}
	}
	return current
}

// endOf returns where timeline tli ends in history and the timeline that
// follows it. ok is false when tli is not an ancestor in history.
func endOf(history []historyEntry, current, tli int32) (end pglogrepl.LSN, next int32, ok bool) {
	for i, e := range history {
		if e.Timeline != tli {
			continue
		}
		next = current
		if i+1 < len(history) {
			next = history[i+1].Timeline
		}
		return e.End, next, true
	}
	return 0, 0, false
}
