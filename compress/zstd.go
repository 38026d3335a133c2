package compress

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// zstdWindow is the window of the zstd frames hoard writes: 2 MiB, what
// libzstd's level 3 (python-zstandard's, pgBackRest's) uses for large
// inputs, rather than klauspost/compress's 8 MiB. Each encoder holds
// about a quarter of the memory, and a reader needs a quarter of the
// window, for a ratio within 0.1 % on backup data
// (BenchmarkZstdOptions); compressing costs about the same.
const zstdWindow = 2 << 20

// zstdKey identifies encoders that can be reused for one another.
type zstdKey struct {
	level zstd.EncoderLevel
	conc  int
	crc   bool
}

// zstdPools holds idle encoders by their options: an encoder's window and
// tables (several MiB) are reused by the next stream rather than
// allocated for every WAL segment and chunk.
var zstdPools sync.Map // zstdKey -> *sync.Pool

// newZstdWriter returns a zstd writer at level (0: 3, python-zstandard's
// default, b.3) compressing on conc goroutines (1: in the caller's), with
// the frame's content checksum when crc.
func newZstdWriter(w io.Writer, level, conc int, crc bool) (io.WriteCloser, error) {
	if level == 0 {
		level = 3
	}
	key := zstdKey{level: zstd.EncoderLevelFromZstd(level), conc: conc, crc: crc}
	p, _ := zstdPools.LoadOrStore(key, &sync.Pool{})
	pool := p.(*sync.Pool)
	if enc, ok := pool.Get().(*zstd.Encoder); ok {
		enc.Reset(w)
		return &zstdWriter{enc: enc, pool: pool}, nil
	}
	enc, err := zstd.NewWriter(w,
		zstd.WithEncoderLevel(key.level),
		zstd.WithWindowSize(zstdWindow),
		zstd.WithEncoderConcurrency(conc),
		zstd.WithEncoderCRC(crc))
	if err != nil {
		return nil, fmt.Errorf("zstd writer: %w", err)
	}
	return &zstdWriter{enc: enc, pool: pool}, nil
}

var errZstdClosed = errors.New("zstd writer: write after close")

// zstdWriter is one stream of a pooled encoder. Close ends the frame and
// gives the encoder back to the pool, once: a second Close does nothing,
// so no two streams ever share an encoder.
type zstdWriter struct {
	enc  *zstd.Encoder
	pool *sync.Pool
}

func (z *zstdWriter) Write(p []byte) (int, error) {
	if z.enc == nil {
		return 0, errZstdClosed
	}
	return z.enc.Write(p)
}

func (z *zstdWriter) Close() error {
	if z.enc == nil {
		return nil
	}
	enc := z.enc
	z.enc = nil
	if err := enc.Close(); err != nil {
		// A failed stream's encoder is not reused.
		return err
	}
	// Drop the reference to the stream's writer before pooling.
	enc.Reset(nil)
	z.pool.Put(enc)
	return nil
}
