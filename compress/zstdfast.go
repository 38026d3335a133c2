package compress

import (
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// ZstdFastSuffices's rule. A sample qualifies when zstd's fastest encoder
// stores it in at least zstdFastMinRatio of its size (the data hardly
// compresses: random or already compressed bytes, such as encrypted or
// TOAST-compressed columns) and in no more than zstdFastMargin more
// bytes than the default encoder does. Both conditions are needed: on
// compressible data a sample does not show what the default encoder
// gains over a whole file (on a table of text rows, a 256 KiB sample
// stored 0.7 % smaller at level 1 while the whole 12 MB file stored
// 1.3 % larger, and on the text of "zstd levels for data files" in
// docs/benchmarks.md 5.5 % larger), while on data that hardly compresses
// there are few matches for the default encoder to choose better among.
const (
	zstdFastMinRatio = 0.8
	zstdFastMargin   = 0.005
)

// ZstdFastSuffices reports whether a zstd stream at level (0: 3) may be
// written at level 1 instead: when level's encoder is klauspost/compress's
// default one (levels 0 and 3 to 5) and sample, some data taken from the
// stream's input, hardly compresses, the fastest encoder (levels 1 and 2)
// storing it in at least 80 % of its size and no more than 0.5 % more
// bytes than the default encoder does. Both compress sample as hoard's
// streams do (pooled encoders, a 2 MiB window, in the caller's
// goroutine). On such data the fastest encoder costs a quarter to a half
// of the default's CPU (random bytea pages: 1.7 against 5.1-6.4 s/GB).
// Other levels are left as they are: 1 and 2 are already the fastest
// encoder, and 6 and above are a choice of ratio over CPU.
func ZstdFastSuffices(sample []byte, level int) (bool, error) {
	if level == 0 {
		level = 3
	}
	if zstd.EncoderLevelFromZstd(level) != zstd.SpeedDefault || len(sample) == 0 {
		return false, nil
	}
	fast, err := zstdSize(sample, 1)
	if err != nil || float64(fast) < zstdFastMinRatio*float64(len(sample)) {
		return false, err
	}
	dflt, err := zstdSize(sample, level)
	if err != nil {
		return false, err
	}
	return float64(fast) <= float64(dflt)*(1+zstdFastMargin), nil
}

// zstdSize returns the bytes a zstd stream at level stores p in.
func zstdSize(p []byte, level int) (int64, error) {
	var n countingWriter
	w, err := newZstdWriter(&n, level, 1, false)
	if err != nil {
		return 0, err
	}
	if _, err := w.Write(p); err != nil {
		return 0, fmt.Errorf("zstd sample: %w", err)
	}
	if err := w.Close(); err != nil {
		return 0, fmt.Errorf("zstd sample: %w", err)
	}
	return n.n, nil
}

// countingWriter counts the bytes written to it and keeps none.
type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }
