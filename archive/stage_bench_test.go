package archive

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/benchdata"
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

// BenchmarkUploadStages writes 64 MiB through Codec.NewUpload, as a
// basebackup worker writes a chunk, in 64 kB writes, into a store that
// discards it, for each compression with and without encryption: the cost
// of each stage is the difference between two lines. The data is shaped
// like a basebackup of the benchmark cluster (benchdata.ClusterLike:
// pgbench pages and random bytes) and like WAL.
func BenchmarkUploadStages(b *testing.B) {
	st := discardStore{newMemStore()}
	cs := codecs(b)
	for _, data := range []struct {
		name  string
		plain []byte
	}{{"cluster", benchdata.ClusterLike(64 << 20)}, {"wal", walData(64 << 20)}} {
		plain := data.plain
		for _, name := range []string{"none", "snappy", "lz4", "zstd"} {
			for _, suffix := range []string{"", "+enc"} {
				c := cs[name+suffix]
				b.Run(data.name+"/"+name+suffix, func(b *testing.B) {
					b.SetBytes(int64(len(plain)))
					start := cpuTime(b)
					var stored int64
					for b.Loop() {
						u, err := c.NewUpload(context.Background(), st, "obj", nil, UploadOptions{Size: int64(len(plain))})
						if err != nil {
							b.Fatal(err)
						}
						for i := 0; i < len(plain); i += 64 << 10 {
							if _, err := u.Write(plain[i : i+64<<10]); err != nil {
								b.Fatal(err)
							}
						}
						s, err := u.Close()
						if err != nil {
							b.Fatal(err)
						}
						stored = s.StoredSize
					}
					reportCPUPerGB(b, start, int64(len(plain)))
					b.ReportMetric(float64(stored)/float64(len(plain)), "ratio")
				})
			}
		}
	}
}
