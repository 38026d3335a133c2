package compress

import (
	"io"
	"os"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/hoardbackup/hoard/internal/benchdata"
)

// zstdCase is one encoder a zstd benchmark compares.
type zstdCase struct {
	name string
	newW func(w io.Writer) io.WriteCloser
}

// benchZstd compresses plain through each case's writer in 64 kB writes,
// as a chunk's upload does, reporting CPU seconds per GB of plaintext,
// the ratio and the stored bytes.
func benchZstd(b *testing.B, plain []byte, cases []zstdCase) {
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(plain)))
			start := benchdata.CPUTime(b)
			var out countingWriter
			for b.Loop() {
				out.n = 0
				writeInPieces(b, c.newW(&out), plain, 64<<10)
			}
			benchdata.ReportCPUPerGB(b, start, int64(len(plain)))
			b.ReportMetric(float64(out.n)/float64(len(plain)), "ratio")
			b.ReportMetric(float64(out.n), "stored-bytes")
		})
	}
}

// hoardZstd is a case writing through NewWriterOptions with o.
func hoardZstd(b *testing.B, o Options) func(w io.Writer) io.WriteCloser {
	return func(w io.Writer) io.WriteCloser {
		zw, err := NewWriterOptions(w, Zstd, o)
		if err != nil {
			b.Fatal(err)
		}
		return zw
	}
}

// klauspostZstd is a case writing through klauspost/compress's encoder
// with opts.
func klauspostZstd(b *testing.B, opts ...zstd.EOption) func(w io.Writer) io.WriteCloser {
	return func(w io.Writer) io.WriteCloser {
		zw, err := zstd.NewWriter(w, opts...)
		if err != nil {
			b.Fatal(err)
		}
		return zw
	}
}

// pooledZstd is a case writing through one klauspost/compress encoder
// with opts, reset for each stream, as hoard's pool reuses them.
func pooledZstd(b *testing.B, opts ...zstd.EOption) func(w io.Writer) io.WriteCloser {
	enc, err := zstd.NewWriter(nil, opts...)
	if err != nil {
		b.Fatal(err)
	}
	return func(w io.Writer) io.WriteCloser {
		enc.Reset(w)
		return enc
	}
}

// BenchmarkZstdOptions compresses 64 MiB shaped like the benchmark
// cluster's basebackup through NewWriterOptions with zstd and through
// klauspost/compress's encoder with other options.
func BenchmarkZstdOptions(b *testing.B) {
	level3 := zstd.WithEncoderLevel(zstd.SpeedDefault)
	one := zstd.WithEncoderConcurrency(1)
	benchZstd(b, benchdata.ClusterLike(64<<20), []zstdCase{
		// What hoard writes: level 3, a 2 MiB window, pooled encoders;
		// encrypted streams leave out the checksum (NoChecksum).
		{"hoard", hoardZstd(b, Options{})},
		{"hoard-nochecksum", hoardZstd(b, Options{NoChecksum: true})},
		// Before: a new encoder per stream, 8 MiB window, checksum.
		{"new-encoder-8MiB-crc", klauspostZstd(b, level3, one)},
		{"new-encoder-8MiB-nocrc", klauspostZstd(b, level3, one, zstd.WithEncoderCRC(false))},
		{"new-encoder-2MiB-crc", klauspostZstd(b, level3, one, zstd.WithWindowSize(2<<20))},
		{"lower-mem", klauspostZstd(b, level3, one, zstd.WithLowerEncoderMem(true))},
		{"concurrency2", klauspostZstd(b, level3, zstd.WithEncoderConcurrency(2))},
		// Level 1 for comparison (not what level 3 means).
		{"level1", klauspostZstd(b, zstd.WithEncoderLevel(zstd.SpeedFastest), one)},
	})
}

// BenchmarkZstdFile compresses the file HOARD_BENCH_ZSTD_FILE names (a
// tar of a cluster's files, WAL segments) with klauspost/compress's two
// fast encoders and hoard's settings (a 2 MiB window, no content
// checksum, one goroutine, an encoder reused), and with the options that might cut their
// CPU, for comparison with libzstd's levels on the same file (`zstd -1
// -T1 --no-check`), and logs whether a local-tar chunk of the file would
// be written at level 1 (ZstdFastSuffices). It skips without the variable.
func BenchmarkZstdFile(b *testing.B) {
	f := os.Getenv("HOARD_BENCH_ZSTD_FILE")
	if f == "" {
		b.Skip("HOARD_BENCH_ZSTD_FILE names no file")
	}
	plain, err := os.ReadFile(f)
	if err != nil {
		b.Fatal(err)
	}
	hoardOpts := func(l zstd.EncoderLevel, more ...zstd.EOption) []zstd.EOption {
		return append([]zstd.EOption{zstd.WithEncoderLevel(l), zstd.WithWindowSize(zstdWindow),
			zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(false)}, more...)
	}
	fastest, dflt := zstd.SpeedFastest, zstd.SpeedDefault
	benchZstd(b, plain, []zstdCase{
		{"fastest", pooledZstd(b, hoardOpts(fastest)...)},
		{"default", pooledZstd(b, hoardOpts(dflt)...)},
		{"fastest-lowmem", pooledZstd(b, hoardOpts(fastest, zstd.WithLowerEncoderMem(true))...)},
		{"fastest-alllit", pooledZstd(b, hoardOpts(fastest, zstd.WithAllLitEntropyCompression(true))...)},
		{"default-crc", pooledZstd(b, hoardOpts(dflt, zstd.WithEncoderCRC(true))...)},
		{"default-lowmem", pooledZstd(b, hoardOpts(dflt, zstd.WithLowerEncoderMem(true))...)},
		{"default-noentropy", pooledZstd(b, hoardOpts(dflt, zstd.WithNoEntropyCompression(true))...)},
	})
	// Whether a local-tar chunk of this file would be written at level 1
	// (basebackup samples four 64 KiB pieces spread over the chunk).
	var sample []byte
	for k := range 4 {
		off := max(len(plain)*(2*k+1)/8-32<<10, 0)
		sample = append(sample, plain[off:min(off+64<<10, len(plain))]...)
	}
	fast, err := ZstdFastSuffices(sample, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%s: level 1 suffices for a chunk of it (ZstdFastSuffices): %v", f, fast)
}
