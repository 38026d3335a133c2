package testio

import (
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// OddEntry is what someone who can write a local storage directory (or a
// damaged file system, or a mistake by hand) may leave under an object's
// name instead of its file: Make puts it at p, and the local store's
// reason for refusing it says What.
type OddEntry struct {
	Name string
	Make func(p string) error
	What string
}

// OddEntries are a FIFO, a directory holding a file, and a socket.
var OddEntries = []OddEntry{
	{"FIFO", func(p string) error { return syscall.Mkfifo(p, 0o600) }, "is a FIFO"},
	{"Directory", func(p string) error {
		if err := os.Mkdir(p, 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(p, "kept"), []byte("not hoard's"), 0o600)
	}, "is a directory"},
	{"Socket", func(p string) error { return unix.Mknod(p, unix.S_IFSOCK|0o600, 0) }, "is a socket"},
}
