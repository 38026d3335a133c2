package basebackup

import (
	"archive/tar"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hoardbackup/hoard/archive"
)

// root is a directory tree a local backup reads: the data directory or one
// tablespace.
type root struct {
	dir    string // local path
	prefix string // member names in the chunks: "pgdata/" or "tablespaces/<name>/"
	// manifest is the prefix of the files' paths in backup_manifest,
	// relative to the data directory: "" or "pg_tblspc/<oid>/".
	manifest string
	main     bool // the data directory
	// only, when set, is the one directory of the root that is read: a
	// tablespace's directory of this server's version
	// (TABLESPACE_VERSION_DIRECTORY, PG_<major>_<catalog version>);
	// another version's, left by pg_upgrade, is not this cluster's.
	only string
	// fd is dir opened (open), once: every path of the root is opened
	// beneath it (openBeneath).
	fd *os.File
}

// entry is one member of a local backup, found by scan.
//
// A backup keeps one for each member until its control object is written, so
// the fields are ordered to leave no padding between them.
type entry struct {
	root  *root
	rel   string // path relative to the root; "" for the root itself
	size  int64  // at scan time: the file is read up to this size
	mtime time.Time
	link  string // a symbolic link's target
	mode  fs.FileMode
	uid   uint32
	gid   uint32
	// segno is the relation segment number the file's block numbers
	// start after (check).
	segno uint32
	// crc is the CRC-32C of the data a chunk holds of a regular file
	// (backup_manifest's), set with sent by the one worker that writes
	// the file (each regular file is in one chunk's plan only).
	crc  uint32
	typ  byte // tar.TypeDir, tar.TypeReg or tar.TypeSymlink
	sent bool // a regular file written into its chunk (not gone since the scan)
	// check: verify the file's data page checksums.
	check bool
}

// name returns the entry's member name in the chunks.
func (e *entry) name() string { return e.root.prefix + e.rel }

// path returns the entry's local path.
func (e *entry) path() string { return e.root.path(e.rel) }

// header returns the entry's tar header.
func (e *entry) header() *tar.Header {
	h := &tar.Header{
		Name:    e.name(),
		Mode:    int64(e.mode.Perm()),
		Uid:     int(e.uid),
		Gid:     int(e.gid),
		ModTime: e.mtime,
	}
	switch e.typ {
	case tar.TypeDir:
		h.Typeflag = tar.TypeDir
		h.Name += "/"
	case tar.TypeReg:
		h.Typeflag = tar.TypeReg
		h.Size = e.size
	case tar.TypeSymlink:
		h.Typeflag = tar.TypeSymlink
		h.Linkname = e.link
	}
	return h
}

// scanner walks the data directory and the tablespaces, keeping what a
// backup holds.
type scanner struct {
	checksums bool // the cluster has data checksums: mark files to verify
	entries   []entry
	// skipped counts special files (sockets, devices) left out.
	skipped []string
	// beforeDir, when set, runs before the directory rel of r is
	// listed (tests change the tree there).
	beforeDir func(r *root, rel string)
}

// scan lists the roots' members in the order a chunk tar holds them:
// each directory before its contents, names sorted. A root's own
// directory gets no entry ("pgdata/" and "tablespaces/<name>/" are made
// by the restore), as in the chunks BASE_BACKUP's streams give.
//
// A file or directory that disappears while the scan runs is left out:
// the WAL replayed after the restore recreates what the backup needs of
// it. Any other error reading the tree fails the scan.
func (s *scanner) scan(roots []*root) error {
	for _, r := range roots {
		// A root named through a symbolic link (a data directory or a
		// tablespace location linked to another disk) is followed, as
		// PostgreSQL follows it; links inside a root never are.
		if err := r.open(); err != nil {
			return fmt.Errorf("scan %s: %w", r.dir, err)
		}
		if r.only == "" {
			if err := s.dir(r, ""); err != nil {
				return err
			}
			continue
		}
		st, err := lstatAt(r.fd, r.only)
		if errors.Is(err, fs.ErrNotExist) {
			continue // dropped meanwhile, as basebackup.c allows
		}
		if err != nil {
			return fmt.Errorf("scan: %w", err)
		}
		s.add(r, r.only, st, "")
		if err := s.dir(r, r.only); err != nil {
			return err
		}
	}
	return nil
}

// dir scans the directory rel of r (already added).
func (s *scanner) dir(r *root, rel string) error {
	if s.beforeDir != nil {
		s.beforeDir(r, rel)
	}
	// Opened beneath the root, not by its path: a directory replaced
	// by a link since its lstat is not listed (openBeneath).
	full := r.path(rel)
	d, err := r.openDir(rel)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && rel != "" {
			return nil
		}
		return fmt.Errorf("scan: %w", beneathError("open", full, err))
	}
	defer d.Close()
	list, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("scan %s: %w", full, err)
	}
	slices.Sort(list)
	names := make(map[string]bool, len(list))
	for _, name := range list {
		names[name] = true
	}
	dbDir := isDatabaseDir(r, rel)
	for _, name := range list {
		crel := name
		if rel != "" {
			crel = rel + "/" + name
		}
		if s.excluded(r, crel) {
			continue
		}
		if dbDir && (isTempRelation(name) || isUnloggedFork(name, names)) {
			continue
		}
		st, err := lstatAt(d, name)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return fmt.Errorf("scan: %w", err)
		}
		link := ""
		switch {
		case st.Mode().IsRegular(), st.IsDir():
		case st.Mode()&fs.ModeSymlink != 0:
			if link, err = readlinkAt(d, name); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return fmt.Errorf("scan: %w", err)
			}
			if r.main && rel == "" && archive.ContentsLeftOut(name) {
				// pg_wal (or pg_log...) linked elsewhere: kept as
				// an empty directory, as basebackup.c does.
				s.add(r, crel, st, "")
				s.entries[len(s.entries)-1].typ = tar.TypeDir
				s.entries[len(s.entries)-1].mode = fs.ModeDir | 0o700
				continue
			}
		default:
			s.skipped = append(s.skipped, filepath.Join(full, name))
			continue
		}
		s.add(r, crel, st, link)
		if st.IsDir() && !(r.main && rel == "" && archive.ContentsLeftOut(name)) {
			if err := s.dir(r, crel); err != nil {
				return err
			}
		}
	}
	return nil
}

// excluded applies the member name rules local and streamed backups share
// (place), to crel, a path relative to r. backup_label and
// tablespace_map come from pg_backup_stop and global/pg_control is read
// last, so none of them is taken from the directory.
func (s *scanner) excluded(r *root, crel string) bool {
	return place(crel, r.main) != placeChunk
}

// add appends a member.
func (s *scanner) add(r *root, rel string, st fs.FileInfo, link string) {
	e := entry{root: r, rel: rel, mode: st.Mode(), mtime: st.ModTime(), link: link}
	switch sys := st.Sys().(type) {
	case *syscall.Stat_t:
		e.uid, e.gid = sys.Uid, sys.Gid
	case *unix.Stat_t:
		e.uid, e.gid = sys.Uid, sys.Gid
	}
	switch {
	case st.IsDir():
		e.typ = tar.TypeDir
	case st.Mode().IsRegular():
		e.typ = tar.TypeReg
		e.size = st.Size()
		if s.checksums {
			e.segno, e.check = checksummed(rel, !r.main)
		}
	default:
		e.typ = tar.TypeSymlink
	}
	s.entries = append(s.entries, e)
}

// isDatabaseDir reports whether rel, a directory of r, holds a database's
// relation files: base/<oid> in the data directory, <version dir>/<oid>
// in a tablespace (basebackup.c's isDbDir).
func isDatabaseDir(r *root, rel string) bool {
	parent, oid := path.Split(rel)
	if oid == "" || strings.Trim(oid, "0123456789") != "" {
		return false
	}
	parent = strings.TrimSuffix(parent, "/")
	if r.main {
		return parent == "base"
	}
	return strings.HasPrefix(parent, "PG_") && !strings.Contains(parent, "/")
}

// forks are the relation fork names after a relation file's "_".
var forks = map[string]bool{"fsm": true, "vm": true, "init": true}

// relationFile parses a database directory's file name of a relation
// that is not temporary: <relfilenode>[_<fork>][.<segment>]. It returns
// the relfilenode and the fork ("" for the main fork).
func relationFile(name string) (node, fork string, ok bool) {
	base, seg, hasSeg := strings.Cut(name, ".")
	if hasSeg && (seg == "" || strings.Trim(seg, "0123456789") != "") {
		return "", "", false
	}
	node, fork, hasFork := strings.Cut(base, "_")
	if node == "" || strings.Trim(node, "0123456789") != "" || (hasFork && !forks[fork]) {
		return "", "", false
	}
	return node, fork, true
}

// isUnloggedFork reports whether name, in a database directory listing
// names, is a fork of an unlogged relation other than its init fork: such
// files are reset from the init fork at startup, so basebackup.c leaves
// them out.
func isUnloggedFork(name string, names map[string]bool) bool {
	node, fork, ok := relationFile(name)
	return ok && fork != "init" && names[node+"_init"]
}

// isTempRelation reports whether name is a temporary relation's file,
// t<backend>_<relfilenode>[_<fork>][.<segment>] (looks_like_temp_rel_name):
// temporary relations die with their session.
func isTempRelation(name string) bool {
	rest, ok := strings.CutPrefix(name, "t")
	if !ok {
		return false
	}
	backend, rel, ok := strings.Cut(rest, "_")
	if !ok || backend == "" || strings.Trim(backend, "0123456789") != "" {
		return false
	}
	_, _, ok = relationFile(rel)
	return ok
}

// chunkPlan is the members of one chunk, decided before any is read.
type chunkPlan struct {
	n       int   // chunk number, from 1
	entries []int // indexes into the scan's entries, parents first
	size    int64 // estimated tar size
}

// maxSize bounds the chunk's tar: its estimated size (headers, data up to
// the scanned sizes, which a worker never exceeds), plus room for the PAX
// records of long names, which the estimate leaves out, and the trailer.
func (p chunkPlan) maxSize() int64 {
	return p.size + int64(len(p.entries))*paxAllowance + tarTrailerSize
}

// paxAllowance is room per member for PAX records (a long name or link
// target: PostgreSQL's own paths are far shorter).
const paxAllowance = 2 << 10

// split cuts the scanned members into chunks by PGHoard's rule: a chunk is
// closed before a member that would take it past limit, once it is at
// least a fifth full. A chunk starts with the directory entries its first
// members are in, so that it extracts on its own. Sizes are the scan's; a
// file that grows is read only up to its scanned size.
func split(entries []entry, limit int64) []chunkPlan {
	var plans []chunkPlan
	var cur *chunkPlan
	var open []int // the directories the walk is inside, outermost first
	for i := range entries {
		e := &entries[i]
		// Leave the directories the walk has left: e is in the last
		// directory of open that is its parent.
		for len(open) > 0 && !within(entries[open[len(open)-1]], *e) {
			open = open[:len(open)-1]
		}
		need := tarSize(e.size)
		if cur != nil && cur.size+need+tarTrailerSize > limit && cur.size >= limit/minFillDivisor {
			cur = nil
		}
		if cur == nil {
			plans = append(plans, chunkPlan{n: len(plans) + 1})
			cur = &plans[len(plans)-1]
			for _, d := range open {
				cur.entries = append(cur.entries, d)
				cur.size += tarSize(0)
			}
		}
		cur.entries = append(cur.entries, i)
		cur.size += need
		if e.typ == tar.TypeDir {
			open = append(open, i)
		}
	}
	return plans
}

// within reports whether e is inside the directory d (same root).
func within(d, e entry) bool {
	if d.root != e.root {
		return false
	}
	if d.rel == "" {
		return true
	}
	return strings.HasPrefix(e.rel, d.rel+"/")
}

// manifestPath returns a file's path in backup_manifest: relative to the
// data directory, tablespace files under pg_tblspc/<oid>/.
func (e *entry) manifestPath() string { return e.root.manifest + e.rel }
