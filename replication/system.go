package replication

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
)

// System is the server's answer to IDENTIFY_SYSTEM.
type System struct {
	SystemID string        // the cluster's system identifier, decimal
	Timeline int32         // the current timeline
	XLogPos  pglogrepl.LSN // the current WAL flush position
	DBName   string        // empty on a physical replication connection
}

// IdentifySystem asks the server who it is (IDENTIFY_SYSTEM).
func (c *Conn) IdentifySystem(ctx context.Context) (System, error) {
	r, err := pglogrepl.IdentifySystem(ctx, c.pg)
	if err != nil {
		return System{}, fmt.Errorf("identify system: %w", err)
	}
	return System{SystemID: r.SystemID, Timeline: r.Timeline, XLogPos: r.XLogPos, DBName: r.DBName}, nil
}

// settingName is what SHOW accepts here: a plain or dotted GUC name.
var settingName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)

// Show returns the current value of a run-time parameter (SHOW name), as
// text, units included ("16MB").
func (c *Conn) Show(ctx context.Context, name string) (string, error) {
	if !settingName.MatchString(name) {
		return "", fmt.Errorf("show %q: invalid parameter name", name)
	}
	results, err := c.exec(ctx, "SHOW "+name)
	if err != nil {
		return "", fmt.Errorf("show %s: %w", name, err)
	}
	if len(results) != 1 || len(results[0].Rows) != 1 || len(results[0].Rows[0]) != 1 {
		return "", fmt.Errorf("show %s: %w: want one value", name, ErrProtocol)
	}
	return string(results[0].Rows[0][0]), nil
}

// WALSegmentSize returns the cluster's WAL segment size in bytes (SHOW
// wal_segment_size). initdb --wal-segsize sets it per cluster, from 1 MB to
// 1 GB: never assume 16 MB.
func (c *Conn) WALSegmentSize(ctx context.Context) (uint64, error) {
	s, err := c.Show(ctx, "wal_segment_size")
	if err != nil {
		return 0, err
	}
	n, err := ParseSize(s)
	if err != nil {
		return 0, fmt.Errorf("parse wal_segment_size: %w", err)
	}
	if n == 0 || n&(n-1) != 0 {
		return 0, fmt.Errorf("parse wal_segment_size: %d is not a power of two", n)
	}
	return n, nil
}

// ParseSize parses a memory size as PostgreSQL shows it: a number with an
// optional unit B, kB, MB, GB or TB (multiples of 1024), such as "16MB".
func ParseSize(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	n, unit, err := splitSetting(s, "size")
	if err != nil {
		return 0, err
	}
	var mult uint64
	switch unit {
	case "", "B":
		mult = 1
	case "kB":
		mult = 1 << 10
	case "MB":
		mult = 1 << 20
	case "GB":
		mult = 1 << 30
	case "TB":
		mult = 1 << 40
	default:
		return 0, fmt.Errorf("size %q: unknown unit", s)
	}
	if n > ^uint64(0)/mult {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n * mult, nil
}

// ParseDuration parses a time setting as PostgreSQL shows it: a number
// with an optional unit us, ms, s, min, h or d ("1min", "500ms"; SHOW
// prints the largest unit that divides the value), a bare number in
// base (a setting's own unit: milliseconds for wal_sender_timeout).
func ParseDuration(s string, base time.Duration) (time.Duration, error) {
	s = strings.TrimSpace(s)
	n, name, err := splitSetting(s, "duration")
	if err != nil {
		return 0, err
	}
	var unit time.Duration
	switch name {
	case "":
		unit = base
	case "us":
		unit = time.Microsecond
	case "ms":
		unit = time.Millisecond
	case "s":
		unit = time.Second
	case "min":
		unit = time.Minute
	case "h":
		unit = time.Hour
	case "d":
		unit = 24 * time.Hour
	default:
		return 0, fmt.Errorf("duration %q: unknown unit", s)
	}
	if n > uint64(math.MaxInt64/unit) {
		return 0, fmt.Errorf("duration %q: too large", s)
	}
	return time.Duration(n) * unit, nil
}

// splitSetting splits s, a setting as SHOW prints it with spaces
// trimmed, into its number and its unit ("16MB": 16 and "MB"); what
// names the kind of setting in the error.
func splitSetting(s, what string) (uint64, string, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	n, err := strconv.ParseUint(s[:i], 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("%s %q: %w", what, s, err)
	}
	return n, strings.TrimSpace(s[i:]), nil
}

// TimelineHistory fetches the history file of timeline tli
// (TIMELINE_HISTORY), as the server stores it in pg_wal: its name
// ("00000002.history") and content. Timeline 1 has no history file.
func (c *Conn) TimelineHistory(ctx context.Context, tli int32) (filename string, content []byte, err error) {
	results, err := c.exec(ctx, fmt.Sprintf("TIMELINE_HISTORY %d", tli))
	if err != nil {
		return "", nil, fmt.Errorf("timeline history %d: %w", tli, err)
	}
	if len(results) != 1 || len(results[0].Rows) != 1 || len(results[0].Rows[0]) != 2 {
		return "", nil, fmt.Errorf("timeline history %d: %w: want one row of two columns", tli, ErrProtocol)
	}
	row := results[0].Rows[0]
	return string(row[0]), row[1], nil
}
