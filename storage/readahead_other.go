//go:build !linux

package storage

import "os"

// adviseSequential does nothing where hoard does not give the kernel
// read-ahead hints (hoard's supported platform is Linux).
func adviseSequential(*os.File) {}
