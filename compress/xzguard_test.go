package compress

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"

	"github.com/hoardbackup/hoard/internal/testio"
)

// xzBlockDictOffset returns the offset of the LZMA2 dictionary property
// in the first block header of an .xz stream, and the header's size.
func xzBlockDictOffset(tb testing.TB, data []byte) (int, int) {
	tb.Helper()
	hdrSize := (int(data[12]) + 1) * 4
	hdr := data[12 : 12+hdrSize]
	i := bytes.Index(hdr, []byte{0x21, 0x01})
	if i < 0 {
		tb.Fatalf("no LZMA2 filter in block header %x", hdr)
	}
	return 12 + i + 2, hdrSize
}

func TestXZGuard_ErrHugeDictionary(t *testing.T) {
	data := compressBytes(t, LZMA, 0, walLike(1000))
	off, hdrSize := xzBlockDictOffset(t, data)
	bad := bytes.Clone(data)
	bad[off] = 38 // 2 GiB
	// Keep the header's CRC32 valid, as a hostile writer would.
	hdr := bad[12 : 12+hdrSize]
	binary.LittleEndian.PutUint32(hdr[hdrSize-4:], crc32.ChecksumIEEE(hdr[:hdrSize-4]))
	_, err := decompressBytes(LZMA, bad)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "dictionary") {
		t.Fatalf("err = %v, want ErrCorrupt about the dictionary", err)
	}
}

// TestXZGuard_Walk checks that the guard follows real streams to the end:
// several blocks, uncompressed chunks, concatenated streams with padding.
func TestXZGuard_Walk(t *testing.T) {
	var all bytes.Buffer
	var want []byte
	for i, plain := range [][]byte{walLike(300 << 10), bytes.Repeat([]byte{0}, 5), randomBytes(200 << 10)} {
		var buf bytes.Buffer
		w, err := xz.WriterConfig{BlockSize: 64 << 10}.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		testio.WriteClose(t, w, plain)
		all.Write(buf.Bytes())
		if i == 0 {
			all.Write(make([]byte, 8)) // stream padding
		}
		want = append(want, plain...)
	}
	g := newXZGuard(bytes.NewReader(all.Bytes()))
	r, err := xz.NewReader(g)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("guarded stream decoded differently")
	}
	if g.off || g.state != xzStreamPadding || g.skip != 0 || len(g.acc) != 0 {
		t.Fatalf("guard lost its way: off=%v state=%d skip=%d acc=%d", g.off, g.state, g.skip, len(g.acc))
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	x := uint32(1)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}
