package storage

import (
	"os"
	"syscall"
	"time"
)

// changeTime returns fi's inode change time (st_ctim): the kernel sets it
// on every write, rename, link and metadata change, and no system call
// sets it to a chosen value, unlike the modification time (utimes(2)).
func changeTime(fi os.FileInfo) time.Time {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return time.Unix(st.Ctim.Unix())
	}
	return fi.ModTime()
}
