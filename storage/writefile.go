package storage

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// WriteFileAtomic writes r to the local file path as WriteFileIn does, in
// path's directory (which must exist).
func WriteFileAtomic(path string, r io.Reader, prepare func(*os.File) error) error {
	return inDirOf(path, func(dir *os.Root, name string) error { return WriteFileIn(dir, name, r, prepare) })
}

// WriteFileIn writes r to the file name of the directory dir so that a
// reader never sees half a file: into a new temporary file beside it
// (CreateTempIn: never through a link), renamed over name only after a
// clean EOF and an fsync, then the directory fsynced so that the rename
// survives a crash. The rename replaces a link at name rather than
// writing through it. prepare, unless nil, is run on the temporary file
// first (to set its owner and mode). On an error the temporary file is
// removed and name is left as it was; every write, fsync and close error
// is returned. A temporary file that a killed writer left (older than
// staleTemp) is removed by the next write of the same name.
//
// A crash leaves name as it was before or after, never in between, and
// at worst a temporary file whose name IsTempName recognises.
//
// A failed write or fsync is never retried on the same file: Linux may
// mark the pages it could not write clean, and a second fsync would then
// succeed with the bytes gone (PostgreSQL's data_sync_retry=off). The
// temporary file is removed; a caller that retries writes a new one.
func WriteFileIn(dir *os.Root, name string, r io.Reader, prepare func(*os.File) error) error {
	return writeFileIn(dir, name, r, prepare, false)
}

// CreateFileIn is WriteFileIn that never replaces name: the temporary
// file gets the name by link(2), which fails when name exists (a file, a
// directory or a link, dangling or not), rather than by rename. Then name
// is left as it was, the temporary file removed, and the error wraps
// fs.ErrExist: two writers of one name at once, each of which found it
// free, never replace each other's file; one of them fails.
//
// A crash after the link leaves the temporary file beside name, a second
// name of the same whole file that IsTempName recognises; the next write
// of name removes it once stale.
func CreateFileIn(dir *os.Root, name string, r io.Reader, prepare func(*os.File) error) error {
	return writeFileIn(dir, name, r, prepare, true)
}

// CreateFileAtomic is CreateFileIn for the local file path, in path's
// directory (which must exist).
func CreateFileAtomic(path string, r io.Reader, prepare func(*os.File) error) error {
	return inDirOf(path, func(dir *os.Root, name string) error { return CreateFileIn(dir, name, r, prepare) })
}

// inDirOf runs fn on path's directory, opened as an os.Root, and its base
// name.
func inDirOf(path string, fn func(dir *os.Root, name string) error) error {
	dir, err := os.OpenRoot(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer dir.Close()
	return fn(dir, filepath.Base(path))
}

// writeFileIn is WriteFileIn, or CreateFileIn when create is set.
func writeFileIn(dir *os.Root, name string, r io.Reader, prepare func(*os.File) error, create bool) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("write %s: %w", filepath.Join(dir.Name(), name), err)
		}
	}()
	prefix := "." + name + tempInfix
	tmp, tmpName, err := CreateTempIn(dir, prefix)
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			_ = tmp.Close()
			_ = dir.Remove(tmpName)
		}
	}()
	if prepare != nil {
		if err := prepare(tmp); err != nil {
			return err
		}
	}
	if _, err := io.Copy(tmp, r); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if create {
		if err := dir.Link(tmpName, name); err != nil {
			return err
		}
		done = true
		// name is the whole file now; the temporary name is only a
		// second link to it, which the next write removes when stale.
		_ = dir.Remove(tmpName)
	} else {
		if err := dir.Rename(tmpName, name); err != nil {
			return err
		}
		done = true
	}
	if err := SyncRoot(dir); err != nil {
		return err
	}
	RemoveStaleTemps(dir, prefix, time.Now().Add(-staleTemp))
	return nil
}

// tempInfix follows "." and the file's name in the name of WriteFileIn's
// temporary file: .<name>.tmp-<random>.
const tempInfix = ".tmp-"

// staleTemp is the age past which a temporary file of WriteFileIn counts
// as left by a writer that died: a live one finishes in well under it (it
// writes the file in one go, which keeps the modification time new).
const staleTemp = time.Hour

// IsTempName reports whether name is that of a temporary file WriteFileIn
// creates, so that a reader of the directory can skip or remove one a
// crash left.
func IsTempName(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, tempInfix)
}

// CreateTempIn creates a new file in dir called prefix and a random
// suffix, with O_EXCL: never through a link, never an existing file. It
// returns the file and its name in dir.
func CreateTempIn(dir *os.Root, prefix string) (*os.File, string, error) {
	for range 100 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, "", err
		}
		name := prefix + hex.EncodeToString(b[:])
		f, err := dir.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			// The error names the file relative to dir only.
			return nil, "", fmt.Errorf("create a temporary file in %s: %w", dir.Name(), err)
		}
		return f, name, nil
	}
	return nil, "", fmt.Errorf("create a temporary file %s* in %s: too many tries", prefix, dir.Name())
}

// SyncRoot fsyncs the directory dir, so that the names created, renamed
// or removed in it survive a crash.
func SyncRoot(dir *os.Root) error {
	d, err := dir.Open(".")
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir.Name(), err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir.Name(), err)
	}
	return nil
}

// RemoveStaleTemps removes the regular files of dir whose names start with
// prefix and that were last modified before cutoff. It is housekeeping of
// files nobody reads: errors are ignored. It looks at the names of the
// prefix alone (NamesWithPrefix).
func RemoveStaleTemps(dir *os.Root, prefix string, cutoff time.Time) {
	names, _ := NamesWithPrefix(dir, prefix)
	for _, name := range names {
		if fi, err := dir.Lstat(name); err == nil && fi.Mode().IsRegular() && fi.ModTime().Before(cutoff) {
			_ = dir.Remove(name)
		}
	}
}

// NamesWithPrefix returns the names of the entries of dir that start with
// prefix, of any type, in directory order. It reads names only, never an
// entry's attributes: ReadDir of a directory opened in an os.Root lstats
// every entry (os/file_unix.go newUnixDirent), and wal-fetch looks for its
// temporary files in pg_wal, hundreds of segments, at every call. On an
// error reading dir it returns the names read before it with the error.
func NamesWithPrefix(dir *os.Root, prefix string) ([]string, error) {
	d, err := dir.Open(".")
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	_ = d.Close()
	// Filtered in place: the names of other files cost no more than
	// their reading.
	kept := names[:0]
	for _, name := range names {
		if strings.HasPrefix(name, prefix) {
			kept = append(kept, name)
		}
	}
	return kept, err
}
