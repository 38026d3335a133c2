package archive

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
)

// TestArchive_FetchWAL_MissingListsNoFolder: wal-fetch of a segment the
// archive does not hold, with no .partial of its name in any site (what
// a standby in archive recovery asks for every few seconds, and every
// recovery at its end), answers "not archived" without listing xlog/:
// a listing of a folder of hundreds of thousands of segments is
// hundreds of requests and seconds. Before, every such miss listed
// xlog/ and timeline/ of every site, looking for a .partial to stand
// in. With a .partial of the name, the listing still decides, as
// before: it stands in at the end of the archive, not behind a later
// segment.
func TestArchive_FetchWAL_MissingListsNoFolder(t *testing.T) {
	ctx := context.Background()
	old := walTestArchive(t, false)
	old.Layout, old.Site = Layout{Prefix: "old"}, "old"
	oldStore := &storetest.Counter{Store: old.Store}
	old.Store = oldStore
	a := walTestArchive(t, false)
	store := &storetest.Counter{Store: a.Store}
	a.Store = store
	a.MovedFrom = []*Archive{old}
	pushSegments(t, old, 1, 2)
	pushSegments(t, a, 3, 4)
	dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	store.Reset()
	oldStore.Reset()
	if err := a.FetchWAL(ctx, segName(5), dest, FetchOptions{}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("FetchWAL of a missing segment = %v, want ErrNotFound", err)
	}
	for _, c := range []struct {
		st     *storetest.Counter
		a      *Archive
		folder string
	}{{store, a, XLogDir}, {store, a, TimelineDir}, {oldStore, old, XLogDir}, {oldStore, old, TimelineDir}} {
		if n := c.st.Lists(c.a.Layout.Dir(c.folder)); n != 0 {
			t.Errorf("FetchWAL of a missing segment listed %s %d times, want none", c.a.Layout.Dir(c.folder), n)
		}
	}

	// A .partial of the name, in the site it moved from, stands in at the
	// end of the archive.
	name := segName(5)
	padded := putPartial(t, old, name, waltest.Segment(t, name, testSegSize, 5), 300000)
	if err := a.FetchWAL(ctx, name, dest, FetchOptions{}); err != nil {
		t.Fatalf("FetchWAL with a .partial in the old site: %v", err)
	}
	checkFile(t, dest, padded)
	// Not behind a later segment.
	pushSegments(t, a, 6, 6)
	if err := a.FetchWAL(ctx, name, dest+"2", FetchOptions{}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("FetchWAL with a later segment stored = %v, want ErrNotFound", err)
	}
}
