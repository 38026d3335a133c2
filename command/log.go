package command

import (
	"io"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Log field names used across hoard.
const (
	logSite    = "site"
	logBackup  = "backup"
	logKey     = "key"
	logSegment = "segment"
)

// newLogger builds the process logger from the global flags. Logs go to
// stderr; command output goes to stdout.
func newLogger(w io.Writer, level, format string, short bool) (zerolog.Logger, error) {
	lvl, err := parseLevel(level)
	if err != nil {
		return zerolog.Nop(), err
	}
	var out io.Writer
	switch format {
	case "json":
		out = w
	case "console", "":
		cw := zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339, NoColor: !isTerminal(w)}
		if short {
			// --short-log: level and message only, for journald which adds
			// its own timestamp (PGHoard's -s).
			cw.PartsExclude = []string{zerolog.TimestampFieldName}
		}
		out = cw
	default:
		return zerolog.Nop(), usagef("use console or json", "unknown log format %q", format)
	}
	l := zerolog.New(out).Level(lvl)
	if !short || format == "json" {
		l = l.With().Timestamp().Logger()
	}
	return l, nil
}

// parseLevel reads a log level in hoard's spelling (debug, info, warn,
// error) or PGHoard's log_level spelling (DEBUG, INFO, WARNING, ERROR,
// CRITICAL), in any case: HOARD_LOG_LEVEL sets both the flag and the
// configuration key.
func parseLevel(s string) (zerolog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return zerolog.DebugLevel, nil
	case "info", "":
		return zerolog.InfoLevel, nil
	case "warn", "warning":
		return zerolog.WarnLevel, nil
	case "error", "critical":
		return zerolog.ErrorLevel, nil
	}
	return zerolog.NoLevel, usagef("use one of debug, info, warn, error", "unknown log level %q", s)
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
