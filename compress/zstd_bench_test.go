package compress

import (
	"io"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/hoardbackup/hoard/internal/benchdata"
)

type countW struct{ n int64 }

func (c *countW) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// BenchmarkZstdOptions compresses 64 MiB shaped like the benchmark
// cluster's basebackup through NewWriterOptions with zstd, in 64 kB writes
// as a chunk's upload does, and through klauspost/compress's encoder with
// other options, reporting CPU seconds per GB and the ratio.
func BenchmarkZstdOptions(b *testing.B) {
	plain := benchdata.ClusterLike(64 << 20)
	run := func(b *testing.B, newW func(w io.Writer) io.WriteCloser) {
		b.SetBytes(int64(len(plain)))
		start := benchdata.CPUTime(b)
		var out countW
		for b.Loop() {
			out.n = 0
			w := newW(&out)
			for i := 0; i < len(plain); i += 64 << 10 {
				if _, err := w.Write(plain[i : i+64<<10]); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
		}
		benchdata.ReportCPUPerGB(b, start, int64(len(plain)))
		b.ReportMetric(float64(out.n)/float64(len(plain)), "ratio")
	}
	hoard := func(o Options) func(w io.Writer) io.WriteCloser {
		return func(w io.Writer) io.WriteCloser {
			zw, err := NewWriterOptions(w, Zstd, o)
			if err != nil {
				b.Fatal(err)
			}
			return zw
		}
	}
	klauspost := func(opts ...zstd.EOption) func(w io.Writer) io.WriteCloser {
		return func(w io.Writer) io.WriteCloser {
			zw, err := zstd.NewWriter(w, opts...)
			if err != nil {
				b.Fatal(err)
			}
			return zw
		}
	}
	level3 := zstd.WithEncoderLevel(zstd.SpeedDefault)
	one := zstd.WithEncoderConcurrency(1)
	for _, v := range []struct {
		name string
		newW func(w io.Writer) io.WriteCloser
	}{
		// What hoard writes: level 3, a 2 MiB window, pooled encoders;
		// encrypted streams leave out the checksum (NoChecksum).
		{"hoard", hoard(Options{})},
		{"hoard-nochecksum", hoard(Options{NoChecksum: true})},
		// Before: a new encoder per stream, 8 MiB window, checksum.
		{"new-encoder-8MiB-crc", klauspost(level3, one)},
		{"new-encoder-8MiB-nocrc", klauspost(level3, one, zstd.WithEncoderCRC(false))},
		{"new-encoder-2MiB-crc", klauspost(level3, one, zstd.WithWindowSize(2<<20))},
		{"lower-mem", klauspost(level3, one, zstd.WithLowerEncoderMem(true))},
		{"concurrency2", klauspost(level3, zstd.WithEncoderConcurrency(2))},
		// Level 1 for comparison (not what level 3 means).
		{"level1", klauspost(zstd.WithEncoderLevel(zstd.SpeedFastest), one)},
	} {
		b.Run(v.name, func(b *testing.B) { run(b, v.newW) })
	}
}
