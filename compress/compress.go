package compress

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/golang/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
)

// Algorithm names, as stored in the compression-algorithm metadata key
// (pghoard-format.md b.1). None means no compression.
const (
	None   = ""
	Snappy = "snappy"
	Zstd   = "zstd"
	LZMA   = "lzma"
	LZ4    = "lz4"
)

// ErrCorrupt is wrapped by every error a reader returns for input that is
// not a valid stream of its algorithm, truncated streams included.
var ErrCorrupt = errors.New("corrupt compressed data")

// ErrUnknownAlgorithm is wrapped by NewWriter and NewReader for an algorithm
// name they do not know.
var ErrUnknownAlgorithm = errors.New("unknown compression algorithm")

// Algorithms lists every algorithm NewWriter and NewReader accept besides
// None.
var Algorithms = []string{Snappy, Zstd, LZMA, LZ4}

// MaxLevel returns the highest level a configuration may give algorithm
// (0 for Snappy, which has no levels) and whether algorithm is one of
// Algorithms. NewWriter takes any level up to it: the lzma preset (0-9),
// the zstd level (1-22), the lz4 level (1-12, above 9 as 9).
func MaxLevel(algorithm string) (int, bool) {
	switch algorithm {
	case Snappy:
		return 0, true
	case Zstd:
		return 22, true
	case LZMA:
		return 9, true
	case LZ4:
		return 12, true
	}
	return 0, false
}

// maxZstdWindow caps the window a zstd frame may ask the decoder to hold.
// zstd's level 22 ("ultra") uses 128 MiB (windowLog 27), the most any
// PGHoard or hoard writer produces; a frame asking for more is refused
// rather than allowed to allocate up to the library's 512 MiB default.
const maxZstdWindow = 128 << 20

// Options tune a writer.
type Options struct {
	// Level is the compression level; 0 is the algorithm's default.
	Level int
	// Concurrency is the number of goroutines compressing blocks at once
	// (lz4 and zstd; snappy and lzma always use one). 0 or 1 compresses
	// in the caller's goroutine.
	Concurrency int
	// NoChecksum leaves out lz4's and zstd's content checksums (an
	// xxHash32, an xxHash64, of the whole stream in the frame's trailer,
	// an option of each frame format that its readers honour): for a
	// stream another layer checks, such as the pghoa1 envelope's HMAC.
	// snappy and lzma ignore it.
	NoChecksum bool
}

// Known reports whether algorithm is None or one of Algorithms.
func Known(algorithm string) bool {
	return algorithm == None || slices.Contains(Algorithms, algorithm)
}

// NewWriter returns a writer that compresses into w with algorithm at
// level. Level 0 means the algorithm's default. Close flushes the stream and
// never closes w. With None, the writer passes bytes through unchanged.
func NewWriter(w io.Writer, algorithm string, level int) (io.WriteCloser, error) {
	return NewWriterOptions(w, algorithm, Options{Level: level})
}

// NewWriterOptions is NewWriter with options.
func NewWriterOptions(w io.Writer, algorithm string, o Options) (io.WriteCloser, error) {
	level := o.Level
	conc := max(o.Concurrency, 1)
	switch algorithm {
	case None:
		return nopCloser{w}, nil
	case Snappy:
		// The framing format, as python-snappy's StreamCompressor writes
		// it (b.2). Nothing written means no bytes at all.
		return snappy.NewBufferedWriter(w), nil
	case Zstd:
		return newZstdWriter(w, level, conc, !o.NoChecksum)
	case LZMA:
		// An .xz container with the LZMA2 filter and a CRC64 check, as
		// Python's lzma.open(preset=level) writes (b.4).
		xw, err := xz.WriterConfig{DictCap: xzDictCap(level), CheckSum: xz.CRC64}.NewWriter(w)
		if err != nil {
			return nil, fmt.Errorf("lzma writer: %w", err)
		}
		return xw, nil
	case LZ4:
		if lz4Level(level) == lz4.Fast {
			// The default level: hoard's own frame writer around
			// pierrec/lz4's block compressor (it costs a fraction of
			// the CPU of pierrec/lz4's Writer), on conc goroutines
			// when conc > 1, in the caller's otherwise.
			return newLZ4Writer(w, !o.NoChecksum, conc), nil
		}
		lw := lz4.NewWriter(w)
		opts := []lz4.Option{lz4.CompressionLevelOption(lz4Level(level)), lz4.BlockSizeOption(lz4BlockSize)}
		if conc > 1 {
			opts = append(opts, lz4.ConcurrencyOption(conc))
		}
		if o.NoChecksum {
			opts = append(opts, lz4.ChecksumOption(false))
		}
		if err := lw.Apply(opts...); err != nil {
			return nil, fmt.Errorf("lz4 writer: %w", err)
		}
		return lw, nil
	}
	return nil, fmt.Errorf("compress with %q: %w", algorithm, ErrUnknownAlgorithm)
}

// xzDictCap returns the dictionary size of xz's preset level, so that a
// level means what it means to xz and Python's lzma module.
func xzDictCap(level int) int {
	sizes := []int{256 << 10, 1 << 20, 2 << 20, 4 << 20, 4 << 20, 8 << 20, 8 << 20, 16 << 20, 32 << 20, 64 << 20}
	switch {
	case level < 0:
		return sizes[6] // xz's default preset
	case level >= len(sizes):
		return sizes[len(sizes)-1]
	}
	return sizes[level]
}

// lz4BlockSize is the largest block of the lz4 frames hoard writes: 64 KiB,
// LZ4F's default and python-lz4's (PGHoard's), rather than pierrec/lz4's
// 4 MiB, with which compressing and decompressing both ran several times
// slower (BenchmarkLZ4BlockSize) for nearly the same ratio, lz4's matches
// reaching back 64 KiB at most anyway. Every lz4 reader takes any block
// size the frame declares.
const lz4BlockSize = lz4.Block64Kb

// lz4Level maps 0 to lz4's fast mode and 1..9 to the high-compression
// levels.
func lz4Level(level int) lz4.CompressionLevel {
	levels := []lz4.CompressionLevel{lz4.Fast, lz4.Level1, lz4.Level2, lz4.Level3, lz4.Level4,
		lz4.Level5, lz4.Level6, lz4.Level7, lz4.Level8, lz4.Level9}
	switch {
	case level <= 0:
		return lz4.Fast
	case level >= len(levels):
		return lz4.Level9
	}
	return levels[level]
}

// NewReader returns a reader of the data compressed with algorithm in r.
// Input that is not a valid stream makes Read return an error wrapping
// ErrCorrupt; an error of r itself is returned as it is. Close releases the
// decoder and never closes r.
func NewReader(r io.Reader, algorithm string) (io.ReadCloser, error) {
	src := &srcReader{r: r}
	var dec io.Reader
	var closeFn func()
	switch algorithm {
	case None:
		return io.NopCloser(r), nil
	case Snappy:
		dec = snappy.NewReader(src)
	case Zstd:
		zr, err := zstd.NewReader(src,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxWindow(maxZstdWindow),
			zstd.WithDecoderMaxMemory(maxZstdWindow))
		if err != nil {
			return nil, fmt.Errorf("zstd reader: %w", err)
		}
		dec, closeFn = zr, zr.Close
	case LZMA:
		dec = &lazyXZ{src: src}
	case LZ4:
		dec = lz4.NewReader(src)
	default:
		return nil, fmt.Errorf("decompress %q: %w", algorithm, ErrUnknownAlgorithm)
	}
	return &reader{alg: algorithm, src: src, dec: dec, closeFn: closeFn}, nil
}

// reader turns a decoder's errors into ErrCorrupt unless they came from the
// source, and keeps returning the first error.
type reader struct {
	alg     string
	src     *srcReader
	dec     io.Reader
	closeFn func()
	n       int64 // decompressed bytes so far
	err     error
}

func (r *reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.dec.Read(p)
	r.n += int64(n)
	if err == nil {
		return n, nil
	}
	switch {
	case r.src.err != nil:
		// The source failed (a network error, or crypto.ErrTampered):
		// that is the story, not the decoder's complaint about it.
		err = r.src.err
	case err == io.EOF:
		if r.alg != Snappy && r.src.n == 0 {
			// Every writer of these formats emits a header even for
			// empty input; only snappy's framing has a 0-byte stream.
			err = fmt.Errorf("%s stream: empty input: %w", r.alg, ErrCorrupt)
		}
	default:
		err = fmt.Errorf("%s stream at output byte %d: %w: %w", r.alg, r.n, ErrCorrupt, err)
	}
	r.err = err
	return n, err
}

func (r *reader) Close() error {
	if r.closeFn != nil {
		r.closeFn()
		r.closeFn = nil
	}
	if r.err == nil {
		r.err = errors.New("read after close")
	}
	return nil
}

// srcReader records the compressed byte count and the first error of the
// underlying reader other than io.EOF.
type srcReader struct {
	r   io.Reader
	n   int64
	err error
}

func (s *srcReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.n += int64(n)
	if err != nil && err != io.EOF && s.err == nil {
		s.err = err
	}
	return n, err
}

// lazyXZ creates the xz reader on the first Read: xz.NewReader reads the
// stream header at once, and NewReader must not block or fail on input.
type lazyXZ struct {
	src *srcReader
	xr  *xz.Reader
}

func (l *lazyXZ) Read(p []byte) (int, error) {
	if l.xr == nil {
		xr, err := xz.NewReader(newXZGuard(l.src))
		if err != nil {
			if err == io.EOF && l.src.n > 0 {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		l.xr = xr
	}
	return l.xr.Read(p)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// WriterMemory estimates the bytes a writer of algorithm at level with
// concurrency (as NewWriterOptions takes them) holds while it compresses a
// large stream: its window, match tables and block buffers, measured as
// the growth of a basebackup's peak RSS per chunk in flight, rounded up.
// For sizing how many streams run at once.
func WriterMemory(algorithm string, level, concurrency int) int64 {
	conc := int64(max(concurrency, 1))
	switch algorithm {
	case Snappy:
		return 192 << 10
	case LZ4:
		if lz4Level(level) == lz4.Fast {
			// hoard's frame writer: a block buffer, a compressed
			// block and pierrec/lz4's 48 KiB of tables, in the caller's goroutine;
			// with conc > 1 its workers' batches and tables besides.
			if conc > 1 {
				return 256<<10 + lz4ParMemory(int(conc))
			}
			return 256 << 10
		}
		return conc * (512 << 10)
	case Zstd:
		if level == 0 {
			level = 3
		}
		per := int64(6 << 20) // a 2 MiB window, its history and tables
		if level >= 10 {
			// The high levels use larger windows and tables.
			per = 3 * maxZstdWindow / 2
		} else if level >= 6 {
			per = 24 << 20
		}
		// A stream's concurrency overlaps compressing one block with
		// writing the last: 128 KiB blocks, nothing to count.
		return per
	case LZMA:
		// The dictionary and the match finder's hash chains.
		return int64(xzDictCap(level)) * 3
	}
	return 64 << 10
}
