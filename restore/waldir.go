package restore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrBadWALDir is returned (wrapped) when Options.WALDir cannot be the
// restored cluster's WAL directory: relative, not a directory, or
// overlapping the target or a tablespace directory. Nothing is written.
var ErrBadWALDir = errors.New("bad WAL directory")

// validateWALDir checks o.WALDir before anything is read or written: an
// absolute path (as pg_basebackup --waldir and initdb --waldir want, and
// as the pg_wal link holds it), neither the target nor inside it nor
// holding it, and a directory when it exists. It is cleaned in place.
func (o *Options) validateWALDir() error {
	if o.WALDir == "" {
		return nil
	}
	if !filepath.IsAbs(o.WALDir) {
		return fmt.Errorf("WAL directory %s must be an absolute path: %w", o.WALDir, ErrBadWALDir)
	}
	o.WALDir = filepath.Clean(o.WALDir)
	if within(o.WALDir, o.TargetDir) || within(o.TargetDir, o.WALDir) {
		return fmt.Errorf("WAL directory %s overlaps the target directory %s: %w", o.WALDir, o.TargetDir, ErrBadWALDir)
	}
	fi, err := os.Stat(o.WALDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("WAL directory: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("WAL directory %s is not a directory: %w", o.WALDir, ErrBadWALDir)
	}
	return nil
}

// checkWALDirShared refuses a WAL directory that overlaps one of the
// tablespace directories dirs (by name), planted the ones restored to
// their path in the backup.
func (o *Options) checkWALDirShared(dirs map[string]string, planted map[string]bool) error {
	if o.WALDir == "" {
		return nil
	}
	for _, name := range mapKeys(dirs) {
		if d := dirs[name]; within(d, o.WALDir) || within(o.WALDir, d) {
			return fmt.Errorf("WAL directory %s overlaps the directory %s of tablespace %q: %w", o.WALDir, targetDir{d, planted[name]}, name, ErrBadWALDir)
		}
	}
	return nil
}

// linkWAL makes the target's pg_wal a symbolic link to o.WALDir, which
// exists (prepareDir), through an os.Root of the target. A pg_wal left by
// a restore killed before it wrote a file of the backup, which
// checkEmptyTarget let through, is the same link, kept, or a directory
// holding at most the prefetch spool (a run without the WAL directory),
// removed first. The link reaches the disk with the target's final
// syncfs, before which PostgreSQL has no pg_control to start on.
func (o *Options) linkWAL() error {
	root, err := os.OpenRoot(o.TargetDir)
	if err != nil {
		return fmt.Errorf("open %s: %w", o.TargetDir, err)
	}
	defer root.Close()
	if link, err := root.Readlink("pg_wal"); err == nil && link == o.WALDir {
		return nil
	}
	if err := root.RemoveAll("pg_wal"); err != nil {
		return fmt.Errorf("remove %s: %w", filepath.Join(o.TargetDir, "pg_wal"), err)
	}
	if err := root.Symlink(o.WALDir, "pg_wal"); err != nil {
		return fmt.Errorf("link %s to the WAL directory: %w", filepath.Join(o.TargetDir, "pg_wal"), err)
	}
	return nil
}

// walRel returns, for directory rel of tablespace spc ("": the data
// directory), its path under the WAL directory when it is pg_wal ("."),
// or inside it, and the extractor has one (Options.WALDir).
func (e *extractor) walRel(spc, rel string) (string, bool) {
	if e.wal == nil || spc != "" {
		return "", false
	}
	if rel == "pg_wal" {
		return ".", true
	}
	sub, ok := strings.CutPrefix(rel, "pg_wal/")
	return sub, ok
}

// mkdir creates directory rel of tablespace spc ("": the data directory)
// and its parents, mode 0700, pg_wal's in the WAL directory when there is
// one (walRel): the target's pg_wal is then the link to it, which the
// target's root does not follow. A regular file is never written there
// from the backup (BASE_BACKUP and local-tar leave pg_wal's contents
// out): one would fail, as the target's root refuses the link.
func (e *extractor) mkdir(spc, rel string) (*os.Root, string, error) {
	if sub, ok := e.walRel(spc, rel); ok {
		if sub == "." {
			return e.wal, sub, nil
		}
		return e.wal, sub, e.wal.MkdirAll(sub, 0o700)
	}
	return e.roots[spc], rel, e.mkdirAll(spc, rel)
}
