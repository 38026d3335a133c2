package archive

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"path/filepath"
	"testing"

	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// fillerSize is how much filler each planted object carries after its
// valid stream: far more than storedLimit allows for what it decodes to.
const fillerSize = 256 << 20

// countingSource counts the stored bytes a decoder reads.
type countingSource struct {
	r io.Reader
	n int64
}

func (c *countingSource) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// fillerReader yields n bytes made of unit repeated, then io.EOF, without
// holding them.
type fillerReader struct {
	unit []byte
	off  int
	n    int64
}

func (f *fillerReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, io.EOF
	}
	k := 0
	for k < len(p) && f.n > 0 {
		c := copy(p[k:min(len(p), k+int(f.n))], f.unit[f.off:])
		f.off = (f.off + c) % len(f.unit)
		k += c
		f.n -= int64(c)
	}
	return k, nil
}

// skippableFrame is a zstd or lz4 skippable frame (both formats share the
// magic 0x184D2A5?) of size bytes in all.
func skippableFrame(size int) []byte {
	b := binary.LittleEndian.AppendUint32(nil, 0x184D2A50)
	b = binary.LittleEndian.AppendUint32(b, uint32(size-8))
	return append(b, make([]byte, size-8)...)
}

// snappyPadding is a snappy framing padding chunk (type 0xfe) of size
// bytes in all.
func snappyPadding(size int) []byte {
	b := []byte{0xfe, byte(size - 4), byte((size - 4) >> 8), byte((size - 4) >> 16)}
	return append(b, make([]byte, size-4)...)
}

// TestCodec_Decode_ErrStoredTooLarge plants objects whose stored bytes go
// on long after what they decode to: a valid stream followed by the
// filler each format skips (zstd's and lz4's skippable frames, snappy's
// padding chunks, xz's stream padding), which decodes to nothing, and in
// a site with keys an authentic object with bytes appended, whose HMAC
// fails only at its end. Each must be refused, naming it, after reading
// about storedLimit of what it decoded, not all of it.
func TestCodec_Decode_ErrStoredTooLarge(t *testing.T) {
	plain := walData(1 << 20)
	cs := codecs(t)
	tests := []struct {
		name   string
		codec  string
		filler []byte
	}{
		{"zstd", "zstd", skippableFrame(1 << 20)},
		{"lz4", "lz4", skippableFrame(1 << 20)},
		{"snappy", "snappy", snappyPadding(64 << 10)},
		{"lzma", "lzma", make([]byte, 64<<10)},
		{"zstd+enc", "zstd+enc", []byte("appended bytes, decrypted to noise")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cs[tt.codec]
			data, md := encodeBytes(t, c, plain, false)
			src := &countingSource{r: io.MultiReader(bytes.NewReader(data), &fillerReader{unit: tt.filler, n: fillerSize})}
			rc, err := c.Decode("site/xlog/000000010000000000000003", src, md)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			n, err := io.Copy(io.Discard, rc)
			var de *DecodeError
			if !errors.As(err, &de) || de.Key != "site/xlog/000000010000000000000003" || !errors.Is(err, ErrStoredTooLarge) {
				t.Fatalf("decoded %d bytes from %d stored, err %v; want a DecodeError of the key wrapping ErrStoredTooLarge", n, src.n, err)
			}
			// The decoder may have read one buffer past the limit
			// of what it decoded.
			if most := storedLimit(int64(len(plain))) + decodeReadMax; src.n > most {
				t.Errorf("read %d stored bytes, want at most %d", src.n, most)
			}
		})
	}
}

// TestCodec_Decode_StoredLimitOK decodes real streams at the edge of what
// storedLimit allows: incompressible data read with a buffer far larger
// than a block, and the daemon's .partial streams appended a few bytes at
// a time (a block each).
func TestCodec_Decode_StoredLimitOK(t *testing.T) {
	// More than storedSlack, read with a buffer larger still: the
	// decoder's count must keep up with the stored bytes it reads.
	random := make([]byte, storedSlack+storedSlack/2)
	rand.Read(random)
	for name, c := range codecs(t) {
		if c.Compression == compress.LZMA && testing.Short() {
			continue // seconds to compress per MiB under -race
		}
		t.Run("Incompressible/"+name, func(t *testing.T) {
			data, md := encodeBytes(t, c, random, true)
			rc, err := c.Decode("obj", bytes.NewReader(data), md)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			var out bytes.Buffer
			if _, err := io.CopyBuffer(&out, rc, make([]byte, 64<<20)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), random) {
				t.Fatal("decoded bytes differ")
			}
		})
	}
	for _, alg := range []string{compress.Zstd, compress.LZ4, compress.Snappy} {
		t.Run("Appended/"+alg, func(t *testing.T) {
			app, err := compress.NewAppender(alg, compress.Options{NoChecksum: true})
			if err != nil {
				t.Fatal(err)
			}
			defer app.Close()
			plain := random[:4<<20]
			for i := 0; i < len(plain); i += 8 {
				if err := app.Append(plain[i : i+8]); err != nil {
					t.Fatal(err)
				}
			}
			parts, err := app.Stream()
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeAll(&Codec{}, "obj", bytes.Join(parts, nil), storage.Metadata{MetaCompressionAlgorithm: alg})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, plain) {
				t.Fatal("decoded bytes differ")
			}
		})
	}
}

// TestArchive_FetchWAL_ErrStoredTooLarge: in a site without keys, a
// segment object whose stream goes on with 64 MiB of snappy padding after
// the segment's own bytes decodes to the segment, hash and all; wal-fetch
// refuses it (a DecodeError: PostgreSQL stops recovery) and puts nothing
// in pg_wal, instead of downloading all of it and delivering the segment.
func TestArchive_FetchWAL_ErrStoredTooLarge(t *testing.T) {
	a := walTestArchive(t, false)
	pushSegments(t, a, 3, 3)
	name := segName(3)
	storetest.Rewrite(t, a.Store, a.Layout.WALKey(name), func(b []byte, _ storage.Metadata) []byte {
		return append(b, bytes.Repeat(snappyPadding(64<<10), 1024)...)
	})
	pgwal := t.TempDir()
	err := a.FetchWAL(context.Background(), name, filepath.Join(pgwal, "RECOVERYXLOG"), FetchOptions{})
	var de *DecodeError
	if !errors.As(err, &de) || !errors.Is(err, ErrStoredTooLarge) {
		t.Fatalf("FetchWAL = %v, want a DecodeError wrapping ErrStoredTooLarge", err)
	}
	if got := testio.DirNames(t, pgwal); len(got) != 0 {
		t.Fatalf("pg_wal holds %v after a refused fetch", got)
	}
}
