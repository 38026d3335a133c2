package storage

import (
	"os"
	"time"
)

// SetIncompleteWait sets how long Create waits for another writer's
// sidecar, for tests; it returns a func that restores the old value.
func SetIncompleteWait(d time.Duration) func() {
	old := incompleteWait
	incompleteWait = d
	return func() { incompleteWait = old }
}

// SetStallGrace sets how long an SFTP operation may run on after its
// context ended, for tests; it returns a func that restores the old value.
func SetStallGrace(d time.Duration) func() {
	old := stallGrace
	stallGrace = d
	return func() { stallGrace = old }
}

// NewLocalHooked returns the local store rooted at dir whose Put renames
// with rename and fsyncs with fsync, for tests.
func NewLocalHooked(dir string, rename func(oldpath, newpath string) error, fsync func(*os.File) error) *Local {
	return &Local{root: dir, rename: rename, fsync: fsync}
}

// SetReplaceHook sets the func s's Put calls before each of its renames,
// for tests.
func SetReplaceHook(s *SFTP, hook func(oldname, newname string) error) { s.hook = hook }

// CreateLockName is the lock file a local store's writers leave in an
// object's directory, for tests that list one.
const CreateLockName = createLockName

// SetLockWait sets the func l calls when it must wait for another
// writer's lock of an object's directory, for tests.
func SetLockWait(l *Local, hook func()) { l.lockWait = hook }

// SetOpenHook sets the func l's Open and Stat call between reading the
// sidecar and opening the object file, for tests.
func SetOpenHook(l *Local, hook func()) { l.beforeOpen = hook }

// SetMkdirHook sets the hook openTemp runs between making a key's
// directory and opening it.
func SetMkdirHook(l *Local, hook func(dir string)) { l.afterMkdir = hook }

// SetSwiftDataTimeout sets how long a Swift transfer may move no byte, for
// the stores opened until the returned func restores the old value.
func SetSwiftDataTimeout(d time.Duration) func() {
	old := swiftDataTimeout
	swiftDataTimeout = d
	return func() { swiftDataTimeout = old }
}
