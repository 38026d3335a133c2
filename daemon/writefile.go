package daemon

import (
	"os"
	"path/filepath"

	"github.com/hoardbackup/hoard/storage"
)

// writeFileAtomic writes data to path so that a reader never sees half a
// file: into a temporary file in the same directory (which must exist),
// fsynced, given mode perm, then renamed over path, and the directory
// fsynced so that the rename survives a crash. On an error the
// temporary file is removed and path is left as it was.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), perm)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return err
	}
	return storage.SyncDir(filepath.Dir(path))
}
