package archive

import (
	"path"
	"strings"
)

// leftOutContents are the top-level PGDATA directories whose contents a
// backup leaves out: those PGHoard leaves out (pghoard-format.md c.4),
// which the control tar recreates empty (ControlEmptyDirs), and those
// PostgreSQL's basebackup.c leaves out (excludeDirContents: removed,
// zeroed or rebuilt at server start). The server omits most of these
// itself, but not pg_log, and pg_tblspc holds the tablespace links the
// restore makes itself.
var leftOutContents = map[string]bool{
	"pg_dynshmem": true, "pg_log": true, "pg_replslot": true, "pg_snapshot": true,
	"pg_stat_tmp": true, "pg_tblspc": true, "pg_wal": true, "pg_xlog": true,
	"pg_notify": true, "pg_serial": true, "pg_snapshots": true, "pg_subtrans": true,
}

// ContentsLeftOut reports whether a backup leaves out the contents of
// dir, a top-level directory of PGDATA (the directory itself is kept).
func ContentsLeftOut(dir string) bool {
	return leftOutContents[dir]
}

// LeftOut reports whether a backup leaves out file rel, a clean path
// relative to the data directory (main) or to a tablespace's directory
// (!main). basebackup applies it to every member the server sends or the
// data directory holds; restore uses it so that a file PostgreSQL's
// backup_manifest lists but the backup left out on purpose does not count
// as missing. The control files (global/pg_control, backup_label,
// tablespace_map) are the caller's to take first.
//
// The rules are PGHoard's (pghoard-format.md c.4 "Files left out"): at the
// top of PGDATA postmaster.pid and postmaster.opts; at any depth a name
// ending in .old, .tmp or ~, starting with .s. (sockets and their locks)
// or pgsql_tmp, and any other pg_control. basebackup.c's excludeFiles add
// a stray backup_manifest and the relation cache files pg_internal.init*,
// rebuilt at startup. A top-level backup_label.old is kept (see below).
// The server itself sends files such as postgresql.conf.old or
// pg_hba.conf~ and lists them in its backup_manifest.
func LeftOut(rel string, main bool) bool {
	if main {
		top, rest, nested := strings.Cut(rel, "/")
		if nested && leftOutContents[top] && rest != "" {
			return true
		}
		if rel == "backup_label.old" {
			// Left by the startup of every cluster made from a backup
			// (a standby), and listed in BASE_BACKUP's manifest: the
			// .old rule below would make pg_verifybackup report it
			// missing from every restore of a standby's backup.
			return false
		}
		if !nested && (top == "postmaster.pid" || top == "postmaster.opts" || top == "backup_manifest") {
			// backup_manifest: one left by the backup this server was
			// restored from describes that backup, not this one.
			return true
		}
	}
	for _, part := range strings.Split(rel, "/") {
		if strings.HasPrefix(part, "pgsql_tmp") {
			return true
		}
	}
	base := path.Base(rel)
	switch {
	case base == "pg_control",
		strings.HasSuffix(base, ".old"),
		strings.HasSuffix(base, ".tmp"),
		strings.HasSuffix(base, "~"),
		strings.HasPrefix(base, ".s."),
		strings.HasPrefix(base, "pg_internal.init"):
		return true
	}
	return false
}
