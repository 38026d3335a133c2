package compress

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"

	"github.com/cespare/xxhash/v2"
	"github.com/golang/snappy"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Appender compresses a stream that grows, and can end it at any point
// without ending it for good: Append compresses more of the stream, and
// Stream returns a complete stream of everything appended so far, as the
// writer of NewWriterOptions would have written it (not necessarily the
// same bytes), that every reader of the format reads. The compressed
// bytes of what was appended are kept and reused: the cost of Stream is
// the bytes it returns plus a little, not compressing everything again.
// It is for the daemon's copies of a growing WAL segment.
//
// An Appender holds everything it compressed (as much as the compressed
// stream) and is not safe for concurrent use.
type Appender interface {
	// Append compresses p, the bytes after those appended before.
	Append(p []byte) error
	// Stream returns the complete stream of what was appended, as parts
	// to be written in order. The parts stay valid until the next
	// Append or Close; the caller must not change them.
	Stream() ([][]byte, error)
	// Close releases the compressor.
	Close() error
}

// ErrNoAppender is returned by NewAppender for an algorithm and options
// whose stream cannot be ended without ending the compressor (lzma), or
// that it does not support (lz4 with a content checksum).
var ErrNoAppender = errors.New("no appender for this compression")

// NewAppender returns an Appender of algorithm with o's level and
// checksum (o.Concurrency is ignored: it compresses in the caller's
// goroutine). It returns an error wrapping ErrNoAppender for LZMA and
// for LZ4 with its content checksum.
func NewAppender(algorithm string, o Options) (Appender, error) {
	switch algorithm {
	case None:
		return &noneAppender{}, nil
	case Snappy:
		return &snappyAppender{}, nil
	case Zstd:
		return newZstdAppender(o)
	case LZ4:
		if !o.NoChecksum {
			return nil, fmt.Errorf("lz4 with a content checksum: %w", ErrNoAppender)
		}
		return newLZ4Appender(o)
	case LZMA:
		return nil, fmt.Errorf("lzma: %w", ErrNoAppender)
	}
	return nil, fmt.Errorf("compress with %q: %w", algorithm, ErrUnknownAlgorithm)
}

// noneAppender keeps the plaintext: the stream of None is the plaintext.
type noneAppender struct{ buf []byte }

func (a *noneAppender) Append(p []byte) error     { a.buf = append(a.buf, p...); return nil }
func (a *noneAppender) Stream() ([][]byte, error) { return [][]byte{a.buf}, nil }
func (a *noneAppender) Close() error              { a.buf = nil; return nil }

// snappyChunk is the plaintext size of a snappy framing chunk, as
// golang/snappy's and python-snappy's writers cut them.
const snappyChunk = 64 << 10

// snappyAppender keeps the stream identifier and the chunks of every
// whole 64 KiB of plaintext; the rest (pending) becomes one shorter chunk
// in Stream, written again (with more) after the next Append. Chunks of
// the framing format are independent of one another, so the stream is
// the one golang/snappy's writer makes of the same bytes.
type snappyAppender struct {
	out     []byte // stream identifier and complete chunks
	pending []byte // plaintext after the last complete chunk
	tail    []byte // Stream's chunk of pending
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// appendSnappyChunk appends the framing chunk of p (at most 64 KiB) to
// dst, compressed unless that saves less than an eighth, as
// golang/snappy's writer does.
func appendSnappyChunk(dst, p []byte) []byte {
	c := crc32.Update(0, crcTable, p)
	sum := (c>>15 | c<<17) + 0xa282ead8
	start := len(dst)
	dst = append(dst, make([]byte, 8+snappy.MaxEncodedLen(len(p)))...)
	enc := snappy.Encode(dst[start+8:], p)
	typ, body := byte(0x00), len(enc)
	if len(enc) >= len(p)-len(p)/8 {
		typ, body = 0x01, len(p)
		copy(dst[start+8:], p)
	}
	n := 4 + body
	dst[start] = typ
	dst[start+1], dst[start+2], dst[start+3] = byte(n), byte(n>>8), byte(n>>16)
	binary.LittleEndian.PutUint32(dst[start+4:], sum)
	return dst[:start+8+body]
}

func (a *snappyAppender) Append(p []byte) error {
	if len(a.out) == 0 && len(p) > 0 {
		a.out = append(a.out, streamIdentifier...)
	}
	if len(a.pending) > 0 {
		n := min(snappyChunk-len(a.pending), len(p))
		a.pending = append(a.pending, p[:n]...)
		p = p[n:]
		if len(a.pending) < snappyChunk {
			return nil
		}
		a.out = appendSnappyChunk(a.out, a.pending)
		a.pending = a.pending[:0]
	}
	for len(p) >= snappyChunk {
		a.out = appendSnappyChunk(a.out, p[:snappyChunk])
		p = p[snappyChunk:]
	}
	a.pending = append(a.pending, p...)
	return nil
}

func (a *snappyAppender) Stream() ([][]byte, error) {
	if len(a.pending) == 0 {
		return [][]byte{a.out}, nil
	}
	a.tail = appendSnappyChunk(a.tail[:0], a.pending)
	return [][]byte{a.out, a.tail}, nil
}

func (a *snappyAppender) Close() error { *a = snappyAppender{}; return nil }

// streamIdentifier is the snappy framing format's first chunk.
var streamIdentifier = []byte{0xff, 0x06, 0x00, 0x00, 's', 'N', 'a', 'P', 'p', 'Y'}

// sink collects what a compressor writes.
type sink struct{ buf []byte }

func (s *sink) Write(p []byte) (int, error) { s.buf = append(s.buf, p...); return len(p), nil }

// zstdAppender flushes the encoder after each Append: Flush ends the
// block being filled without ending the frame, so out is the frame so
// far. Stream ends the frame by hand with an empty last raw block (the
// epilogue libzstd writes after a flush) and, when the frame declares
// one, the content checksum: the low 32 bits of the XXH64 of the
// content, little-endian.
type zstdAppender struct {
	out  *sink
	enc  *zstd.Encoder
	crc  hash.Hash64 // nil without a content checksum
	end  []byte
	used bool
}

func newZstdAppender(o Options) (*zstdAppender, error) {
	level := o.Level
	if level == 0 {
		level = 3
	}
	a := &zstdAppender{out: &sink{}}
	enc, err := zstd.NewWriter(a.out,
		zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
		zstd.WithWindowSize(zstdWindow),
		zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(!o.NoChecksum))
	if err != nil {
		return nil, fmt.Errorf("zstd writer: %w", err)
	}
	a.enc = enc
	if !o.NoChecksum {
		a.crc = xxhash.New()
	}
	return a, nil
}

func (a *zstdAppender) Append(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	a.used = true
	if a.crc != nil {
		a.crc.Write(p)
	}
	if _, err := a.enc.Write(p); err != nil {
		return err
	}
	return a.enc.Flush()
}

func (a *zstdAppender) Stream() ([][]byte, error) {
	if !a.used {
		return nil, errors.New("zstd appender: nothing appended")
	}
	// Block header: Last_Block 1, Block_Type Raw (0), Block_Size 0.
	a.end = append(a.end[:0], 0x01, 0x00, 0x00)
	if a.crc != nil {
		a.end = binary.LittleEndian.AppendUint32(a.end, uint32(a.crc.Sum64()))
	}
	return [][]byte{a.out.buf, a.end}, nil
}

func (a *zstdAppender) Close() error {
	a.enc.Reset(nil)
	a.out.buf = nil
	return nil
}

// lz4Appender flushes the writer after each Append: Flush writes the
// block being filled as a block, so out is the frame so far. Stream ends
// it with the end mark (a zero block size). Without a content checksum
// only: the frame declares none.
type lz4Appender struct {
	out  *sink
	w    *lz4.Writer
	used bool
	end  []byte
}

func newLZ4Appender(o Options) (*lz4Appender, error) {
	a := &lz4Appender{out: &sink{}, end: make([]byte, 4)}
	a.w = lz4.NewWriter(a.out)
	if err := a.w.Apply(lz4.CompressionLevelOption(lz4Level(o.Level)), lz4.BlockSizeOption(lz4BlockSize),
		lz4.ChecksumOption(false)); err != nil {
		return nil, fmt.Errorf("lz4 writer: %w", err)
	}
	return a, nil
}

func (a *lz4Appender) Append(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	a.used = true
	if _, err := a.w.Write(p); err != nil {
		return err
	}
	return a.w.Flush()
}

func (a *lz4Appender) Stream() ([][]byte, error) {
	if !a.used {
		return nil, errors.New("lz4 appender: nothing appended")
	}
	return [][]byte{a.out.buf, a.end}, nil
}

func (a *lz4Appender) Close() error {
	a.w.Reset(nil)
	a.out.buf = nil
	return nil
}
