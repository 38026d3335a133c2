package restore

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/hoardbackup/hoard/archive"
)

// WALFetch is a restore_command that runs this executable's wal-fetch
// for one site.
type WALFetch struct {
	words []string // the executable and its global flags, quoted for the shell
	// accept are the segments wal-fetch --accept-truncated delivers
	// although they are refused as truncated.
	accept []string
	// Spool is set when wal-fetch takes segments from its prefetch spool
	// (restore_prefetch above 0): Run keeps the segments of the backup's
	// consistency range it checked there (startWALCheck).
	Spool bool
}

// AcceptTruncated makes the command pass segs to wal-fetch as
// --accept-truncated: the operator accepts that recovery ends where each
// one's WAL does.
func (f *WALFetch) AcceptTruncated(segs []string) { f.accept = slices.Clone(segs) }

// NewWALFetch finds this executable for a WALFetch with configuration file
// configPath (left out when "": the configuration then comes from
// PostgreSQL's environment) and site (left out when "").
func NewWALFetch(configPath, site string) (*WALFetch, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the hoard binary for restore_command (pass a restore command explicitly): %w", err)
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	words := []string{ShellQuote(exe)}
	if configPath != "" {
		abs, err := filepath.Abs(configPath)
		if err != nil {
			return nil, fmt.Errorf("resolve configuration path %s: %w", configPath, err)
		}
		words = append(words, "--config", ShellQuote(abs))
	}
	if site != "" {
		words = append(words, "--site", ShellQuote(site))
	}
	return &WALFetch{words: words}, nil
}

// Command returns the restore_command. PostgreSQL runs it with /bin/sh,
// so every word is quoted for the shell where it needs to be. checked,
// when not nil, is the WAL the restore found archived, passed on as
// wal-fetch --archived-through and --wal-segment-size: recovery then
// stops with an error at a segment of it that is gone, instead of
// promoting there (archive.Archive.CheckLost).
func (f *WALFetch) Command(checked *archive.ArchivedThrough) string {
	args := append(slices.Clone(f.words), "wal-fetch")
	for _, seg := range f.accept {
		args = append(args, "--accept-truncated", ShellQuote(seg))
	}
	if checked != nil {
		args = append(args, "--archived-through", checked.Last.Name(checked.SegmentSize),
			"--wal-segment-size", strconv.FormatUint(checked.SegmentSize, 10))
	}
	return strings.Join(append(args, "%f", "%p"), " ")
}

// WALFetchCommand is NewWALFetch's Command without --archived-through.
func WALFetchCommand(configPath, site string) (string, error) {
	f, err := NewWALFetch(configPath, site)
	if err != nil {
		return "", err
	}
	return f.Command(nil), nil
}

// safeShellWord matches words the shell passes through unchanged.
var safeShellWord = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

// ShellQuote quotes s for /bin/sh when it holds anything but plain
// characters.
func ShellQuote(s string) string {
	if safeShellWord.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
