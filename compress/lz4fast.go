package compress

import (
	"encoding/binary"
	"io"
	"math/bits"

	"github.com/pierrec/lz4/v4"
)

// lz4Writer writes an LZ4 frame (the format of the lz4 command-line tool,
// LZ4F and python-lz4, which PGHoard reads) at lz4's default level: 64 KiB
// independent blocks, no block checksums, and the content checksum
// (xxHash32 of the whole stream) unless told otherwise, the same framing
// pierrec/lz4's writer produced for hoard. Its blocks are compressed by
// pierrec/lz4's CompressorCCompat (reference lz4's fast mode, with a 16-bit
// table for blocks of 64 KiB) in the caller's goroutine, or by a few
// workers handed batches of blocks (lz4Par), without the goroutine per
// call, channels and per-block buffers of pierrec/lz4's Writer: on a
// BASE_BACKUP tar of pgbench data and random bytes that costs a fraction
// of the Writer's CPU per byte (see docs/benchmarks.md).
type lz4Writer struct {
	w        io.Writer
	checksum bool
	started  bool
	closed   bool
	err      error

	buf []byte // the block being filled, lz4BlockMax bytes
	n   int    // bytes of buf filled
	out []byte // 4-byte block size, then room for a compressed block
	c   lz4.CompressorCCompat
	sum xxh32
	par *lz4Par // the workers compressing blocks, when there are several
}

const (
	lz4BlockMax  = 64 << 10
	lz4FrameFLG  = 0x60 // version 01, independent blocks
	lz4FrameBD   = 0x40 // 64 KiB blocks
	lz4FlagCksum = 0x04 // content checksum
)

// newLZ4Writer returns a frame writer whose blocks are compressed in the
// caller's goroutine, or, with workers > 1, by that many goroutines
// (lz4Par) while the caller writes the finished blocks in order.
func newLZ4Writer(w io.Writer, checksum bool, workers int) *lz4Writer {
	z := &lz4Writer{
		w:        w,
		checksum: checksum,
		out:      make([]byte, 0, 4+lz4BlockMax),
	}
	if workers > 1 {
		z.par = newLZ4Par(workers)
	} else {
		z.buf = make([]byte, lz4BlockMax)
	}
	return z
}

// start writes the frame header.
func (z *lz4Writer) start() error {
	z.started = true
	flg := byte(lz4FrameFLG)
	if z.checksum {
		flg |= lz4FlagCksum
	}
	hdr := []byte{0x04, 0x22, 0x4d, 0x18, flg, lz4FrameBD, 0}
	hdr[6] = byte(xxh32Sum(hdr[4:6]) >> 8)
	return z.write(hdr)
}

func (z *lz4Writer) write(p []byte) error {
	if z.err != nil {
		return z.err
	}
	if _, err := z.w.Write(p); err != nil {
		z.err = err
	}
	return z.err
}

func (z *lz4Writer) Write(p []byte) (int, error) {
	if z.closed {
		return 0, errLZ4Closed
	}
	if z.err != nil {
		return 0, z.err
	}
	if !z.started {
		if err := z.start(); err != nil {
			return 0, err
		}
	}
	n := len(p)
	if z.par != nil {
		if z.checksum {
			z.sum.write(p)
		}
		if err := z.par.write(p, z.write); err != nil {
			return 0, err
		}
		return n, nil
	}
	for len(p) > 0 {
		if z.n == 0 && len(p) >= lz4BlockMax {
			// A whole block in p: compress it from there.
			if err := z.block(p[:lz4BlockMax]); err != nil {
				return n - len(p), err
			}
			p = p[lz4BlockMax:]
			continue
		}
		c := copy(z.buf[z.n:], p)
		z.n += c
		p = p[c:]
		if z.n == lz4BlockMax {
			if err := z.block(z.buf); err != nil {
				return n - len(p), err
			}
			z.n = 0
		}
	}
	return n, nil
}

// block writes src as one block: compressed when that makes it smaller,
// as it is otherwise.
func (z *lz4Writer) block(src []byte) error {
	if z.checksum {
		z.sum.write(src)
	}
	z.out = appendLZ4Block(&z.c, z.out[:0], src)
	return z.write(z.out)
}

// appendLZ4Block appends src to dst as one stored block, its size word and
// its bytes: compressed when that makes it smaller, as they are otherwise.
// dst needs room for 4+len(src) more bytes.
func appendLZ4Block(c *lz4.CompressorCCompat, dst, src []byte) []byte {
	at := len(dst)
	room := dst[at : at+4+len(src)]
	// With no more room than src, 0 (or an error) means it does not
	// compress.
	n, err := c.CompressBlock(src, room[4:])
	if n == 0 || err != nil {
		binary.LittleEndian.PutUint32(room, uint32(len(src))|1<<31)
		copy(room[4:], src)
		return dst[:at+4+len(src)]
	}
	binary.LittleEndian.PutUint32(room, uint32(n))
	return dst[:at+4+n]
}

// Close writes what is buffered, the end mark and the content checksum. It
// does not close the underlying writer.
func (z *lz4Writer) Close() error {
	if z.closed {
		return z.err
	}
	if z.err == nil && !z.started {
		_ = z.start()
	}
	if z.par != nil {
		// Ends the workers whatever happened before.
		_ = z.par.close(z.write, z.err != nil)
	}
	if z.err == nil && z.n > 0 {
		_ = z.block(z.buf[:z.n])
		z.n = 0
	}
	z.closed = true
	if z.err != nil {
		return z.err
	}
	end := binary.LittleEndian.AppendUint32(z.out[:0], 0)
	if z.checksum {
		end = binary.LittleEndian.AppendUint32(end, z.sum.sum())
	}
	return z.write(end)
}

type lz4Error string

func (e lz4Error) Error() string { return string(e) }

const errLZ4Closed = lz4Error("lz4 writer: write after close")

// xxh32 is the streaming xxHash32 (seed 0) of an LZ4 frame's content
// checksum.
type xxh32 struct {
	v     [4]uint32
	buf   [16]byte
	nbuf  int
	total uint64
	init  bool
}

const (
	xxhP1 uint32 = 2654435761
	xxhP2 uint32 = 2246822519
	xxhP3 uint32 = 3266489917
	xxhP4 uint32 = 668265263
	xxhP5 uint32 = 374761393
)

func xxhRound(acc, in uint32) uint32 {
	return bits.RotateLeft32(acc+in*xxhP2, 13) * xxhP1
}

func (x *xxh32) write(p []byte) {
	if !x.init {
		p1, p2 := xxhP1, xxhP2 // wrapping arithmetic, as the reference's
		x.v = [4]uint32{p1 + p2, p2, 0, -p1}
		x.init = true
	}
	x.total += uint64(len(p))
	if x.nbuf > 0 {
		c := copy(x.buf[x.nbuf:], p)
		x.nbuf += c
		p = p[c:]
		if x.nbuf < 16 {
			return
		}
		x.stripes(x.buf[:])
		x.nbuf = 0
	}
	m := len(p) &^ 15
	x.stripes(p[:m])
	x.nbuf = copy(x.buf[:], p[m:])
}

func (x *xxh32) stripes(p []byte) {
	v0, v1, v2, v3 := x.v[0], x.v[1], x.v[2], x.v[3]
	for ; len(p) >= 16; p = p[16:] {
		v0 = xxhRound(v0, binary.LittleEndian.Uint32(p[0:]))
		v1 = xxhRound(v1, binary.LittleEndian.Uint32(p[4:]))
		v2 = xxhRound(v2, binary.LittleEndian.Uint32(p[8:]))
		v3 = xxhRound(v3, binary.LittleEndian.Uint32(p[12:]))
	}
	x.v = [4]uint32{v0, v1, v2, v3}
}

func (x *xxh32) sum() uint32 {
	var h uint32
	if x.total >= 16 {
		h = bits.RotateLeft32(x.v[0], 1) + bits.RotateLeft32(x.v[1], 7) +
			bits.RotateLeft32(x.v[2], 12) + bits.RotateLeft32(x.v[3], 18)
	} else {
		h = xxhP5
	}
	h += uint32(x.total)
	p := x.buf[:x.nbuf]
	for ; len(p) >= 4; p = p[4:] {
		h += binary.LittleEndian.Uint32(p) * xxhP3
		h = bits.RotateLeft32(h, 17) * xxhP4
	}
	for _, c := range p {
		h += uint32(c) * xxhP5
		h = bits.RotateLeft32(h, 11) * xxhP1
	}
	h ^= h >> 15
	h *= xxhP2
	h ^= h >> 13
	h *= xxhP3
	h ^= h >> 16
	return h
}

// xxh32Sum is the xxHash32 (seed 0) of p.
func xxh32Sum(p []byte) uint32 {
	var x xxh32
	x.write(p)
	return x.sum()
}
