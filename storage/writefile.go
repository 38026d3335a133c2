package storage

import (
	"io"
	"os"
	"path/filepath"
)

// WriteFileAtomic writes r to the local file path so that a reader never
// sees half a file: into a temporary file in the same directory (which
// must exist), renamed over path only after a clean EOF and an fsync,
// then the directory fsynced so that the rename survives a crash. prepare,
// unless nil, is run on the temporary file first (to set its owner and
// mode). On an error the temporary file is removed and path is left as
// it was.
func WriteFileAtomic(path string, r io.Reader, prepare func(*os.File) error) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
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
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	done = true
	return SyncDir(dir)
}
