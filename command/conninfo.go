package command

import (
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// primaryConnInfo returns restore's primary_conninfo: --primary-conninfo
// (or HOARD_PRIMARY_CONNINFO), or the contents of --primary-conninfo-file
// (or HOARD_PRIMARY_CONNINFO_FILE) without one trailing line break, as
// config reads a HOARD_*_FILE secret; "" when none is given. A
// replication password on the command line is readable by every local
// user (ps, /proc/PID/cmdline) for as long as the restore runs: the
// environment (/proc/PID/environ) and a file are the owner's alone.
// An unreadable or empty file is a usage error, returned before the
// restore writes anything.
func primaryConnInfo(c *cli.Context) (string, error) {
	path := c.String("primary-conninfo-file")
	if path == "" {
		return c.String("primary-conninfo"), nil
	}
	if c.String("primary-conninfo") != "" {
		return "", usagef("give the connection string one way: --primary-conninfo (or HOARD_PRIMARY_CONNINFO), or --primary-conninfo-file (or HOARD_PRIMARY_CONNINFO_FILE)",
			"--primary-conninfo (or HOARD_PRIMARY_CONNINFO) and --primary-conninfo-file (or HOARD_PRIMARY_CONNINFO_FILE) are both set")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", usagef("name a file the user running hoard restore can read, holding the connection string on one line",
			"--primary-conninfo-file: %v", err)
	}
	// Mounted secrets and `echo x > file` end in one line break.
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return "", usagef("write the connection string into it, e.g. host=primary.example user=replicator passfile=/path/.pgpass",
			"--primary-conninfo-file %s is empty", path)
	}
	return s, nil
}
