//go:build !linux

package basebackup

// openat2Beneath reports openat2(2) missing where it is not Linux's
// (hoard's supported platform is Linux): walkBeneath opens the path.
func openat2Beneath(int, string, int) (int, bool, error) { return -1, false, nil }
