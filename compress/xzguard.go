package compress

import (
	"encoding/binary"
	"fmt"
	"io"
)

// maxXZDict is the largest LZMA2 dictionary a stream may ask for. xz's
// preset 9 (and so Python's lzma at any preset) uses 64 MiB; 128 MiB leaves
// room for custom writers. The xz library allocates whatever a block header
// asks for, up to 4 GiB, before it decodes a single byte.
const maxXZDict = 128 << 20

// xzGuard passes an .xz stream through unchanged while walking its
// structure (stream header, block headers, LZMA2 chunk headers, index,
// footer) to refuse a block whose dictionary exceeds maxXZDict before the
// decoder sees that header. On structure it does not expect it stops
// walking and leaves the verdict to the decoder, which checks everything.
type xzGuard struct {
	r        io.Reader
	state    int
	need     int    // bytes to collect into acc before handling them
	acc      []byte // collected bytes
	skip     int64  // bytes to pass without looking
	check    int64  // size of the check after each block
	blockLen int64  // bytes of the current block so far, for its padding
	indexLen int64  // bytes of the current index so far
	varints  int64  // index varints left; -1 while reading the record count
	varint   uint64 // varint being read
	shift    uint
	off      bool
	err      error
}

const (
	xzStreamHeader = iota
	xzStreamHeaderRest
	xzBlockStart
	xzBlockHeader
	xzChunk
	xzChunkUncompressed
	xzChunkLZMA
	xzIndex
	xzStreamPadding
)

func newXZGuard(r io.Reader) *xzGuard {
	return &xzGuard{r: r, state: xzStreamHeader, need: 12}
}

func (g *xzGuard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.r.Read(p)
	if werr := g.walk(p[:n]); werr != nil {
		g.err = werr
		return 0, werr
	}
	return n, err
}

func (g *xzGuard) walk(b []byte) error {
	for len(b) > 0 && !g.off {
		if g.skip > 0 {
			k := min(int64(len(b)), g.skip)
			g.skip -= k
			g.blockLen += k
			b = b[k:]
			continue
		}
		k := min(len(b), g.need-len(g.acc))
		g.acc = append(g.acc, b[:k]...)
		g.blockLen += int64(k)
		b = b[k:]
		if len(g.acc) < g.need {
			continue
		}
		acc := g.acc
		g.acc = g.acc[:0]
		if err := g.handle(acc); err != nil {
			return err
		}
	}
	return nil
}

// handle acts on need collected bytes and sets what to collect next.
func (g *xzGuard) handle(acc []byte) error {
	switch g.state {
	case xzStreamHeader, xzStreamHeaderRest:
		hdr := acc
		if g.state == xzStreamHeaderRest {
			hdr = append([]byte{0xfd}, acc...)
		}
		if string(hdr[:6]) != "\xfd7zXZ\x00" {
			g.off = true
			return nil
		}
		// Check sizes by check ID, from the .xz file format spec.
		sizes := [16]int64{0, 4, 4, 4, 8, 8, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64}
		g.check = sizes[hdr[7]&0x0f]
		g.state, g.need = xzBlockStart, 1
	case xzBlockStart:
		if acc[0] == 0 { // index indicator
			g.state, g.need, g.indexLen, g.varints, g.varint, g.shift = xzIndex, 1, 1, -1, 0, 0
			return nil
		}
		g.blockLen = 1
		g.state, g.need = xzBlockHeader, (int(acc[0])+1)*4-1
	case xzBlockHeader:
		if err := g.blockHeader(acc); err != nil {
			return err
		}
		g.state, g.need = xzChunk, 1
	case xzChunk:
		c := acc[0]
		switch {
		case c == 0: // end of the LZMA2 data: block padding, then the check
			g.skip = (4-g.blockLen%4)%4 + g.check
			g.state, g.need = xzBlockStart, 1
		case c == 1 || c == 2:
			g.state, g.need = xzChunkUncompressed, 2
		case c >= 0x80:
			g.state, g.need = xzChunkLZMA, 4
			if c >= 0xc0 { // new properties byte follows
				g.need = 5
			}
		default:
			g.off = true
		}
	case xzChunkUncompressed:
		g.skip = int64(binary.BigEndian.Uint16(acc)) + 1
		g.state, g.need = xzChunk, 1
	case xzChunkLZMA:
		g.skip = int64(binary.BigEndian.Uint16(acc[2:4])) + 1
		g.state, g.need = xzChunk, 1
	case xzIndex:
		g.indexLen++
		g.varint |= uint64(acc[0]&0x7f) << g.shift
		g.shift += 7
		if acc[0]&0x80 != 0 {
			if g.shift >= 63 {
				g.off = true
			}
			return nil
		}
		v := g.varint
		g.varint, g.shift = 0, 0
		if g.varints < 0 {
			if v > 1<<40 {
				g.off = true
				return nil
			}
			g.varints = int64(2 * v)
		} else {
			g.varints--
		}
		if g.varints == 0 {
			// Index padding, CRC32, then the 12-byte stream footer.
			g.skip = (4-g.indexLen%4)%4 + 4 + 12
			g.state, g.need = xzStreamPadding, 1
		}
	case xzStreamPadding:
		switch acc[0] {
		case 0:
			g.skip = 3 // stream padding comes in groups of four zeros
		case 0xfd:
			g.state, g.need = xzStreamHeaderRest, 11
		default:
			g.off = true
		}
	}
	return nil
}

// blockHeader checks the dictionary size of a block's LZMA2 filter. hdr is
// the block header after its size byte.
func (g *xzGuard) blockHeader(hdr []byte) error {
	flags := hdr[0]
	pos := 1
	varint := func() (uint64, bool) {
		var v uint64
		for i := 0; i < 9 && pos < len(hdr); i++ {
			c := hdr[pos]
			pos++
			v |= uint64(c&0x7f) << (7 * i)
			if c&0x80 == 0 {
				return v, true
			}
		}
		return 0, false
	}
	for _, present := range []bool{flags&0x40 != 0, flags&0x80 != 0} {
		if present {
			if _, ok := varint(); !ok {
				g.off = true
				return nil
			}
		}
	}
	for range int(flags&3) + 1 {
		id, ok1 := varint()
		size, ok2 := varint()
		if !ok1 || !ok2 || size > uint64(len(hdr)-pos) {
			g.off = true
			return nil
		}
		props := hdr[pos : pos+int(size)]
		pos += int(size)
		if id == 0x21 && size == 1 && props[0] <= 40 {
			// LZMA2 dictionary size: (2 | bit 0) << (11 + bits 1..).
			dict := int64(2|props[0]&1) << (props[0]/2 + 11)
			if dict > maxXZDict {
				return fmt.Errorf("xz block asks for a %d MiB dictionary, more than the %d MiB limit", dict>>20, maxXZDict>>20)
			}
		}
	}
	return nil
}
