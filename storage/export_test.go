package storage

import "time"

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
