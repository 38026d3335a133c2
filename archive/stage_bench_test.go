package archive

import (
	"context"
	"syscall"
	"testing"
	"time"
)

// cpuTime returns the CPU time (user and system) this process has used.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPUPerGB reports the CPU seconds the benchmark's loop used per GB
// (10^9 bytes) of plaintext: unlike MB/s, a figure other work on the
// machine hardly moves.
func reportCPUPerGB(b *testing.B, start time.Duration, bytes int64) {
	b.ReportMetric((cpuTime(b)-start).Seconds()/(float64(bytes)*float64(b.N)/1e9), "cpu-s/GB")
}

// BenchmarkUploadStages writes 64 MiB of WAL-like data through
// Codec.NewUpload, as a basebackup worker writes a chunk, into a store
// that discards it, for each compression with and without encryption:
// the cost of each stage is the difference between two lines.
func BenchmarkUploadStages(b *testing.B) {
	plain := walData(64 << 20)
	st := discardStore{newMemStore()}
	cs := codecs(b)
	for _, name := range []string{"none", "snappy", "lz4", "zstd"} {
		for _, suffix := range []string{"", "+enc"} {
			c := cs[name+suffix]
			b.Run(name+suffix, func(b *testing.B) {
				b.SetBytes(int64(len(plain)))
				start := cpuTime(b)
				for b.Loop() {
					u, err := c.NewUpload(context.Background(), st, "obj", nil, UploadOptions{Size: int64(len(plain))})
					if err != nil {
						b.Fatal(err)
					}
					for i := 0; i < len(plain); i += 1 << 20 {
						if _, err := u.Write(plain[i : i+1<<20]); err != nil {
							b.Fatal(err)
						}
					}
					if _, err := u.Close(); err != nil {
						b.Fatal(err)
					}
				}
				reportCPUPerGB(b, start, int64(len(plain)))
			})
		}
	}
}
