package restore

import (
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/hostile"
)

// SetMaxPGManifest lowers maxPGManifest to n for the test t, so that a
// test using verify as its oracle (package restore_test) need not store
// a backup_manifest of 1 GiB.
func SetMaxPGManifest(t testing.TB, n int64) {
	old := maxPGManifest
	maxPGManifest = n
	t.Cleanup(func() { maxPGManifest = old })
}

// PutChain stores in a the sound chain of newChainFiles: full backup
// parent and incremental backup child on it, each with its
// backup_manifest; the child's tablespace is "new".
func PutChain(t *testing.T, a *archive.Archive, parent, child string) (pst, cst hostile.Stored) {
	t.Helper()
	f := newChainFiles()
	pst = hostile.Put(t, a, chainBackup(t, parent, "", f.parent, f.parent, map[string]string{"pg_tblspc/16400/": "old", "pg_tblspc/16500/": "gone"}))
	cst = hostile.Put(t, a, chainBackup(t, child, parent, f.child, f.child, map[string]string{"pg_tblspc/16400/": "new"}))
	return pst, cst
}
