package basebackup

import (
	"context"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/storage"
)

// TestFitParallel: on a host with many cores, lz4 and snappy keep every
// worker, zstd fewer, so that the chunks in flight fit the memory budget;
// a small count is kept, and at least one chunk is always in flight.
func TestFitParallel(t *testing.T) {
	for _, tc := range []struct {
		alg      string
		level    int
		parallel int
		conc     int
		keepAll  bool
	}{
		{compress.LZ4, 0, 64, 1, true},
		{compress.Snappy, 0, 64, 1, true},
		{compress.None, 0, 64, 1, true},
		{compress.Zstd, 0, 2, 1, true},
		{compress.Zstd, 0, 16, 1, true},
		{compress.Zstd, 0, 64, 1, false},
		{compress.Zstd, 0, 64, 64, false},
		{compress.Zstd, 22, 8, 1, false},
		{compress.LZMA, 9, 4, 1, false},
	} {
		c := &archive.Codec{Compression: tc.alg, Level: tc.level}
		got := fitParallel(tc.parallel, c, tc.conc, 0)
		switch {
		case got < 1:
			t.Errorf("%s level %d, %d: %d chunks in flight", tc.alg, tc.level, tc.parallel, got)
		case tc.keepAll && got != tc.parallel:
			t.Errorf("%s level %d: %d workers lowered to %d", tc.alg, tc.level, tc.parallel, got)
		case !tc.keepAll && got >= tc.parallel:
			t.Errorf("%s level %d: %d workers not lowered", tc.alg, tc.level, tc.parallel)
		case got > 1 && int64(got)*chunkMemory(c, tc.conc, 0) > chunkMemoryBudget:
			t.Errorf("%s level %d: %d chunks of %d bytes exceed the budget", tc.alg, tc.level, got, chunkMemory(c, tc.conc, 0))
		}
	}
}

// On S3 the budget counts each chunk's upload buffers: a chunk of the
// default size, or of PGHoard's 2 GiB, gets 5 MiB parts (about 15 MiB
// held per upload, not the 768 MiB of an object of unknown size), so
// lz4 keeps 9 workers of 64 within the budget, and a store that streams
// (local) keeps all 64.
func TestFitParallelUploadMemory(t *testing.T) {
	ctx := context.Background()
	s3, err := storage.Open(ctx, storage.Config{Type: "s3", Region: "us-east-1", BucketName: "b", Host: "127.0.0.1", Port: 9, AccessKeyID: "k", SecretAccessKey: "s"})
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	lz4 := &archive.Codec{Compression: compress.LZ4}
	for _, size := range []int64{256 << 20, 2 << 30} {
		up := chunkUploadMemory(s3, size)
		if up <= 0 || up > 16<<20 {
			t.Errorf("S3, %d-byte chunks: %d bytes of upload buffers per chunk, want 1 to 16 MiB", size, up)
		}
		got := fitParallel(64, lz4, 1, up)
		if got >= 64 || got < 8 || int64(got)*chunkMemory(lz4, 1, up) > chunkMemoryBudget {
			t.Errorf("S3, %d-byte chunks: %d of 64 lz4 workers, %d bytes each", size, got, chunkMemory(lz4, 1, up))
		}
	}
	if got := fitParallel(64, lz4, 1, chunkUploadMemory(storage.NewLocal(t.TempDir()), 2<<30)); got != 64 {
		t.Errorf("local: %d of 64 lz4 workers", got)
	}
}
