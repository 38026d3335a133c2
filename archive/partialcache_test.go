package archive

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"testing"

	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
)

// failPutStore fails the next Put after reading part of the object, as
// a connection or a disk that fails halfway, when fail is set.
type failPutStore struct {
	storage.Store
	fail bool
}

var errPutInjected = errors.New("injected put failure")

func (s *failPutStore) Put(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	if s.fail {
		s.fail = false
		_, _ = io.CopyN(io.Discard, r, 100)
		return errPutInjected
	}
	return s.Store.Put(ctx, key, r, md)
}

// partialSegment is a 16 MiB segment whose first page is a valid header
// and whose bytes compress as WAL does, with a run of zeros at its end
// (a segment partly written).
func partialSegment(tb testing.TB, name string) []byte {
	const segSize = 16 << 20
	seg := walData(segSize)
	copy(seg, waltest.Segment(tb, name, segSize, 5)[:8192])
	return seg
}

// checkPartialObject checks that the stored .partial decodes to exactly
// want, and that its hash, data size and original size metadata are
// want's.
func checkPartialObject(t *testing.T, a *Archive, key string, want []byte) {
	t.Helper()
	got, md := storedPlain(t, a, key)
	if !bytes.Equal(got, want) {
		t.Fatalf("%s decodes to %d bytes, not the %d bytes of the file", key, len(got), len(want))
	}
	sum := sha1.Sum(want)
	if md[MetaHash] != hex.EncodeToString(sum[:]) {
		t.Errorf("%s: hash metadata %s, the file's sha1 is %x", key, md[MetaHash], sum)
	}
	ds, _ := dataSize(bytes.NewReader(want))
	if md[MetaPartialDataSize] != strconv.FormatInt(ds, 10) {
		t.Errorf("%s: %s=%s, want %d", key, MetaPartialDataSize, md[MetaPartialDataSize], ds)
	}
	if md[MetaOriginalFileSize] != strconv.Itoa(len(want)) {
		t.Errorf("%s: %s=%s, want %d", key, MetaOriginalFileSize, md[MetaOriginalFileSize], len(want))
	}
}

// TestPutPartialWAL_Cached stores the copies of a growing segment through
// a PartialCache, for each compression with and without encryption, and
// checks that every stored copy decodes to exactly the file it was made
// of: as it grows by pieces of many sizes, after a failed upload (and
// the copy with StoredPartial zero that follows), after a restart (a new
// cache), when the file's last cached page changed, when it is shorter,
// and for the final copy padded with zeros.
func TestPutPartialWAL_Cached(t *testing.T) {
	ctx := context.Background()
	name := "000000010000000000000005"
	seg := partialSegment(t, name)
	for _, alg := range append([]string{compress.None}, compress.Algorithms...) {
		for _, enc := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/enc=%v", alg, enc), func(t *testing.T) {
				if alg == compress.LZMA && testing.Short() {
					t.Skip("lzma has no appender (encoded from the start each copy) and is slow")
				}
				a := walTestArchive(t, enc)
				fs := &failPutStore{Store: a.Store}
				a.Store = fs
				a.Codec.Compression = alg
				key := a.Layout.WALKey(name + ".partial")
				dir := t.TempDir()
				cache := &PartialCache{}
				var stored int64
				put := func(data []byte, wantErr bool) {
					t.Helper()
					res, err := a.PutPartialWAL(ctx, writeWALFile(t, dir, name+".partial", data), PushOptions{StoredPartial: stored, Partial: cache})
					if wantErr {
						if err == nil {
							t.Fatalf("copy of %d bytes stored through a failing PUT", len(data))
						}
						stored = 0
						return
					}
					if err != nil {
						t.Fatalf("copy of %d bytes: %v", len(data), err)
					}
					if !res.Uploaded {
						t.Fatalf("copy of %d bytes not uploaded", len(data))
					}
					stored = int64(len(data))
					checkPartialObject(t, a, key, data)
				}
				n := 0
				for _, step := range []int{8192, 100, 65536 - 8292, 1, 200 << 10, 1 << 20, 8192, 65536} {
					n += step
					put(seg[:n], false)
				}
				// A copy whose PUT fails halfway, then the next one.
				fs.fail = true
				put(seg[:n+8192], true)
				n += 3 * 8192
				put(seg[:n], false)
				n += 70000
				put(seg[:n], false)
				// A restarted daemon: a new cache, the storage asked.
				cache, stored = &PartialCache{}, 0
				n += 8192
				put(seg[:n], false)
				n += 300 << 10
				put(seg[:n], false)
				// The last cached page changed (not what a receiver
				// does): the copy is encoded from the start.
				other := bytes.Clone(seg[:n+8192])
				other[n-1] ^= 0xff
				put(other, false)
				// A shorter file than the last: stale, not stored, and
				// the cache starts over.
				res, err := a.PutPartialWAL(ctx, writeWALFile(t, dir, name+".partial", other[:n-100]), PushOptions{StoredPartial: stored, Partial: cache})
				if err != nil || !res.Stale {
					t.Fatalf("shorter copy: %+v, %v; want stale", res, err)
				}
				checkPartialObject(t, a, key, other)
				// The final copy of an ended timeline: padded with
				// zeros to the segment size, StoredPartial zero.
				stored = 0
				put(zeroPadded(other, len(seg)), false)
			})
		}
	}
}

// TestPutPartialWAL_CachedFreshKey checks that two copies made through
// a PartialCache share no key: their wrapped keys differ, and so do their
// ciphertexts of the same compressed prefix (a shared keystream would
// make them equal, or their XOR the XOR of the plaintexts).
func TestPutPartialWAL_CachedFreshKey(t *testing.T) {
	ctx := context.Background()
	name := "000000010000000000000005"
	seg := partialSegment(t, name)
	a := walTestArchive(t, true)
	key := a.Layout.WALKey(name + ".partial")
	path := writeWALFile(t, t.TempDir(), name+".partial", seg[:1<<20])
	cache := &PartialCache{}
	if _, err := a.PutPartialWAL(ctx, path, PushOptions{Partial: cache}); err != nil {
		t.Fatal(err)
	}
	first := rawObject(t, a, key)
	appendFile(t, path, seg[1<<20:1<<20+8192])
	if _, err := a.PutPartialWAL(ctx, path, PushOptions{StoredPartial: 1 << 20, Partial: cache}); err != nil {
		t.Fatal(err)
	}
	second := rawObject(t, a, key)
	hdr := len(crypto.Magic) + 2 + walKey.Size()
	if bytes.Equal(first[:hdr], second[:hdr]) {
		t.Fatal("two copies have the same wrapped key")
	}
	same := 0
	for i := hdr; i < hdr+4096; i++ {
		if first[i] == second[i] {
			same++
		}
	}
	if same > 64 { // about 16 of 4096 bytes agree by chance
		t.Errorf("%d of the first 4096 ciphertext bytes of two copies are equal: a shared keystream", same)
	}
}

func rawObject(t *testing.T, a *Archive, key string) []byte {
	t.Helper()
	b, _ := storetest.Read(t, a.Store, key)
	return b
}

// TestPutPartialWAL_CacheBounded checks what a PartialCache keeps: the
// encoding of a file up to its limit only (a larger file, as with a
// large wal_segment_size, is encoded from the start and nothing is
// kept), and nothing after a copy of a whole segment (an ended
// timeline's final copy, padded with zeros: it grows no more). Every
// copy still decodes to its file.
func TestPutPartialWAL_CacheBounded(t *testing.T) {
	ctx := context.Background()
	name := "000000010000000000000005"
	seg := partialSegment(t, name)
	for _, alg := range []string{compress.None, compress.Snappy, compress.Zstd} {
		t.Run(alg, func(t *testing.T) {
			a := walTestArchive(t, true)
			a.Codec.Compression = alg
			key := a.Layout.WALKey(name + ".partial")
			dir := t.TempDir()
			cache := &PartialCache{limit: 1 << 20}
			var stored int64
			put := func(data []byte, wantKept bool) {
				t.Helper()
				if _, err := a.PutPartialWAL(ctx, writeWALFile(t, dir, name+".partial", data), PushOptions{StoredPartial: stored, Partial: cache}); err != nil {
					t.Fatalf("copy of %d bytes: %v", len(data), err)
				}
				stored = int64(len(data))
				checkPartialObject(t, a, key, data)
				if kept := cache.s != nil; kept != wantKept {
					t.Fatalf("after a copy of %d bytes (limit %d) the cache keeps its encoding: %v, want %v", len(data), cache.limit, kept, wantKept)
				}
			}
			put(seg[:512<<10], true)
			put(seg[:1<<20], true)
			put(seg[:1<<20+8192], false)
			put(seg[:2<<20], false)
			cache.limit = 0 // 16 MiB segments are cached whole
			put(seg[:3<<20], true)
			stored = 0
			put(zeroPadded(seg[:3<<20+8192], len(seg)), false)
		})
	}
}

// TestPutPartialWAL_StaleNotForgotten is a restarted daemon streaming a
// segment again from its start while the store holds the previous run's
// longer copy: its first copy is stale (the store asked), and the next,
// which comes with StoredPartial the size of that stale copy, as the
// receiver passes it, must be stale too as long as it holds less WAL than
// the store, not stored over the longer copy (WAL already reported
// stored, and in synchronous mode acknowledged to clients, would be
// gone from the store). A copy with more WAL is stored.
func TestPutPartialWAL_StaleNotForgotten(t *testing.T) {
	ctx := context.Background()
	name := "000000010000000000000005"
	seg := partialSegment(t, name)
	for _, alg := range []string{compress.Snappy, compress.LZMA} {
		t.Run(alg, func(t *testing.T) {
			a := walTestArchive(t, true)
			a.Codec.Compression = alg
			key := a.Layout.WALKey(name + ".partial")
			dir := t.TempDir()
			put := func(cache *PartialCache, n int, stored int64) PushResult {
				t.Helper()
				res, err := a.PutPartialWAL(ctx, writeWALFile(t, dir, name+".partial", seg[:n]), PushOptions{StoredPartial: stored, Partial: cache})
				if err != nil {
					t.Fatalf("copy of %d bytes: %v", n, err)
				}
				return res
			}
			// The previous run stored 2 MiB.
			put(&PartialCache{}, 2<<20, 0)
			// The restarted run: a new cache, its first copy asks the store.
			cache := &PartialCache{}
			if res := put(cache, 256<<10, 0); !res.Stale {
				t.Fatal("the first copy after the restart, shorter than the stored one, is not stale")
			}
			if res := put(cache, 1<<20, 256<<10); !res.Stale {
				t.Fatal("a copy with less WAL than the stored one, after a stale copy, is not stale")
			}
			checkPartialObject(t, a, key, seg[:2<<20])
			if res := put(cache, 2<<20+8192, 1<<20); res.Stale || !res.Uploaded {
				t.Fatalf("a copy with more WAL than the stored one: %+v", res)
			}
			checkPartialObject(t, a, key, seg[:2<<20+8192])
			if res := put(cache, 3<<20, 2<<20+8192); res.Stale || !res.Uploaded {
				t.Fatalf("the next copy: %+v", res)
			}
			checkPartialObject(t, a, key, seg[:3<<20])
		})
	}
}
