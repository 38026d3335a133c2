package basebackup

import (
	"errors"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// noOpenat2 is set once openat2(2) is found missing (ENOSYS: Linux before
// 5.6, or a seccomp filter that does not know it) or refused (EPERM: the
// default seccomp profile of container runtimes older than openat2, such
// as Docker before 20.10, answers every call it does not know with
// EPERM); tests set it to try walkBeneath.
var noOpenat2 atomic.Bool

// sysOpenat2 is openat2(2); tests replace it to answer as a seccomp
// filter does.
var sysOpenat2 = unix.Openat2

// openat2Beneath opens rel below dirfd with openat2(2), which resolves it
// in the kernel without leaving dirfd (RESOLVE_BENEATH) or following a
// link (RESOLVE_NO_SYMLINKS). ok is false where openat2 is missing.
func openat2Beneath(dirfd int, rel string, flags int) (fd int, ok bool, err error) {
	if noOpenat2.Load() {
		return -1, false, nil
	}
	how := &unix.OpenHow{Flags: uint64(flags), Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS}
	for range 8 {
		fd, err = sysOpenat2(dirfd, rel, how)
		// EPERM: open(2) gives it only for O_NOATIME and file seals,
		// neither of which applies to a read-only open without
		// O_NOATIME, so it is a seccomp filter refusing the call.
		if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
			noOpenat2.Store(true)
			return -1, false, nil
		}
		// EAGAIN: a rename elsewhere raced the lookup; the kernel
		// asks for a retry.
		if !errors.Is(err, unix.EAGAIN) {
			return fd, true, err
		}
	}
	return fd, true, err
}
