package archive

import (
	"os"
	"testing"

	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
)

// BenchmarkPartialCopy stores copies of a growing 16 MiB segment that
// holds 8 MiB of WAL (and 8 KiB more each copy), encrypted, through
// PutPartialWAL with the size stored last known, into a store that
// discards the bytes: the CPU of one upload in the daemon's synchronous
// mode, without the storage's round trip. Full encodes each copy from the
// segment's start (no PartialCache); Cached keeps a PartialCache across
// the copies, as the daemon does. Profile with -cpuprofile.
func BenchmarkPartialCopy(b *testing.B) {
	for _, alg := range []string{compress.Snappy, compress.Zstd, compress.LZ4} {
		for _, cached := range []bool{false, true} {
			name := alg + "/Full"
			if cached {
				name = alg + "/Cached"
			}
			b.Run(name, func(b *testing.B) { benchmarkPartialCopy(b, alg, cached) })
		}
	}
}

func benchmarkPartialCopy(b *testing.B, alg string, cached bool) {
	const segSize = 16 << 20
	a := walTestArchive(b, true)
	a.Store = discardStore{newMemStore()}
	a.Codec.Compression = alg
	name := "000000010000000000000005"
	// A valid first page, then bytes that compress as WAL does.
	full := walData(segSize)
	copy(full, waltest.Segment(b, name, segSize, 5)[:8192])
	dir := b.TempDir()
	p := writeWALFile(b, dir, name+".partial", full[:8<<20])
	o := PushOptions{}
	if cached {
		o.Partial = &PartialCache{}
	}
	n := 8 << 20
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		n += 8192
		if n > segSize {
			// The segment is full: start again at 8 MiB, as the next
			// segment would (a copy from the start, once).
			n = 8<<20 + 8192
			p = writeWALFile(b, dir, name+".partial", full[:n])
			o.StoredPartial = 0
		} else {
			appendFile(b, p, full[n-8192:n])
		}
		b.StartTimer()
		benchPutPartial(b, a, p, o, i)
		o.StoredPartial = int64(n)
	}
}

// appendFile appends data to the file at path.
func appendFile(tb testing.TB, path string, data []byte) {
	tb.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		tb.Fatal(err)
	}
	testio.WriteClose(tb, f, data)
}
