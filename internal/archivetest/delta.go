package archivetest

import (
	"context"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/storage"
)

// SameSizeDeltaObjects returns the keys of two delta objects of a whose
// files have the same size (original-file-size): swapped, each decodes to
// as many bytes as the other's name promises, so only its digest tells
// them apart. It fails the test when a holds no such pair.
func SameSizeDeltaObjects(t testing.TB, a *archive.Archive) (string, string) {
	t.Helper()
	ctx := context.Background()
	bySize := map[string]string{}
	var x, y string
	err := a.Store.List(ctx, a.Layout.Dir(archive.DeltaDir), func(o storage.Object) error {
		st, err := a.Store.Stat(ctx, o.Key)
		if err != nil {
			return err
		}
		n := st.Metadata[archive.MetaOriginalFileSize]
		if k, ok := bySize[n]; ok && x == "" {
			x, y = k, o.Key
		}
		bySize[n] = o.Key
		return nil
	})
	if err != nil || x == "" {
		t.Fatalf("no two delta objects of the same size (%v)", err)
	}
	return x, y
}
