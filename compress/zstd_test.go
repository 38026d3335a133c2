package compress

import (
	"bytes"
	"errors"
	"testing"

	"github.com/hoardbackup/hoard/internal/testio"
)

// failWriter fails every write.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestZstdPooledEncoders: streams written one after another by pooled
// encoders, with and without checksum, after a stream that failed and one
// closed twice, each read back whole; the frame declares a 2 MiB window
// and a content checksum only when asked for one.
func TestZstdPooledEncoders(t *testing.T) {
	for i := 0; i < 4; i++ {
		for _, noSum := range []bool{false, true} {
			plain := walLike(3<<20 + i)
			// A failed stream: its encoder must not come back dirty.
			w, err := NewWriterOptions(failWriter{}, Zstd, Options{NoChecksum: noSum})
			if err != nil {
				t.Fatal(err)
			}
			_, _ = w.Write(plain)
			if err := w.Close(); err == nil {
				t.Fatal("closing a stream whose writer fails: no error")
			}
			var buf bytes.Buffer
			w, err = NewWriterOptions(&buf, Zstd, Options{NoChecksum: noSum})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(plain[:1<<20]); err != nil {
				t.Fatal(err)
			}
			testio.WriteClose(t, w, plain[1<<20:])
			if err := w.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if _, err := w.Write([]byte("x")); err == nil {
				t.Fatal("write after close accepted")
			}
			frame := buf.Bytes()
			fhd := frame[4]
			if got := fhd&4 != 0; got == noSum {
				t.Errorf("NoChecksum %v: frame header descriptor %#x has content checksum flag %v", noSum, fhd, got)
			}
			if fhd&0x20 != 0 {
				t.Fatalf("frame header descriptor %#x: single segment, no window descriptor", fhd)
			}
			if wlog := 10 + int(frame[5]>>3); wlog != 21 || frame[5]&7 != 0 {
				t.Errorf("window descriptor %#x: not 2 MiB", frame[5])
			}
			got, err := decompressBytes(Zstd, frame)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("stream %d (NoChecksum %v): round trip differs (err %v)", i, noSum, err)
			}
		}
	}
}
