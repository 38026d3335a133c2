package archive

import (
	"context"
	"testing"

	"github.com/hoardbackup/hoard/internal/benchdata"
)

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
					start := benchdata.CPUTime(b)
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
					benchdata.ReportCPUPerGB(b, start, int64(len(plain)))
					b.ReportMetric(float64(stored)/float64(len(plain)), "ratio")
				})
			}
		}
	}
}
