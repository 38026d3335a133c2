package compress

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// fuzzReader feeds arbitrary bytes to alg's reader: it must never panic,
// and every error must wrap ErrCorrupt (the source here never fails).
func fuzzReader(f *testing.F, alg string) {
	for _, n := range []int{0, 1, 300, 70 << 10} {
		data := compressBytes(f, alg, 0, walLike(n))
		f.Add(data)
		if len(data) > 2 {
			f.Add(data[:len(data)/2])
		}
	}
	f.Add([]byte{})
	f.Add([]byte("not compressed"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data), alg)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		// Cap the output: a tiny input may legally expand a lot.
		_, err = io.Copy(io.Discard, io.LimitReader(r, 64<<20))
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error not wrapping ErrCorrupt: %v", err)
		}
	})
}

func FuzzReader_snappy(f *testing.F) { fuzzReader(f, Snappy) }
func FuzzReader_zstd(f *testing.F)   { fuzzReader(f, Zstd) }
func FuzzReader_lzma(f *testing.F)   { fuzzReader(f, LZMA) }
func FuzzReader_lz4(f *testing.F)    { fuzzReader(f, LZ4) }
