package restore

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/hoardbackup/hoard/archive"
)

// ErrUnsafePath is returned (wrapped) for a tar member that would land
// outside the directories being restored: an absolute name, "..", a name
// outside pgdata/ and tablespaces/, or a path through a symlink the backup
// itself holds.
var ErrUnsafePath = errors.New("unsafe path in backup")

// copyBufferSize is each worker's file write buffer: large writes keep the
// restore near the disk's sequential speed.
const copyBufferSize = 1 << 20

// controlOnly are the members only the control tar may write. PGHoard's
// chunks never hold them; a chunk that did could make a failed restore
// look startable, so they are skipped there.
var controlOnly = map[string]bool{
	archive.ControlPGControl:     true,
	archive.ControlBackupLabel:   true,
	archive.ControlTablespaceMap: true,
}

// controlDir holds the directories the control tar creates.
var controlDir = func() map[string]bool {
	m := map[string]bool{}
	for _, d := range archive.ControlEmptyDirs {
		m[d] = true
	}
	return m
}()

// extractor writes tar members into a data directory and its tablespace
// directories. Several goroutines may use one extractor, each with its own
// buffer.
//
// Symlink members are not created as they arrive but recorded, and made by
// finishLinks once every chunk is written: chunks extract in parallel, so
// a link made early could redirect another chunk's writes outside the
// target. Members whose path runs through a recorded link are refused.
type extractor struct {
	pgdata      string
	tablespaces map[string]string // tablespace name → directory

	mu    sync.Mutex
	links map[string]string // symlink path (cleaned, absolute) → link target
}

func newExtractor(pgdata string, tablespaces map[string]string) *extractor {
	return &extractor{pgdata: filepath.Clean(pgdata), tablespaces: tablespaces, links: map[string]string{}}
}

// target maps a member name to its path on disk. skip is true for the
// manifest and for the pgdata/ and tablespaces/<name>/ roots themselves.
func (e *extractor) target(name string) (dst string, skip bool, err error) {
	if name == "" || strings.HasPrefix(name, "/") {
		return "", false, fmt.Errorf("member %q: absolute or empty name: %w", name, ErrUnsafePath)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", false, fmt.Errorf("member %q: %w", name, ErrUnsafePath)
		}
	}
	clean := path.Clean(name)
	if clean == archive.ManifestName || clean == "." {
		return "", true, nil
	}
	var root, rest string
	switch {
	case clean == "pgdata" || clean == "tablespaces":
		return "", true, nil
	case strings.HasPrefix(clean, "pgdata/"):
		root, rest = e.pgdata, strings.TrimPrefix(clean, "pgdata/")
	case strings.HasPrefix(clean, "tablespaces/"):
		spc, r, _ := strings.Cut(strings.TrimPrefix(clean, "tablespaces/"), "/")
		dir, ok := e.tablespaces[spc]
		if !ok {
			return "", false, fmt.Errorf("member %q: tablespace %q is not in the backup's manifest: %w", name, spc, ErrUnsafePath)
		}
		if r == "" {
			return "", true, nil
		}
		root, rest = dir, r
	default:
		return "", false, fmt.Errorf("member %q: not under pgdata/ or tablespaces/: %w", name, ErrUnsafePath)
	}
	dst = filepath.Join(root, filepath.FromSlash(rest))
	if err := e.checkNoLink(root, dst); err != nil {
		return "", false, fmt.Errorf("member %q: %w", name, err)
	}
	return dst, false, nil
}

// checkNoLink refuses a path whose parent is a symlink recorded from an
// earlier member: writing through it could escape the target.
func (e *extractor) checkNoLink(root, dst string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.links) == 0 {
		return nil
	}
	for p := filepath.Dir(dst); len(p) > len(root); p = filepath.Dir(p) {
		if _, ok := e.links[p]; ok {
			return fmt.Errorf("path goes through symlink %s: %w", p, ErrUnsafePath)
		}
	}
	return nil
}

// extract reads the chunk tar stream r to its end and writes its members.
// buf is the caller's copy buffer.
func (e *extractor) extract(r io.Reader, buf []byte) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if controlOnly[path.Clean(h.Name)] {
			continue
		}
		if err := e.member(tr, h, buf); err != nil {
			return err
		}
	}
}

// finishLinks creates the recorded symlinks. A directory or file already at
// a link's path means a member was written where the link goes: refused.
func (e *extractor) finishLinks() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, dst := range mapKeys(e.links) {
		if _, err := os.Lstat(dst); err == nil {
			return fmt.Errorf("symlink %s: a member was written at its path: %w", dst, ErrUnsafePath)
		}
		if err := mkParent(dst); err != nil {
			return err
		}
		if err := os.Symlink(e.links[dst], dst); err != nil {
			return fmt.Errorf("create symlink %s: %w", dst, err)
		}
	}
	return nil
}

// member writes one tar member.
func (e *extractor) member(tr *tar.Reader, h *tar.Header, buf []byte) error {
	dst, skip, err := e.target(h.Name)
	if err != nil || skip {
		return err
	}
	e.mu.Lock()
	_, isLink := e.links[dst]
	e.mu.Unlock()
	if isLink && h.Typeflag != tar.TypeSymlink {
		return fmt.Errorf("member %q: also a symlink in the backup: %w", h.Name, ErrUnsafePath)
	}
	mode := fs.FileMode(h.Mode) & fs.ModePerm
	switch h.Typeflag {
	case tar.TypeDir:
		if err := os.MkdirAll(dst, 0o700); err != nil {
			return fmt.Errorf("create directory %s: %w", dst, err)
		}
		if err := os.Chmod(dst, dirMode(mode)); err != nil {
			return fmt.Errorf("chmod %s: %w", dst, err)
		}
	case tar.TypeReg:
		return writeFile(dst, tr, mode, buf)
	case tar.TypeSymlink:
		if controlDir[path.Clean(h.Name)] {
			// A symlinked pg_wal points at the backed-up host's WAL
			// directory; the control tar makes a real one instead.
			return nil
		}
		if h.Linkname == "" {
			return fmt.Errorf("member %q: symlink to nothing: %w", h.Name, ErrUnsafePath)
		}
		e.mu.Lock()
		e.links[dst] = h.Linkname
		e.mu.Unlock()
	case tar.TypeLink:
		src, skip, err := e.target(h.Linkname)
		if err != nil {
			return err
		}
		if skip {
			return fmt.Errorf("member %q: hard link to %q: %w", h.Name, h.Linkname, ErrUnsafePath)
		}
		if err := mkParent(dst); err != nil {
			return err
		}
		if err := os.Remove(dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("replace %s: %w", dst, err)
		}
		if err := os.Link(src, dst); err != nil {
			return fmt.Errorf("create hard link %s: %w", dst, err)
		}
	default:
		// PGHoard stores only directories, regular files and symlinks;
		// devices and fifos have no place in a data directory.
	}
	return nil
}

// dirMode keeps a directory usable by its owner whatever the tar says.
func dirMode(m fs.FileMode) fs.FileMode {
	if m == 0 {
		return 0o700
	}
	return m | 0o700
}

func mkParent(dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fmt.Errorf("create directory %s: %w", filepath.Dir(dst), err)
	}
	return nil
}

// writeFile writes r to dst with mode, replacing any file there. It does not
// follow a symlink at dst.
func writeFile(dst string, r io.Reader, mode fs.FileMode, buf []byte) error {
	if err := mkParent(dst); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, mode|0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	// Hide os.File's ReadFrom so that io.CopyBuffer uses buf: large writes.
	_, err = io.CopyBuffer(struct{ io.Writer }{f}, r, buf)
	if err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", dst, err)
	}
	if err := f.Chmod(mode | 0o600); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", dst, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return nil
}
