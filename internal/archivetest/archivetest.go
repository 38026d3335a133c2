// Package archivetest helps the tests of the packages that build on
// archive (basebackup, restore, verify, e2e) fill an archive as hoard's
// other commands would, and read its objects back.
package archivetest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// New returns the archive of site "site", its objects under site/, in st
// with codec c; st is closed when the test ends.
func New(t testing.TB, st storage.Store, c *archive.Codec) *archive.Archive {
	t.Helper()
	t.Cleanup(func() { st.Close() })
	return &archive.Archive{Store: st, Codec: c, Layout: archive.Layout{Prefix: "site"}, Site: "site"}
}

// StoreArchivedWAL switches c to a new segment, waits until the server
// archived the one before into walDir (see pgtest.StartArchiving), and
// stores every segment and history file there in a, as wal-push would.
func StoreArchivedWAL(t testing.TB, c *pgtest.Cluster, walDir string, a *archive.Archive) {
	t.Helper()
	c.SwitchArchived(t, walDir)
	ents, err := os.ReadDir(walDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		f, err := os.Open(filepath.Join(walDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.Codec.Put(context.Background(), a.Store, a.Layout.WALKey(e.Name()), f, -1, nil)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
}
