package command

import (
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

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
// restore writes anything. A file that users other than its owner can read
// is a warning (others), not a refusal: a restore is often the recovery
// from a disaster, the file is read once and its contents land in a
// postgresql.auto.conf of mode 0600, and a Kubernetes Secret's files are
// 0644 unless its volume sets defaultMode.
func primaryConnInfo(c *cli.Context) (string, error) {
	path := c.String("primary-conninfo-file")
	if path == "" {
		return c.String("primary-conninfo"), nil
	}
	if c.String("primary-conninfo") != "" {
		return "", usagef("give the connection string one way: --primary-conninfo (or HOARD_PRIMARY_CONNINFO), or --primary-conninfo-file (or HOARD_PRIMARY_CONNINFO_FILE)",
			"--primary-conninfo (or HOARD_PRIMARY_CONNINFO) and --primary-conninfo-file (or HOARD_PRIMARY_CONNINFO_FILE) are both set")
	}
	b, fi, err := readFileInfo(path)
	if err != nil {
		return "", usagef("name a file the user running hoard restore can read, holding the connection string on one line",
			"--primary-conninfo-file: %v", err)
	}
	if others(fi) {
		log := logger(c)
		log.Warn().Str("file", path).Str("mode", fmt.Sprintf("%04o", fi.Mode().Perm())).
			Str("hint", "chmod 600 the file (or 640, owned by root, for a group that must read it; a Kubernetes Secret: defaultMode 0440 with fsGroup)").
			Msg("--primary-conninfo-file can be read by users other than its owner, as libpq refuses for a .pgpass: it may hold the replication password")
	}
	// Mounted secrets and `echo x > file` end in one line break.
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return "", usagef("write the connection string into it, e.g. host=primary.example user=replicator passfile=/path/.pgpass",
			"--primary-conninfo-file %s is empty", path)
	}
	return s, nil
}

// readFileInfo reads the file at path, through its symbolic links, and
// returns it with the FileInfo of the very file read (fstat of the open
// descriptor: a link replaced in between cannot show another's mode).
func readFileInfo(path string) ([]byte, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, nil, err
	}
	return b, fi, nil
}

// others reports whether fi, a file holding a secret, gives users other
// than its owner access, by libpq's rules for a private key file
// (be-secure-common.c, fe-secure-openssl.c): none to group or world, except
// that a file owned by root may be group-readable (u=rw,g=r), as a
// Kubernetes Secret volume with fsGroup mounts its files (root, the pod's
// group, defaultMode 0440). libpq refuses a .pgpass with any group or world
// access.
func others(fi os.FileInfo) bool {
	perm := fi.Mode().Perm()
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == 0 {
		return perm&0o037 != 0 // group write or execute, or anything for others
	}
	return perm&0o077 != 0
}
