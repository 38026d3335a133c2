package restore

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// WALFetchCommand builds a restore_command that runs this executable's
// wal-fetch with configuration file configPath (left out when "": the
// configuration then comes from PostgreSQL's environment) and site (left
// out when ""). PostgreSQL runs it with /bin/sh, so every word is quoted
// for the shell where it needs to be.
func WALFetchCommand(configPath, site string) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the hoard binary for restore_command (pass a restore command explicitly): %w", err)
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	args := []string{ShellQuote(exe)}
	if configPath != "" {
		abs, err := filepath.Abs(configPath)
		if err != nil {
			return "", fmt.Errorf("resolve configuration path %s: %w", configPath, err)
		}
		args = append(args, "--config", ShellQuote(abs))
	}
	if site != "" {
		args = append(args, "--site", ShellQuote(site))
	}
	return strings.Join(append(args, "wal-fetch", "%f", "%p"), " "), nil
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
