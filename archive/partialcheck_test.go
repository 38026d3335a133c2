package archive

import (
	"bytes"
	"context"
	"crypto/rsa"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// openCounter counts the reads (Open, OpenRange: each a GET) made to its
// store.
type openCounter struct {
	storage.Store
	opens int
}

func (s *openCounter) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	s.opens++
	return s.Store.Open(ctx, key)
}

// OpenRange counts as Open does: it is a GET too.
func (s *openCounter) OpenRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	s.opens++
	return s.Store.OpenRange(ctx, key, off, n)
}

// TestArchive_PutPartialWAL_Planted is someone who can write to the
// bucket but holds no key, on every backend: a .partial they planted or
// whose metadata they rewrote (partial-data-size, hash: not
// authenticated) may never make PutPartialWAL report the daemon's copy
// Stale (as stored) or already stored when the bucket does not hold
// its WAL. The daemon's copy is stored over it and Replaced says why.
func TestArchive_PutPartialWAL_Planted(t *testing.T) {
	ctx := context.Background()
	name := "000000010000000000000005"
	seg := partialSegment(t, name)
	for _, srv := range storetest.Servers {
		t.Run(srv.Name, func(t *testing.T) {
			c := srv.Config(t)
			for _, encrypted := range []bool{false, true} {
				mem := walTestArchive(t, encrypted)
				st := storetest.Open(t, c)
				prefix := "plain"
				if encrypted {
					prefix = "encrypted"
				}
				a := &Archive{Store: st, Codec: mem.Codec, Layout: Layout{Prefix: prefix}, Site: prefix}
				key := a.Layout.WALKey(name + ".partial")
				dir := t.TempDir()
				put := func(n int, o PushOptions) (PushResult, error) {
					t.Helper()
					return a.PutPartialWAL(ctx, writeWALFile(t, dir, name+".partial", seg[:n]), o)
				}
				stored := func(t *testing.T, res PushResult, err error, want []byte) {
					t.Helper()
					if err != nil {
						t.Fatal(err)
					}
					if res.Stale || !res.Uploaded || res.Replaced == nil {
						t.Errorf("result %+v, want the copy stored over the planted object, with Replaced", res)
					}
					checkPartialObject(t, a, key, want)
				}
				// Each case starts with no object under the name.
				fresh := func(t *testing.T) {
					t.Helper()
					if err := st.Delete(ctx, key); err != nil {
						t.Fatal(err)
					}
				}
				plant := func(data []byte, md storage.Metadata) {
					t.Helper()
					if err := st.Put(ctx, key, bytes.NewReader(data), md); err != nil {
						t.Fatal(err)
					}
				}

				t.Run(prefix+"/ErrPlantedDataSize", func(t *testing.T) {
					fresh(t)
					plant([]byte("not WAL"), storage.Metadata{MetaPartialDataSize: strconv.Itoa(len(seg))})
					res, err := put(300000, PushOptions{})
					stored(t, res, err, seg[:300000])
				})
				t.Run(prefix+"/ErrRewrittenDataSize", func(t *testing.T) {
					fresh(t)
					// The daemon's own earlier copy, its metadata rewritten
					// to claim the whole segment.
					if _, err := put(100000, PushOptions{}); err != nil {
						t.Fatal(err)
					}
					storetest.Rewrite(t, st, key, func(data []byte, md storage.Metadata) []byte {
						md[MetaPartialDataSize] = strconv.Itoa(len(seg))
						return data
					})
					res, err := put(300000, PushOptions{})
					stored(t, res, err, seg[:300000])
				})
				t.Run(prefix+"/ErrPlantedHash", func(t *testing.T) {
					fresh(t)
					// Other bytes under the metadata of the very copy the
					// daemon is storing: it is not already stored.
					if _, err := put(300000, PushOptions{}); err != nil {
						t.Fatal(err)
					}
					storetest.Rewrite(t, st, key, func(data []byte, _ storage.Metadata) []byte {
						return []byte("not WAL")
					})
					res, err := put(300000, PushOptions{})
					stored(t, res, err, seg[:300000])
				})
				t.Run(prefix+"/ErrOtherBytesAfter", func(t *testing.T) {
					fresh(t)
					// A copy that starts with the daemon's WAL and goes on
					// with other bytes: the daemon's copies holding only
					// that start are Stale, the first one past it is not.
					forged := append(append([]byte(nil), seg[:300000]...), bytes.Repeat([]byte{0x5a}, 300000)...)
					if _, err := a.Codec.Put(ctx, st, key, bytes.NewReader(forged), int64(len(forged)),
						storage.Metadata{MetaPartialDataSize: strconv.Itoa(len(forged))}); err != nil {
						t.Fatal(err)
					}
					cache := &PartialCache{}
					res, err := put(200000, PushOptions{Partial: cache})
					if err != nil || !res.Stale {
						t.Fatalf("a copy the stored one starts with: %+v, %v; want Stale", res, err)
					}
					res, err = put(250000, PushOptions{Partial: cache, StoredPartial: 200000})
					if err != nil || !res.Stale {
						t.Fatalf("the next copy, still inside it: %+v, %v; want Stale", res, err)
					}
					res, err = put(400000, PushOptions{Partial: cache, StoredPartial: 250000})
					stored(t, res, err, seg[:400000])
				})
			}
		})
	}
}

// A daemon that holds only the public key cannot read the stored copy: a
// copy holding less than it claims is neither reported stored nor
// stored over it (that could take back an earlier run's WAL); one
// holding at least as much is stored.
func TestArchive_PutPartialWAL_ErrUnverifiedPartial(t *testing.T) {
	ctx := context.Background()
	name := "000000010000000000000005"
	seg := partialSegment(t, name)
	full := walTestArchive(t, true)
	dir := t.TempDir()
	if _, err := full.PutPartialWAL(ctx, writeWALFile(t, dir, name+".partial", seg[:700000]), PushOptions{}); err != nil {
		t.Fatal(err)
	}
	codec := *full.Codec
	codec.PrivateKeys = map[string]*rsa.PrivateKey{}
	a := &Archive{Store: full.Store, Codec: &codec, Layout: full.Layout, Site: full.Site}
	key := a.Layout.WALKey(name + ".partial")
	res, err := a.PutPartialWAL(ctx, writeWALFile(t, dir, name+".partial", seg[:300000]), PushOptions{Partial: &PartialCache{}})
	if !errors.Is(err, ErrUnverifiedPartial) || res.Stale || res.Uploaded {
		t.Fatalf("shorter copy: %+v, %v; want ErrUnverifiedPartial", res, err)
	}
	checkPartialObject(t, full, key, seg[:700000])
	res, err = a.PutPartialWAL(ctx, writeWALFile(t, dir, name+".partial", seg[:700000]), PushOptions{})
	if err != nil || !res.Uploaded {
		t.Fatalf("copy as long as the claim: %+v, %v", res, err)
	}
	checkPartialObject(t, full, key, seg[:700000])
}

// A copy hoard before f44d08a (2026-12-02) stored records no
// partial-data-size and is padded to the segment size: a daemon with the
// public key only cannot tell how much WAL it holds. A copy is stored
// over it only when the caller vouches that the copy holds all the WAL
// of the spool file that copy was made from (HoldsSpool: the receiver's
// copy of the segment an earlier run left in progress); any other fails
// with ErrUnverifiedPartial, naming the missing metadata, and leaves it.
func TestArchive_PutPartialWAL_UnclaimedHoldsSpool(t *testing.T) {
	ctx := context.Background()
	name := "000000010000000000000005"
	seg := partialSegment(t, name)
	full := walTestArchive(t, true)
	key := full.Layout.WALKey(name + ".partial")
	old := make([]byte, len(seg))
	copy(old, seg[:300000])
	if _, err := full.Codec.Put(ctx, full.Store, key, bytes.NewReader(old), int64(len(old)),
		storage.Metadata{MetaOriginalFileSize: strconv.Itoa(len(old))}); err != nil {
		t.Fatal(err)
	}
	codec := *full.Codec
	codec.PrivateKeys = map[string]*rsa.PrivateKey{}
	a := &Archive{Store: full.Store, Codec: &codec, Layout: full.Layout, Site: full.Site}
	dir := t.TempDir()
	for _, n := range []int{100000, 400000} {
		res, err := a.PutPartialWAL(ctx, writeWALFile(t, dir, name+".partial", seg[:n]), PushOptions{Partial: &PartialCache{}})
		if !errors.Is(err, ErrUnverifiedPartial) || !strings.Contains(err.Error(), MetaPartialDataSize) || res.Stale || res.Uploaded {
			t.Fatalf("copy of %d bytes, not vouched for: %+v, %v; want ErrUnverifiedPartial naming %s", n, res, err, MetaPartialDataSize)
		}
		got, _ := storedPlain(t, full, key)
		if !bytes.Equal(got, old) {
			t.Fatalf("copy of %d bytes, not vouched for: the older copy was replaced", n)
		}
	}
	res, err := a.PutPartialWAL(ctx, writeWALFile(t, dir, name+".partial", seg[:400000]), PushOptions{Partial: &PartialCache{}, HoldsSpool: true})
	if err != nil || !res.Uploaded || res.Stale {
		t.Fatalf("copy vouched for: %+v, %v; want it stored", res, err)
	}
	checkPartialObject(t, full, key, seg[:400000])
}

// After a restart, the copy the store holds is read once: the later
// copies still shorter than it compare with what the cache keeps, and
// the steady state stores each copy with one request and no read.
func TestArchive_PutPartialWAL_StaleReadOnce(t *testing.T) {
	ctx := context.Background()
	name := "000000010000000000000005"
	seg := partialSegment(t, name)
	a := walTestArchive(t, true)
	dir := t.TempDir()
	if _, err := a.PutPartialWAL(ctx, writeWALFile(t, dir, name+".partial", seg[:1<<20]), PushOptions{}); err != nil {
		t.Fatal(err)
	}
	st := &openCounter{Store: a.Store}
	a.Store = st
	cache := &PartialCache{}
	prev := int64(0)
	for i, n := range []int{100000, 400000, 900000, 1<<20 + 8192, 1<<20 + 100000} {
		res, err := a.PutPartialWAL(ctx, writeWALFile(t, dir, name+".partial", seg[:n]), PushOptions{Partial: cache, StoredPartial: prev})
		if err != nil {
			t.Fatal(err)
		}
		if want := n < 1<<20; res.Stale != want {
			t.Errorf("copy %d (%d bytes): stale %v, want %v", i, n, res.Stale, want)
		}
		prev = int64(n)
	}
	if st.opens != 1 {
		t.Errorf("%d reads of the stored copy, want 1", st.opens)
	}
	checkPartialObject(t, a, a.Layout.WALKey(name+".partial"), seg[:1<<20+100000])
}

// PartialDataSize and WALListing.End read how much WAL a .partial holds
// from its content: metadata claiming more is not believed, and a
// .partial that does not decode does not count.
func TestArchive_PartialDataSize_Planted(t *testing.T) {
	ctx := context.Background()
	name := "000000010000000000000005"
	seg := partialSegment(t, name)
	a := walTestArchive(t, true)
	key := a.Layout.WALKey(name + ".partial")
	if _, err := a.PutPartialWAL(ctx, writeWALFile(t, t.TempDir(), name+".partial", seg[:300000]), PushOptions{}); err != nil {
		t.Fatal(err)
	}
	want, _ := dataSize(bytes.NewReader(seg[:300000]))
	storetest.Rewrite(t, a.Store, key, func(data []byte, md storage.Metadata) []byte {
		md[MetaPartialDataSize] = strconv.Itoa(4 << 20)
		return data
	})
	end, err := a.WALEnd(ctx, 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	if got := int64(end.LSN) - 5*16<<20; !end.Partial || got != want {
		t.Errorf("WAL end %+v: %d bytes into the segment, want the .partial's %d", end, got, want)
	}
	storetest.Tamper(t, a.Store, key)
	if end, err = a.WALEnd(ctx, 16<<20); err != nil || end.File != "" {
		t.Errorf("tampered .partial: WAL end %+v, %v; want none", end, err)
	}
	l, err := a.ListStoredWAL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.PartialDataSize(ctx, l.Partials[name]); !NotWAL(err) || !strings.Contains(err.Error(), key) {
		t.Errorf("tampered .partial: %v, want a NotWAL error naming it", err)
	}
}
