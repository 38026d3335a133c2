package basebackup

import (
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
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
		got := fitParallel(tc.parallel, c, tc.conc)
		switch {
		case got < 1:
			t.Errorf("%s level %d, %d: %d chunks in flight", tc.alg, tc.level, tc.parallel, got)
		case tc.keepAll && got != tc.parallel:
			t.Errorf("%s level %d: %d workers lowered to %d", tc.alg, tc.level, tc.parallel, got)
		case !tc.keepAll && got >= tc.parallel:
			t.Errorf("%s level %d: %d workers not lowered", tc.alg, tc.level, tc.parallel)
		case got > 1 && int64(got)*chunkMemory(c, tc.conc) > chunkMemoryBudget:
			t.Errorf("%s level %d: %d chunks of %d bytes exceed the budget", tc.alg, tc.level, got, chunkMemory(c, tc.conc))
		}
	}
}
