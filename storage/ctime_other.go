//go:build !linux

package storage

import (
	"os"
	"time"
)

// changeTime returns fi's modification time where hoard does not read the
// inode change time (hoard's supported platform is Linux).
func changeTime(fi os.FileInfo) time.Time { return fi.ModTime() }
