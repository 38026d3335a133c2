package restore

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/hoardbackup/hoard/archive"
)

// ErrNoSpace is returned (wrapped) when a file system of the restore has
// less free space than the backup needs there.
var ErrNoSpace = errors.New("not enough free space")

// fsSpace is one file system a restore writes to: the restore's
// directories on it, the bytes free there for an unprivileged user when
// the restore began, and, when the backup records how its size is split
// between the data directory and the tablespaces, the part restored there.
type fsSpace struct {
	dirs []string
	free int64
	need int64
	// data is set when the target or a tablespace directory is on it,
	// not only the WAL directory, which takes no part of the backup.
	data bool
}

// restoreSpace is what a restore needs and has: the backup's decoded size
// (an estimate of its bytes on disk, which leaves out each file's last
// partial block) and the file systems of its directories. split is set
// when each file system's need is known.
type restoreSpace struct {
	need  int64
	split bool
	fs    []*fsSpace
	// wal is the file system of the restored cluster's pg_wal: the
	// WAL directory's (Options.WALDir), else the target's. The prefetch
	// spool is kept there (walRoom), and the restored cluster writes its
	// WAL there.
	wal *fsSpace
}

// planSpace measures the free space of the file systems of the target
// directory, the tablespace directories dirs (by tablespace name) and the
// WAL directory walDir ("": none), which all exist, for backup b with manifest m (chain, when not nil, the
// incremental chain it is rebuilt from, b last). When every backup read
// records its tablespaces' sizes, each file system gets the parts of the
// directories on it.
func planSpace(b *archive.BackupInfo, m *archive.Manifest, chain []*chainLevel, target string, dirs map[string]string, walDir string) (*restoreSpace, error) {
	sp := &restoreSpace{need: b.TotalSizePlain}
	parts, split := splitSize(b.TotalSizePlain, m, dirs)
	for _, l := range chain {
		// A file rebuilt from the chain is as large as in the full
		// backup: each part is the largest of the levels'.
		sp.need = max(sp.need, l.info.TotalSizePlain)
		lp, ok := splitSize(l.info.TotalSizePlain, l.ctrl.Manifest, dirs)
		split = split && ok
		for name, n := range lp {
			parts[name] = max(parts[name], n)
		}
	}
	sp.split = split
	byDev := map[uint64]*fsSpace{}
	add := func(dir string, need int64, data bool) (*fsSpace, error) {
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			return nil, fmt.Errorf("stat %s: %w", dir, err)
		}
		f := byDev[st.Dev]
		if f == nil {
			var fs unix.Statfs_t
			if err := unix.Statfs(dir, &fs); err != nil {
				return nil, fmt.Errorf("free space of %s: %w", dir, err)
			}
			f = &fsSpace{free: int64(fs.Bavail) * fs.Bsize}
			byDev[st.Dev] = f
			sp.fs = append(sp.fs, f)
		}
		f.dirs = append(f.dirs, dir)
		// Two directories on one file system add up.
		f.need += need
		f.data = f.data || data
		return f, nil
	}
	var err error
	if sp.wal, err = add(target, parts[""], true); err != nil {
		return nil, err
	}
	for _, name := range mapKeys(dirs) {
		if _, err := add(dirs[name], parts[name], true); err != nil {
			return nil, err
		}
	}
	if walDir != "" {
		// The backup puts no file there (pg_wal's contents are left out
		// of every backup): only the spool, which walRoom sizes, and the
		// WAL recovery writes, from its first segment fetched
		// (RECOVERYXLOG) on, which must fit.
		if sp.wal, err = add(walDir, int64(b.SegmentSize()), false); err != nil {
			return nil, err
		}
	}
	return sp, nil
}

// splitSize splits total, a backup's decoded size, between the data
// directory ("") and its tablespaces, by name, as its manifest m records
// (hoard's tablespace_sizes). ok is false when m does not record every
// tablespace's size (PGHoard's backups, older hoard's), or names one that
// is not among dirs, the restored backup's.
func splitSize(total int64, m *archive.Manifest, dirs map[string]string) (parts map[string]int64, ok bool) {
	parts = map[string]int64{"": total}
	if len(m.Tablespaces) == 0 {
		return parts, true
	}
	if m.Hoard == nil || m.Hoard.TablespaceSizes == nil {
		return parts, false
	}
	for name := range m.Tablespaces {
		n, ok := m.Hoard.TablespaceSizes[name]
		if _, mapped := dirs[name]; !ok || !mapped {
			return parts, false
		}
		parts[name] = n
		// Tar headers and padding are counted with the data
		// directory's part, which is then at least its share.
		parts[""] = max(parts[""]-n, 0)
	}
	return parts, true
}

// check refuses, with ErrNoSpace, a restore of backup name that cannot
// fit. When the backup records its tablespaces' sizes (sp.split), each
// file system must hold the parts restored there. Otherwise the backup's
// size must fit on its one file system, or on all its file systems
// together: a file system of several that may be too small is then only
// reported by warn. A file system only the WAL directory is on takes no
// part of the backup: its free space counts for none of it, and it must
// hold its own need, a segment, either way.
func (sp *restoreSpace) check(name string, warn func(*fsSpace)) error {
	if w := sp.wal; w != nil && !w.data && w.need > w.free {
		return fmt.Errorf("backup %s: the WAL directory %s needs at least %s, a WAL segment, and had %s free when the restore began; "+
			"free space there or choose another --wal-dir: %w", name, strings.Join(w.dirs, " and "), mib(w.need), mib(w.free), ErrNoSpace)
	}
	if sp.split {
		var short []string
		for _, f := range sp.fs {
			if f.need > f.free {
				short = append(short, sp.describe(f))
			}
		}
		if len(short) == 0 {
			return nil
		}
		return fmt.Errorf("backup %s does not fit: %s when the restore began; free space or map the tablespaces elsewhere, "+
			"or, if the estimate is wrong (a file system that compresses), run again with --skip-space-check: %w",
			name, strings.Join(short, "; "), ErrNoSpace)
	}
	var free int64
	var data []*fsSpace
	for _, f := range sp.fs {
		if f.data {
			data = append(data, f)
		}
	}
	for _, f := range data {
		free += f.free
		if len(data) > 1 && f.free < sp.need {
			warn(f)
		}
	}
	if sp.need <= free {
		return nil
	}
	return fmt.Errorf("backup %s does not fit: %s; free space or restore elsewhere, "+
		"or, if the estimate is wrong (a file system that compresses), run again with --skip-space-check: %w",
		name, sp, ErrNoSpace)
}

// String describes sp: the backup's size, or each file system's part of
// it, and each file system's free space, in MiB.
func (sp *restoreSpace) String() string {
	parts := make([]string, len(sp.fs))
	for i, f := range sp.fs {
		parts[i] = sp.describe(f)
	}
	if sp.split {
		return strings.Join(parts, ", ") + " when the restore began"
	}
	return fmt.Sprintf("it needs about %s, and when the restore began %s", mib(sp.need), strings.Join(parts, ", "))
}

// describe tells what file system f had free and, when the backup's size
// is split, what the restore needs there.
func (sp *restoreSpace) describe(f *fsSpace) string {
	dirs := strings.Join(f.dirs, " and ")
	s := fmt.Sprintf("%s had %s free", dirs, mib(f.free))
	if sp.split {
		verb, fs := "needs", "its"
		if len(f.dirs) > 1 {
			verb, fs = "need", "their"
		}
		s = fmt.Sprintf("%s %s about %s on %s file system and had %s free", dirs, verb, mib(f.need), fs, mib(f.free))
	}
	var st unix.Statfs_t
	if unix.Statfs(f.dirs[0], &st) == nil && st.Files > 0 && st.Ffree == 0 {
		s += " and has no free inodes left"
	}
	return s
}

// explainFull adds to err, when it is a full file system (ENOSPC), what
// the restore needed and what its file systems had free.
func explainFull(err error, sp *restoreSpace) error {
	if !errors.Is(err, unix.ENOSPC) || sp == nil {
		return err
	}
	return fmt.Errorf("%w; a file system is full: %s", err, sp)
}

// mib renders n bytes in MiB, rounded up.
func mib(n int64) string {
	return fmt.Sprintf("%d MiB", (n+1<<20-1)>>20)
}
