package archive

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// zeroPadded returns a copy of data padded with zeros to size bytes: a
// .partial as walstream offers it, whose file always has the segment's
// size (PostgreSQL refuses other sizes), or an ended timeline's final
// copy.
func zeroPadded(data []byte, size int) []byte {
	return append(bytes.Clone(data), make([]byte, size-len(data))...)
}

func TestArchive_PutPartialWAL(t *testing.T) {
	ctx := context.Background()
	for _, encrypted := range []bool{false, true} {
		a := walTestArchive(t, encrypted)
		dir := t.TempDir()
		name := "000000010000000000000005"
		full := waltest.Segment(t, name, 1<<20, 5)

		// The growing segment: a short copy, then a longer one padded with
		// zeros to the segment size, as walstream offers it.
		short, longer := zeroPadded(full[:300000], len(full)), zeroPadded(full[:700000], len(full))
		for i, data := range [][]byte{short, longer} {
			res, err := a.PutPartialWAL(ctx, writeWALFile(t, dir, name+".partial", data), PushOptions{})
			if err != nil {
				t.Fatalf("copy %d: %v", i, err)
			}
			if !res.Uploaded || res.Key != "site/xlog/"+name+".partial" || res.SegmentSize != 1<<20 {
				t.Fatalf("copy %d: result %+v", i, res)
			}
			got, md := storedPlain(t, a, res.Key)
			if !bytes.Equal(got, data) {
				t.Fatalf("encrypted=%v copy %d: stored .partial is not the latest copy", encrypted, i)
			}
			if md[MetaHash] != sha1Hex(data) || md[MetaHashAlgorithm] != "sha1" {
				t.Errorf("copy %d: metadata %v", i, md)
			}
		}

		// The same bytes again: nothing is written.
		res, err := a.PutPartialWAL(ctx, writeWALFile(t, dir, name+".partial", longer), PushOptions{})
		if err != nil || res.Uploaded {
			t.Fatalf("unchanged partial: uploaded=%v err=%v", res.Uploaded, err)
		}
	}
}

func TestArchive_PutPartialWAL_ErrRefused(t *testing.T) {
	ctx := context.Background()
	a := walTestArchive(t, false)
	dir := t.TempDir()
	name := "000000010000000000000005"
	seg := waltest.Segment(t, name, 1<<20, 5)

	// A complete segment name is refused: complete segments are never
	// replaced.
	if _, err := a.PutPartialWAL(ctx, writeWALFile(t, dir, name, seg), PushOptions{}); err == nil {
		t.Error("a complete segment was accepted")
	}
	// A .partial whose header belongs to another segment.
	other := "000000010000000000000006.partial"
	if _, err := a.PutPartialWAL(ctx, writeWALFile(t, dir, other, seg), PushOptions{}); !errors.Is(err, wal.ErrBadPageHeader) {
		t.Errorf("misnamed partial: err %v, want wal.ErrBadPageHeader", err)
	}
	if _, err := a.Store.Stat(ctx, "site/xlog/"+other); err == nil {
		t.Error("a refused partial was stored")
	}
}

// A .partial copy never goes backwards, even for an archive opened anew (a
// restarted daemon, which streams the segment again from its start): a
// copy holding less WAL than the stored one is not stored, whether the
// stored one records its size or (written before the size was recorded)
// has to be read.
func TestArchive_PutPartialWAL_NeverBackwards(t *testing.T) {
	ctx := context.Background()
	name := "000000010000000000000005"
	full := waltest.Segment(t, name, 1<<20, 5)
	short, longer := zeroPadded(full[:300000], len(full)), zeroPadded(full[:700000], len(full))
	for _, tc := range []struct {
		name     string
		recorded bool
	}{{"OK", true}, {"OKWithoutSizeMetadata", false}} {
		t.Run(tc.name, func(t *testing.T) {
			first := walTestArchive(t, true)
			dir := t.TempDir()
			if tc.recorded {
				if _, err := first.PutPartialWAL(ctx, writeWALFile(t, dir, name+".partial", longer), PushOptions{}); err != nil {
					t.Fatal(err)
				}
			} else {
				// As stored before MetaPartialDataSize existed.
				src, res, err := first.openWALUpload(writeWALFile(t, dir, name+".partial", longer), name+".partial", PushOptions{}, true)
				if err != nil {
					t.Fatal(err)
				}
				err = first.storeWAL(ctx, src, &res, nil, false, 0)
				src.Close()
				if err != nil {
					t.Fatal(err)
				}
			}
			// Another Archive on the same store: nothing is remembered in
			// memory.
			restarted := &Archive{Store: first.Store, Codec: first.Codec, Layout: first.Layout, Site: first.Site}
			res, err := restarted.PutPartialWAL(ctx, writeWALFile(t, dir, name+".partial", short), PushOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if res.Uploaded || !res.Stale {
				t.Errorf("shorter copy: uploaded=%v stale=%v, want not uploaded and stale", res.Uploaded, res.Stale)
			}
			if got, _ := storedPlain(t, restarted, res.Key); !bytes.Equal(got, longer) {
				t.Fatal("a shorter .partial replaced a longer one")
			}
			// The whole segment as a .partial (an ended timeline's last
			// segment) holds more: it replaces the copy.
			res, err = restarted.PutPartialWAL(ctx, writeWALFile(t, dir, name+".partial", full), PushOptions{})
			if err != nil || !res.Uploaded || res.Stale {
				t.Fatalf("longer copy: %+v, %v", res, err)
			}
			got, md := storedPlain(t, restarted, res.Key)
			if !bytes.Equal(got, full) {
				t.Fatal("a longer .partial did not replace the stored one")
			}
			if want, _ := dataSize(bytes.NewReader(full)); md[MetaPartialDataSize] != strconv.FormatInt(want, 10) {
				t.Errorf("%s = %q, want %d", MetaPartialDataSize, md[MetaPartialDataSize], want)
			}
		})
	}
}

// statCounter counts the Stat calls made to its store.
type statCounter struct {
	storage.Store
	stats int
}

func (s *statCounter) Stat(ctx context.Context, key string) (storage.Object, error) {
	s.stats++
	return s.Store.Stat(ctx, key)
}

// With StoredPartial (the caller stored the last copy, of that size), the
// store is not asked: a longer copy is stored with one request, a shorter
// one is Stale and not stored. The copies are trimmed, as the daemon's
// receiver uploads a growing segment: no padding.
func TestArchive_PutPartialWAL_StoredPartial(t *testing.T) {
	ctx := context.Background()
	a := walTestArchive(t, true)
	st := &statCounter{Store: a.Store}
	a.Store = st
	dir := t.TempDir()
	name := "000000010000000000000005"
	full := waltest.Segment(t, name, 1<<20, 5)
	short, longer := full[:300000], full[:700000]

	// The first copy of a run asks the store.
	res, err := a.PutPartialWAL(ctx, writeWALFile(t, dir, name+".partial", short), PushOptions{})
	if err != nil || !res.Uploaded || st.stats != 1 {
		t.Fatalf("first copy: %+v, %v, %d stats", res, err, st.stats)
	}
	res, err = a.PutPartialWAL(ctx, writeWALFile(t, dir, name+".partial", longer), PushOptions{StoredPartial: int64(len(short))})
	if err != nil || !res.Uploaded || res.Stale {
		t.Fatalf("longer copy: %+v, %v", res, err)
	}
	if st.stats != 1 {
		t.Errorf("longer copy after a known one: %d stats, want none", st.stats-1)
	}
	if got, md := storedPlain(t, a, res.Key); !bytes.Equal(got, longer) || md[MetaPartialDataSize] != strconv.Itoa(len(longer)) {
		t.Fatalf("stored %d bytes, %s %q; want the longer copy, %d", len(got), MetaPartialDataSize, md[MetaPartialDataSize], len(longer))
	}
	// A shorter copy than the caller says is stored is not written.
	res, err = a.PutPartialWAL(ctx, writeWALFile(t, dir, name+".partial", short), PushOptions{StoredPartial: int64(len(longer))})
	if err != nil || res.Uploaded || !res.Stale {
		t.Fatalf("shorter copy: %+v, %v; want stale", res, err)
	}
	if got, _ := storedPlain(t, a, res.Key); !bytes.Equal(got, longer) {
		t.Fatal("a shorter .partial replaced a longer one")
	}
	if st.stats != 1 {
		t.Errorf("shorter copy after a known one: %d stats, want none", st.stats-1)
	}
	// Without it, the store is asked: a shorter copy is Stale too.
	res, err = a.PutPartialWAL(ctx, writeWALFile(t, dir, name+".partial", short), PushOptions{})
	if err != nil || res.Uploaded || !res.Stale || st.stats != 2 {
		t.Fatalf("shorter copy, store asked: %+v, %v, %d stats", res, err, st.stats)
	}
}

func TestDataSize(t *testing.T) {
	for _, tc := range []struct {
		b    []byte
		want int64
	}{
		{nil, 0},
		{make([]byte, 1000), 0},
		{[]byte{1}, 1},
		{append(append(make([]byte, 300<<10), 7), make([]byte, 5)...), 300<<10 + 1},
		{append(make([]byte, 256<<10-1), 9), 256 << 10},
	} {
		got, err := dataSize(bytes.NewReader(tc.b))
		if err != nil || got != tc.want {
			t.Errorf("dataSize(%d bytes) = %d, %v; want %d", len(tc.b), got, err, tc.want)
		}
	}
}

func TestArchive_DeletePartialWAL(t *testing.T) {
	ctx := context.Background()
	a := walTestArchive(t, false)
	name := "000000010000000000000005"
	seg := waltest.Segment(t, name, 1<<20, 5)
	if _, err := a.PutPartialWAL(ctx, writeWALFile(t, t.TempDir(), name+".partial", seg), PushOptions{}); err != nil {
		t.Fatal(err)
	}
	for range 2 { // a missing object is fine
		if err := a.DeletePartialWAL(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Store.Stat(ctx, "site/xlog/"+name+".partial"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("stat after delete: %v, want not found", err)
	}
	if err := a.DeletePartialWAL(ctx, name+".partial"); err == nil {
		t.Error("DeletePartialWAL accepted a .partial name")
	}
}

// BenchmarkPutPartialWAL stores copies of a growing 16 MiB segment
// holding 1 MiB of WAL, encrypted, into a local store: the cost of one
// upload in the daemon's synchronous mode. Padded: zero-padded to the
// segment size and the store asked first, as the daemon uploaded them
// before; Trimmed: the WAL only, with StoredPartial, as it does now.
func BenchmarkPutPartialWAL(b *testing.B) {
	for _, trimmed := range []bool{false, true} {
		name := "Padded"
		if trimmed {
			name = "Trimmed"
		}
		b.Run(name, func(b *testing.B) { benchmarkPutPartialWAL(b, trimmed) })
	}
}

func benchmarkPutPartialWAL(b *testing.B, trimmed bool) {
	const segSize = 16 << 20
	a := localArchive(b, b.TempDir(), "site", walTestArchive(b, true).Codec)
	name := "000000010000000000000005"
	full := waltest.Segment(b, name, segSize, 5)
	dir := b.TempDir()
	var stored int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Each copy holds a little more WAL than the one before.
		b.StopTimer()
		n := 1<<20 + i*8192
		data := append(append([]byte(nil), full[:n]...), make([]byte, segSize-n)...)
		var o PushOptions
		if trimmed {
			data, o.StoredPartial = data[:n], stored
		}
		p := writeWALFile(b, dir, name+".partial", data)
		b.StartTimer()
		benchPutPartial(b, a, p, o, i)
		stored = int64(len(data))
	}
}

// benchPutPartial copies the .partial p with o and fails the benchmark
// unless this copy, the i-th, was uploaded.
func benchPutPartial(b *testing.B, a *Archive, p string, o PushOptions, i int) {
	res, err := a.PutPartialWAL(context.Background(), p, o)
	if err != nil {
		b.Fatal(err)
	}
	if !res.Uploaded {
		b.Fatalf("copy %d not uploaded", i)
	}
}
