package config

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors.
var (
	// ErrNoSites means the configuration has no backup_sites.
	ErrNoSites = errors.New("no backup sites configured")
	// ErrUnknownSite means a site name is not in backup_sites.
	ErrUnknownSite = errors.New("unknown site")
	// ErrEmptyFile means the configuration file Load read holds nothing
	// but white space: no configuration, rather than one with nothing
	// set (a file cut short, or one left to be filled in).
	ErrEmptyFile = errors.New("the file is empty")
)

// Problem is one thing wrong in a configuration.
type Problem struct {
	Path string // JSON path ("backup_sites.s1.basebackup_count") or environment variable
	Msg  string
}

// String returns "path: msg".
func (p Problem) String() string {
	if p.Path == "" {
		return p.Msg
	}
	return p.Path + ": " + p.Msg
}

// ValidationError lists every problem found in a configuration.
type ValidationError struct {
	File     string // the file, "" when built from the environment only
	Problems []Problem
}

// Error prints one problem per line, after a line naming the file.
func (e *ValidationError) Error() string {
	var b strings.Builder
	name := e.File
	if name == "" {
		name = "environment"
	}
	fmt.Fprintf(&b, "invalid config %s:", name)
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// problems collects Problems.
type problems []Problem

func (ps *problems) add(path, format string, args ...any) {
	*ps = append(*ps, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
}
