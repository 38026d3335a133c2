package storage_test

import (
	"testing"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// TestSFTP_RenameReplaces runs the conformance suite against the SFTP
// server of github.com/pkg/sftp, whose SSH_FXP_RENAME is rename(2) and
// replaces an existing name: Create must still store a key only if it is
// free (ConcurrentCreate: of ten writers of one key with different bytes,
// exactly one succeeds and the object is its), as on OpenSSH's server.
func TestSFTP_RenameReplaces(t *testing.T) {
	c := storetest.GoSFTP(t).Config
	storetest.Run(t, func(t testing.TB) storage.Store {
		c := c
		c.Directory = t.TempDir()
		return storetest.Open(t, c)
	})
}
