package command

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/hoardbackup/hoard/config"
)

// configLookup says where hoard looks for its configuration file, for
// the errors about one it could not use.
const configLookup = "hoard reads the file that --config names, else HOARD_CONFIG, else PGHOARD_CONFIG; " +
	"there is no default path (with none of them, the HOARD_* variables alone build the configuration)"

// configGiven says how path, the configuration file in use, was given:
// "--config PATH", or the variable that holds it when one does.
func configGiven(path string, getenv func(string) string) string {
	for _, v := range []string{"HOARD_CONFIG", "PGHOARD_CONFIG"} {
		if getenv(v) == path {
			return v + "=" + path
		}
	}
	return "--config " + path
}

// targetLookup is configLookup for archive-copy's --to-config.
const targetLookup = "archive-copy reads the target's configuration from the file --to-config names alone (no HOARD_* variables)"

// configFileError returns the usage error for err, config.Load's, when
// it is about the file path itself (missing, not readable by this user,
// a directory, empty): it names the file, its absolute path and given
// (how it was given: configGiven, or --to-config), what is wrong and what
// to do, with lookup (configLookup, or targetLookup) saying where such a
// file comes from. It returns nil for any other error.
func configFileError(path, given, lookup string, err error) error {
	abs := path
	if !filepath.IsAbs(path) {
		if cwd, cerr := os.Getwd(); cerr == nil {
			abs = filepath.Join(cwd, path)
			given += ", relative to the working directory " + cwd
		}
	}
	name := fmt.Sprintf("configuration file %s (%s)", abs, given)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return usagef("check the path; "+lookup, "%s does not exist", name)
	case errors.Is(err, syscall.ENOTDIR):
		return usagef("check the path; "+lookup, "%s does not exist: a name on its path is a file, not a directory", name)
	case errors.Is(err, fs.ErrPermission):
		return usagef("let the user hoard runs as read it: chown it to that user, or chgrp it to that user's group "+
			"and chmod 0640 (the file holds secrets: keep other users out), and let that user into every directory "+
			"above it; or run hoard as a user that can read it",
			"%s: permission denied: the user hoard runs as (uid %d) cannot read it", name, os.Geteuid())
	case errors.Is(err, syscall.EISDIR):
		hint := "give the path of the JSON file, not of its directory"
		if json := jsonFiles(abs); len(json) > 0 {
			hint += fmt.Sprintf(" (it holds %s)", strings.Join(json, ", "))
		}
		return usagef(hint, "%s is a directory", name)
	case errors.Is(err, config.ErrEmptyFile):
		hint := "write PGHoard's JSON configuration into it (docs/configuration.md), or restore it from a copy " +
			"if a write cut it short"
		if lookup == configLookup {
			hint += "; to build the configuration from the HOARD_* variables alone, give no file " +
				"(no --config, HOARD_CONFIG or PGHOARD_CONFIG)"
		}
		return usagef(hint, "%s is empty", name)
	}
	return nil
}

// jsonFiles returns the names of the first .json files in dir, for the
// hint of a directory given as the configuration file.
func jsonFiles(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") && !e.IsDir() {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	if len(out) > 3 {
		out = out[:3]
	}
	return out
}
