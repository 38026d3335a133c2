package basebackup

import (
	"path"
	"strings"
)

// Where a member of the server's tar streams goes.
type placement int

const (
	placeChunk   placement = iota // into a data chunk
	placeControl                  // into the control tar (pg_control, backup_label, tablespace_map)
	placeSkip                     // nowhere
)

// excludedContents are the top-level PGDATA directories whose contents are
// left out of a backup: those PGHoard leaves out (pghoard-format.md c.4),
// which the control tar recreates empty (archive.ControlEmptyDirs), and
// those PostgreSQL's basebackup.c leaves out (excludeDirContents: removed,
// zeroed or rebuilt at server start). The server omits most of these
// itself, but not pg_log, and pg_tblspc holds the tablespace links the
// restore makes itself.
var excludedContents = map[string]bool{
	"pg_dynshmem": true, "pg_log": true, "pg_replslot": true, "pg_snapshot": true,
	"pg_stat_tmp": true, "pg_tblspc": true, "pg_wal": true, "pg_xlog": true,
	"pg_notify": true, "pg_serial": true, "pg_snapshots": true, "pg_subtrans": true,
}

// controlFiles are the top-level PGDATA files that go into the control tar
// instead of a chunk, by their name in the server's stream.
var controlFiles = map[string]bool{
	"global/pg_control": true,
	"backup_label":      true,
	"tablespace_map":    true,
}

// place decides where a member of a server tar goes. rel is its cleaned
// path relative to the archive's root; main is true for the main data
// directory's archive, false for a tablespace's.
//
// The rules are PGHoard's (pghoard-format.md c.4 "Files left out"): at the
// top of PGDATA postmaster.pid and postmaster.opts; at any depth a name
// ending in .old, .tmp or ~, starting with .s. (sockets and their locks)
// or pgsql_tmp, and any other pg_control. basebackup.c's excludeFiles add
// a stray backup_manifest and the relation cache files pg_internal.init*,
// rebuilt at startup. A top-level backup_label.old is kept (see below).
func place(rel string, main bool) placement {
	if main {
		if controlFiles[rel] {
			return placeControl
		}
		top, rest, nested := strings.Cut(rel, "/")
		if nested && excludedContents[top] && rest != "" {
			return placeSkip
		}
		if rel == "backup_label.old" {
			// Left by the startup of every cluster made from a backup
			// (a standby), and listed in BASE_BACKUP's manifest: the
			// .old rule below would make pg_verifybackup report it
			// missing from every restore of a standby's backup.
			return placeChunk
		}
		if !nested && (top == "postmaster.pid" || top == "postmaster.opts" || top == "backup_manifest") {
			// backup_manifest: one left by the backup this server was
			// restored from describes that backup, not this one.
			return placeSkip
		}
	}
	for _, part := range strings.Split(rel, "/") {
		if strings.HasPrefix(part, "pgsql_tmp") {
			return placeSkip
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
		return placeSkip
	}
	return placeChunk
}

// cleanName turns a member name of a server tar into a clean relative
// path: no "./" prefix, no trailing slash; "" for the archive's root. ok
// is false for a name that would escape the archive's root.
func cleanName(name string) (rel string, ok bool) {
	if strings.HasPrefix(name, "/") {
		return "", false
	}
	c := path.Clean(name)
	if c == "." {
		return "", true
	}
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", false
	}
	return c, true
}
