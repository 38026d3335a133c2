package command

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/hoardbackup/hoard/config"
	"github.com/hoardbackup/hoard/restore"
	"github.com/hoardbackup/hoard/storage"
)

// hoard as root. PostgreSQL refuses to run as root, and to start on a data
// directory that is not its own (checkDataDir in miscinit.c). Files hoard
// writes as root (the daemon's spool, state file and WAL, a restored data
// directory) are root's: the service user (postgres) cannot use them later.
// As pgBackRest does, the daemon refuses to run as root unless told
// (--allow-root); a restore as root is allowed, with a warning, and its
// summary says how to give the files to PostgreSQL's user.

// allowRootFlag lets a command that refuses root run as root anyway.
var allowRootFlag = &cli.BoolFlag{
	Name:    "allow-root",
	Usage:   "run even as root (the files it writes are then root's, which PostgreSQL's user cannot use)",
	EnvVars: []string{"HOARD_ALLOW_ROOT"},
}

// refuseRoot is the usage error of command cmd run as root (uid 0)
// without --allow-root; nil otherwise.
func refuseRoot(c *cli.Context, uid int, cmd string) error {
	if uid != 0 || c.Bool(allowRootFlag.Name) {
		return nil
	}
	return usagef("run it as the user PostgreSQL runs as, e.g. sudo -u postgres hoard "+cmd+" ...; "+
		"if you must run it as root, pass --allow-root and give its files to that user (chown -R postgres:postgres) before running it as them",
		"hoard %s refuses to run as root: the files it writes (spool, state file, WAL, a local store) would be root's, and PostgreSQL's user could not use them", cmd)
}

// warnRoot logs that command cmd runs as root (uid 0) and what that
// leaves behind.
func warnRoot(log zerolog.Logger, uid int, cmd string) {
	if uid != 0 {
		return
	}
	log.Warn().Str("fix", "sudo -u postgres hoard "+cmd+" ..., or chown -R postgres:postgres the files it writes").
		Msg("running as root: the files written are root's, and PostgreSQL refuses to start on a data directory it does not own")
}

// rootOwned returns those of dirs that root owns.
func rootOwned(dirs []string) []string {
	var out []string
	for _, d := range dirs {
		if fi, err := os.Stat(d); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == 0 {
				out = append(out, d)
			}
		}
	}
	return out
}

// ownerName names the user owning path: its login name, else its uid;
// "" when it cannot be read.
func ownerName(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	id := strconv.FormatUint(uint64(st.Uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return u.Username
	}
	return id
}

// refuseRootStore is the usage error of command cmd run as root (uid 0),
// without --allow-root, on a local store whose directory (or, before it
// exists, its nearest existing parent) another user owns: the folders and
// objects cmd creates there (a site's, in a new store) would be root's,
// and that user, PostgreSQL's, which runs wal-push and the daemon, could
// then store nothing in them. A store root owns (a container run as root)
// is not refused, nor any other storage type.
func refuseRootStore(c *cli.Context, uid int, cmd string, o config.ObjectStorage) error {
	if uid != 0 || c.Bool(allowRootFlag.Name) || o.Type != storage.TypeLocal || o.Directory == "" {
		return nil
	}
	dir := o.Directory
	for {
		if _, err := os.Stat(dir); err == nil || filepath.Dir(dir) == dir {
			break
		}
		dir = filepath.Dir(dir)
	}
	owner := ownerName(dir)
	if owner == "" || owner == "root" || owner == "0" {
		return nil
	}
	q := restore.ShellQuote(owner)
	return usagef(fmt.Sprintf("run it as %s: sudo -u %s hoard %s ...; or pass --allow-root and chown -R %s %s afterwards",
		owner, q, cmd, q, restore.ShellQuote(o.Directory)),
		"hoard %s as root would create root's folders and objects in the local store %s, which %s owns (%s): wal-push and the daemon, running as %s, could then store nothing there",
		cmd, o.Directory, owner, dir, owner)
}
