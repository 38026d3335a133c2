package storage

import (
	"os"

	"golang.org/x/sys/unix"
)

// adviseSequential tells the kernel that f is read from start to end
// (posix_fadvise(2) POSIX_FADV_SEQUENTIAL), which doubles its read-ahead
// window: an object opened whole is read that way (a restore's chunks,
// a WAL segment), and a restore reading its chunks from a cold page cache
// while its files are written back waited less for them (see
// docs/benchmarks.md). It is a hint: an error changes nothing.
func adviseSequential(f *os.File) {
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_SEQUENTIAL)
}
