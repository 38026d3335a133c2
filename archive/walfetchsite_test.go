package archive

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/storage"
)

// TestArchive_FetchWAL_MovedFromNamesSite: site new moved from site old,
// each in its own store with the same prefix (archive-copy into another
// storage keeps the keys). A segment whose first readable copy fails
// wal-fetch's checks was refused naming its key alone, which both stores
// may hold (a local store shows the full path, a bucket does not): the
// error names the site holding the copy that failed, and still is no
// "not archived". Without moved_from sites it reads as before.
func TestArchive_FetchWAL_MovedFromNamesSite(t *testing.T) {
	ctx := context.Background()
	name := "000000010000000000000003"
	key := "site/xlog/" + name
	sites := func(t *testing.T) (nw, old *Archive) {
		old = walTestArchive(t, true)
		old.Site = "old"
		nw = walTestArchive(t, true)
		nw.Site = "new"
		nw.MovedFrom = []*Archive{old}
		return nw, old
	}
	cases := []struct {
		name  string
		setup func(t *testing.T) *Archive
		want  string
	}{
		{"DamagedInOld", func(t *testing.T) *Archive {
			nw, old := sites(t)
			pushSegments(t, old, 3, 3)
			tamper(t, old, key, 3000)
			return nw
		}, " of site old"},
		{"DamagedInNew", func(t *testing.T) *Archive {
			nw, old := sites(t)
			pushSegments(t, old, 3, 3)
			pushSegments(t, nw, 3, 3)
			tamper(t, nw, key, 3000)
			return nw
		}, " of site new"},
		{"NoMovedFrom", func(t *testing.T) *Archive {
			a := walTestArchive(t, true)
			pushSegments(t, a, 3, 3)
			tamper(t, a, key, 3000)
			return a
		}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := tc.setup(t)
			err := a.FetchWAL(ctx, name, filepath.Join(t.TempDir(), "RECOVERYXLOG"), FetchOptions{})
			if err == nil || errors.Is(err, storage.ErrNotFound) || !errors.Is(err, crypto.ErrTampered) {
				t.Fatalf("err = %v, want a damage error wrapping crypto.ErrTampered (wal-fetch's exit 255)", err)
			}
			if !strings.Contains(err.Error(), key) {
				t.Errorf("err = %v, want it to name %s", err, key)
			}
			if tc.want == "" {
				if strings.Contains(err.Error(), " of site ") {
					t.Errorf("err = %v names a site, want it as before for a site without moved_from", err)
				}
				return
			}
			if !strings.Contains(err.Error(), key+tc.want) {
				t.Errorf("err = %v, want it to say %q", err, key+tc.want)
			}
		})
	}
}
