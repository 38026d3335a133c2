package compress

import (
	"math/rand"
	"testing"

	"github.com/hoardbackup/hoard/internal/benchdata"
)

// TestZstdFastSuffices: random bytes (as random or encrypted columns hold
// them) take the fastest encoder at levels 0 and 3 to 5; text rows, which
// it stores in more bytes, and pgbench-like heap pages, which compress
// (whatever a sample says of the two encoders), keep the default one;
// other levels and an empty sample are never changed.
func TestZstdFastSuffices(t *testing.T) {
	random := make([]byte, 512<<10)
	rand.New(rand.NewSource(1)).Read(random)
	cases := []struct {
		name   string
		sample []byte
		level  int
		want   bool
	}{
		{"random, level 0", random, 0, true},
		{"random, level 3", random, 3, true},
		{"pgbench pages, level 3", benchdata.ClusterLike(512 << 10), 3, false},
		{"text, level 0", benchdata.TextRows(512 << 10), 0, false},
		{"text, level 3", benchdata.TextRows(512 << 10), 3, false},
		{"random, level 1", random, 1, false},
		{"random, level 2", random, 2, false},
		{"random, level 5", random, 5, true}, // klauspost/compress's default encoder too
		{"random, level 6", random, 6, false},
		{"random, level 19", random, 19, false},
		{"empty, level 3", nil, 3, false},
	}
	for _, c := range cases {
		got, err := ZstdFastSuffices(c.sample, c.level)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got != c.want {
			f, _ := zstdSize(c.sample, 1)
			d, _ := zstdSize(c.sample, max(c.level, 3))
			t.Errorf("%s: fastest suffices %v, want %v (fastest %d bytes, level %d %d)", c.name, got, c.want, f, max(c.level, 3), d)
		}
	}
}
