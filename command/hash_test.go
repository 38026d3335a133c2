package command

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/config"
)

// The configuration accepts exactly the hash algorithms wal-push and
// wal-fetch can compute: no value passes validation only to fail later.
func TestHashAlgorithms_ConfigMatchesArchive(t *testing.T) {
	if diff := cmp.Diff(archive.HashAlgorithms(), config.HashAlgorithms); diff != "" {
		t.Errorf("config.HashAlgorithms differs from archive.HashAlgorithms (-archive +config):\n%s", diff)
	}
}
