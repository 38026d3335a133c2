package storage_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// TestBucket_ListPlantedEscapedName: someone who can write to the bucket
// stores an object under a name gocloud unescapes when it lists
// ("s/xlog/__0x0a__", as gocloud itself stores "s/xlog/\n"): the bucket
// lists it in the order of the stored names, after the segments, and
// reports it as "s/xlog/\n", before them. A listing through the retry
// layer, as every command opens a store, still reports every key once and
// does not fail: one planted object must not stop every listing of its
// folder (restore, verify, retention, the daemon's backups), with an error
// naming a key the bucket does not hold under that name.
func TestBucket_ListPlantedEscapedName(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name string
		cfg  func(testing.TB) storage.Config
	}{{"MinIO", storetest.MinIO}, {"Azurite", storetest.Azurite}, {"FakeGCS", storetest.FakeGCS}} {
		t.Run(c.name, func(t *testing.T) {
			st := storage.WithRetry(storetest.Open(t, c.cfg(t)), storage.RetryOptions{})
			want := []string{"s/xlog/000000010000000000000001", "s/xlog/000000010000000000000002", "s/xlog/\n"}
			for _, k := range want {
				if err := st.Put(ctx, k, strings.NewReader("wal"), nil); err != nil {
					t.Fatal(err)
				}
			}
			var got []string
			if err := st.List(ctx, "s/xlog/", func(o storage.Object) error { got = append(got, o.Key); return nil }); err != nil {
				t.Fatalf("List: %v", err)
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("List = %q, want %q", got, want)
			}
		})
	}
}
