package archive

import (
	"bytes"
	"context"
	"crypto/rsa"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
)

// TestArchive_FetchWAL_SpoolOtherArchive: segments a prefetch worker
// spooled from one archive are not delivered to a wal-fetch of another
// (another site, storage, prefix or keys), even though both are valid
// segments of the same system under the same name: the other archive's
// own segment is, and the spooled ones are removed; a worker of the other
// archive replaces what one of the first spooled. The same archive (Same:
// another store, but the same site, store name, prefix and keys) still
// takes them from the spool.
func TestArchive_FetchWAL_SpoolOtherArchive(t *testing.T) {
	otherKey, err := crypto.GenerateKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		other func(a, b *Archive) // b starts as a copy of a on a store of its own
	}{
		{"Same", func(a, b *Archive) {}},
		{"Site", func(a, b *Archive) { b.Site = "other" }},
		{"Storage", func(a, b *Archive) { b.StoreID = "mem://other" }},
		{"Prefix", func(a, b *Archive) { b.Layout.Prefix = "other" }},
		{"MovedFrom", func(a, b *Archive) {
			b.MovedFrom = []*Archive{{Store: b.Store, Codec: b.Codec, Layout: Layout{Prefix: "old"}, Site: "old", StoreID: b.StoreID}}
		}},
		{"Keys", func(a, b *Archive) {
			b.Codec = &Codec{Compression: a.Codec.Compression, KeyID: "k2", PublicKey: &otherKey.PublicKey,
				PrivateKeys: map[string]*rsa.PrivateKey{"k2": otherKey}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			a := walTestArchive(t, true)
			a.StoreID = "mem://site"
			b := &Archive{Store: storage.NewMem(), Codec: a.Codec, Layout: a.Layout, Site: a.Site, StoreID: a.StoreID}
			t.Cleanup(func() { b.Store.Close() })
			tc.other(a, b)
			segs := map[*Archive][][]byte{}
			for i, arc := range []*Archive{a, b} {
				for no := uint64(1); no <= 3; no++ {
					data := waltest.Segment(t, segName(no), testSegSize, int64(10*i)+int64(no))
					if _, err := arc.PushWAL(ctx, writeWALFile(t, t.TempDir(), segName(no), data), PushOptions{}); err != nil {
						t.Fatal(err)
					}
					segs[arc] = append(segs[arc], data)
				}
			}
			if bytes.Equal(segs[a][1], segs[b][1]) {
				t.Fatal("both archives hold the same segment 2")
			}
			dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
			o := FetchOptions{Spool: SpoolDir(dest), SystemID: 7123456789012345678}
			if err := a.FetchWAL(ctx, segName(1), dest, o); err != nil {
				t.Fatal(err)
			}
			if res, err := a.PrefetchWAL(ctx, o.Spool, PrefetchOptions{Count: 2}); err != nil || len(res.Fetched) != 2 {
				t.Fatalf("prefetch from a: %+v, %v", res, err)
			}
			if err := b.FetchWAL(ctx, segName(2), dest, o); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(dest)
			if err != nil {
				t.Fatal(err)
			}
			want, from := segs[b][1], "b's own"
			if tc.name == "Same" {
				// b is a: its segment is the one spooled.
				want, from = segs[a][1], "the spooled"
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s delivered from the spool of another archive; want %s", segName(2), from)
			}
			spooled := slices.Contains(testio.DirNames(t, o.Spool), segName(3))
			if spooled != (tc.name == "Same") {
				t.Errorf("%s spooled from a after b's fetch: %v", segName(3), spooled)
			}

			// a's worker spools segment 3 again; b's worker, which runs
			// next, replaces it with b's before b asks for it.
			if _, err := a.PrefetchWAL(ctx, o.Spool, PrefetchOptions{Count: 1}); err != nil {
				t.Fatal(err)
			}
			if _, err := b.PrefetchWAL(ctx, o.Spool, PrefetchOptions{Count: 1}); err != nil {
				t.Fatal(err)
			}
			for _, arc := range []*Archive{a, b} {
				if err := arc.Store.Delete(ctx, arc.Layout.WALKey(segName(3))); err != nil {
					t.Fatal(err)
				}
			}
			if err := b.FetchWAL(ctx, segName(3), dest, o); err != nil {
				t.Fatalf("%s from the spool: %v", segName(3), err)
			}
			want = segs[b][2]
			if tc.name == "Same" {
				want = segs[a][2]
			}
			checkFile(t, dest, want)
		})
	}
}
