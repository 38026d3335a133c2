package compress

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"slices"
	"testing"

	"github.com/pierrec/lz4/v4"

	"github.com/hoardbackup/hoard/internal/testio"
)

// walLike returns n bytes that compress like WAL: runs of zeros and
// repeated records mixed with noise.
func walLike(n int) []byte {
	rng := rand.New(rand.NewSource(int64(n)))
	b := make([]byte, n)
	for i := 0; i < n; {
		run := rng.Intn(512) + 1
		switch rng.Intn(3) {
		case 0: // zeros
		case 1:
			for j := i; j < i+run && j < n; j++ {
				b[j] = byte(j % 61)
			}
		default:
			end := min(i+run, n)
			rng.Read(b[i:end])
		}
		i += run
	}
	return b
}

func compressBytes(tb testing.TB, alg string, level int, plain []byte) []byte {
	tb.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, alg, level)
	if err != nil {
		tb.Fatal(err)
	}
	testio.WriteClose(tb, w, plain)
	return buf.Bytes()
}

// writeInPieces writes plain to w in writes of piece bytes, as a chunk's
// upload does, then closes w.
func writeInPieces(tb testing.TB, w io.WriteCloser, plain []byte, piece int) {
	tb.Helper()
	for p := range slices.Chunk(plain, piece) {
		if _, err := w.Write(p); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
}

func decompressBytes(alg string, data []byte) ([]byte, error) {
	r, err := NewReader(bytes.NewReader(data), alg)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func TestRoundTrip(t *testing.T) {
	for _, alg := range append([]string{None}, Algorithms...) {
		for _, n := range []int{0, 1, 64<<10 + 1, 5 << 20} {
			for _, level := range []int{0, 1, 6} {
				plain := walLike(n)
				data := compressBytes(t, alg, level, plain)
				got, err := decompressBytes(alg, data)
				if err != nil {
					t.Fatalf("%s level %d n=%d: %v", alg, level, n, err)
				}
				if !bytes.Equal(got, plain) {
					t.Fatalf("%s level %d n=%d: round trip differs", alg, level, n)
				}
			}
		}
	}
}

func TestSnappy_Empty(t *testing.T) {
	if data := compressBytes(t, Snappy, 0, nil); len(data) != 0 {
		t.Fatalf("empty snappy stream is %d bytes, want 0 as python-snappy writes", len(data))
	}
	got, err := decompressBytes(Snappy, nil)
	if err != nil || len(got) != 0 {
		t.Fatalf("0-byte snappy stream: %q, %v", got, err)
	}
}

func TestReader_ErrCorrupt(t *testing.T) {
	plain := walLike(300 << 10)
	for _, alg := range Algorithms {
		data := compressBytes(t, alg, 0, plain)
		cuts := []int{1, 4, 10, len(data) / 3, len(data) / 2, len(data) - 1}
		if alg != Snappy {
			cuts = append(cuts, 0)
		}
		for _, n := range cuts {
			got, err := decompressBytes(alg, data[:n])
			if err == nil && alg == Snappy && bytes.HasPrefix(plain, got) {
				// The framing format has no end marker: a cut at a
				// chunk boundary reads as a shorter stream. The codec
				// catches it with original-file-size.
				continue
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("%s cut at %d of %d: err = %v, want ErrCorrupt", alg, n, len(data), err)
			}
		}
		bad := bytes.Clone(data)
		bad[len(bad)/2] ^= 0xff
		if got, err := decompressBytes(alg, bad); err == nil && bytes.Equal(got, plain) {
			t.Errorf("%s: flipped byte went unnoticed", alg)
		}
		if _, err := decompressBytes(alg, []byte("this is not compressed at all, not a bit")); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s garbage: err = %v, want ErrCorrupt", alg, err)
		}
	}
}

func TestReader_ErrSource(t *testing.T) {
	boom := errors.New("network down")
	for _, alg := range Algorithms {
		data := compressBytes(t, alg, 0, walLike(100<<10))
		r, err := NewReader(io.MultiReader(bytes.NewReader(data[:len(data)/2]), errReader{boom}), alg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(r)
		if !errors.Is(err, boom) || errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want the source's error", alg, err)
		}
	}
}

func TestNewReader_ErrUnknown(t *testing.T) {
	if _, err := NewReader(bytes.NewReader(nil), "gzip"); !errors.Is(err, ErrUnknownAlgorithm) {
		t.Errorf("NewReader(gzip) = %v", err)
	}
	if _, err := NewWriter(io.Discard, "gzip", 0); !errors.Is(err, ErrUnknownAlgorithm) {
		t.Errorf("NewWriter(gzip) = %v", err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// TestLZ4_BlockSize checks that lz4 frames declare 64 KiB blocks (the
// frame descriptor's BD byte, block maximum size 4), whatever the options.
func TestLZ4_BlockSize(t *testing.T) {
	for _, o := range []Options{{}, {Level: 3}, {Concurrency: 4}, {NoChecksum: true}} {
		var buf bytes.Buffer
		w, err := NewWriterOptions(&buf, LZ4, o)
		if err != nil {
			t.Fatal(err)
		}
		testio.WriteClose(t, w, walLike(1<<20))
		frame := buf.Bytes()
		// Magic (4 bytes), FLG, BD.
		if len(frame) < 6 || frame[5]>>4&7 != 4 {
			t.Errorf("%+v: frame header % x: block maximum size is not 64 KiB (4)", o, frame[:min(len(frame), 7)])
		}
		got, err := decompressBytes(LZ4, frame)
		if err != nil || !bytes.Equal(got, walLike(1<<20)) {
			t.Errorf("%+v: round trip: %v", o, err)
		}
	}
}

// BenchmarkLZ4BlockSize compresses and decompresses 16 MiB of WAL-like data
// as lz4 frames of each block size, in 1 MiB writes as a chunk's upload
// does; the ratio is the compressed size over the plaintext's.
func BenchmarkLZ4BlockSize(b *testing.B) {
	plain := walLike(16 << 20)
	for _, bs := range []lz4.BlockSize{lz4.Block64Kb, lz4.Block256Kb, lz4.Block1Mb, lz4.Block4Mb} {
		compress := func(w io.Writer) {
			lw := lz4.NewWriter(w)
			if err := lw.Apply(lz4.BlockSizeOption(bs), lz4.ChecksumOption(false)); err != nil {
				b.Fatal(err)
			}
			for i := 0; i < len(plain); i += 1 << 20 {
				if _, err := lw.Write(plain[i : i+1<<20]); err != nil {
					b.Fatal(err)
				}
			}
			if err := lw.Close(); err != nil {
				b.Fatal(err)
			}
		}
		var frame bytes.Buffer
		compress(&frame)
		b.Run("encode/"+bs.String(), func(b *testing.B) {
			b.SetBytes(int64(len(plain)))
			for b.Loop() {
				compress(io.Discard)
			}
			b.ReportMetric(float64(frame.Len())/float64(len(plain)), "ratio")
		})
		b.Run("decode/"+bs.String(), func(b *testing.B) {
			b.SetBytes(int64(len(plain)))
			for b.Loop() {
				if _, err := io.Copy(io.Discard, lz4.NewReader(bytes.NewReader(frame.Bytes()))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestMaxLevel: every algorithm is known to MaxLevel and writes a stream
// that reads back at its highest level; other names are unknown.
func TestMaxLevel(t *testing.T) {
	plain := walLike(64<<10 + 1)
	for _, alg := range Algorithms {
		max, ok := MaxLevel(alg)
		if !ok {
			t.Fatalf("MaxLevel(%q) does not know it", alg)
		}
		got, err := decompressBytes(alg, compressBytes(t, alg, max, plain))
		if err != nil || !bytes.Equal(got, plain) {
			t.Errorf("%s level %d: round trip differs (err %v)", alg, max, err)
		}
	}
	for _, alg := range []string{None, "gzip", "ZSTD"} {
		if _, ok := MaxLevel(alg); ok {
			t.Errorf("MaxLevel(%q) knows it", alg)
		}
	}
}
