package daemon

import (
	"bytes"
	"os"

	"github.com/hoardbackup/hoard/storage"
)

// writeFileAtomic writes data to path with mode perm as
// storage.WriteFileAtomic does: a reader never sees half a file, and on
// an error path is left as it was.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	return storage.WriteFileAtomic(path, bytes.NewReader(data), func(f *os.File) error { return f.Chmod(perm) })
}
