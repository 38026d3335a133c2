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
// directories on it and the bytes free there for an unprivileged user
// when the restore began.
type fsSpace struct {
	dirs []string
	free int64
}

// restoreSpace is what a restore needs and has: the backup's decoded size
// (an estimate of its bytes on disk, which leaves out each file's last
// partial block) and the file systems of its directories.
type restoreSpace struct {
	need int64
	fs   []*fsSpace
}

// planSpace measures the free space of the file systems of the target
// directory and the tablespace directories dirs, which all exist, for
// backup b (chain, when not nil, the incremental chain it is rebuilt
// from).
func planSpace(b *archive.BackupInfo, chain []*chainLevel, target string, dirs map[string]string) (*restoreSpace, error) {
	sp := &restoreSpace{need: b.TotalSizePlain}
	for _, l := range chain {
		// A file rebuilt from the chain is as large as in the full backup.
		sp.need = max(sp.need, l.info.TotalSizePlain)
	}
	byDev := map[uint64]*fsSpace{}
	for _, dir := range append([]string{target}, mapValues(dirs)...) {
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
	}
	return sp, nil
}

// check refuses, with ErrNoSpace, a restore of backup name that cannot
// fit: more than the free space of its one file system, or of all its
// file systems together. The manifest does not say how the backup's bytes
// are split between the data directory and the tablespaces, so a file
// system of several that may be too small is only reported by warn.
func (sp *restoreSpace) check(name string, warn func(*fsSpace)) error {
	var free int64
	for _, f := range sp.fs {
		free += f.free
		if len(sp.fs) > 1 && f.free < sp.need {
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

// String describes sp: the backup's size and each file system's free
// space, in MiB.
func (sp *restoreSpace) String() string {
	parts := make([]string, len(sp.fs))
	for i, f := range sp.fs {
		parts[i] = fmt.Sprintf("%s had %s free", strings.Join(f.dirs, " and "), mib(f.free))
		var st unix.Statfs_t
		if unix.Statfs(f.dirs[0], &st) == nil && st.Files > 0 && st.Ffree == 0 {
			parts[i] += " and has no free inodes left"
		}
	}
	return fmt.Sprintf("it needs about %s, and when the restore began %s", mib(sp.need), strings.Join(parts, ", "))
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
