package basebackup

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/storage"
)

func TestReadAhead(t *testing.T) {
	src := make([]byte, 3*readAheadBufferSize+12345)
	for i := range src {
		src[i] = byte(i * 7)
	}
	// One byte at a time from the source, odd sizes out of Read: every
	// byte arrives once, in order.
	r := newReadAhead(iotest.HalfReader(bytes.NewReader(src)))
	var got bytes.Buffer
	buf := make([]byte, 7777)
	for {
		n, err := r.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got.Bytes(), src) {
		t.Fatalf("read %d bytes, differing from the %d of the source", got.Len(), len(src))
	}
	if err := r.drain(); err != nil {
		t.Fatalf("drain at the end: %v", err)
	}
}

func TestReadAhead_ErrSource(t *testing.T) {
	errBroken := errors.New("connection lost")
	src := io.MultiReader(bytes.NewReader(make([]byte, readAheadBufferSize+10)), iotest.ErrReader(errBroken))
	r := newReadAhead(src)
	n, err := io.Copy(io.Discard, r)
	if !errors.Is(err, errBroken) {
		t.Fatalf("copy = %d, %v; want the source's error", n, err)
	}
	if n != readAheadBufferSize+10 {
		t.Errorf("read %d bytes before the error, want %d", n, readAheadBufferSize+10)
	}
	// The bytes received before the failure are handed out; drain
	// reports the failure too.
	if err := r.drain(); !errors.Is(err, errBroken) {
		t.Errorf("drain = %v, want the source's error", err)
	}
}

func TestReadAhead_Close(t *testing.T) {
	// A reader that is closed with buffers full and unread stops: its
	// goroutine does not wait for Read forever.
	r := newReadAhead(bytes.NewReader(make([]byte, 10*readAheadBufferSize)))
	if _, err := r.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	r.close()
	<-r.gone
}

func TestRun_ArchiveReadsToEnd(t *testing.T) {
	// archive reads its stream to the end, past the end-of-archive
	// marker, so that the next archive's messages are the next read of
	// the connection, and nothing reads the connection after it returns.
	r, g := newTestRun(t.Context(), storage.NewMem(), &archive.Codec{}, 1<<20, 2)
	stream := bytes.NewReader(append(serverTar(t, mainEntries(10, 3000)), make([]byte, 4096)...))
	if err := r.archive(stream, "base.tar", true, "pgdata/"); err != nil {
		t.Fatal(err)
	}
	if stream.Len() != 0 {
		t.Errorf("%d bytes of the stream left unread", stream.Len())
	}
	if r.ra != nil {
		t.Error("the read-ahead is still recorded after the archive")
	}
	finishRun(t, r, g)
}

// sizeRecorder records the sizes of the writes it takes.
type sizeRecorder struct {
	bytes.Buffer
	largest int
}

func (s *sizeRecorder) Write(p []byte) (int, error) {
	s.largest = max(s.largest, len(p))
	return s.Buffer.Write(p)
}

// TestTarSource: a tar reader over a tarSource, whose regular members'
// data the caller takes with copyData straight from the read-ahead's
// buffers (writes of up to a whole buffer, not the tar reader's copies),
// reads every header and every other member's data as a tar reader over
// the stream itself does: members of every size around the 512-byte
// blocks, empty ones, a PAX long name, members larger than a buffer.
func TestTarSource(t *testing.T) {
	entries := []tarEntry{
		{name: "d", typ: tar.TypeDir},
		{name: "d/big", typ: tar.TypeReg, size: 3*readAheadBufferSize + 1000},
		{name: "d/empty", typ: tar.TypeReg},
		{name: "d/" + strings.Repeat("long", 40), typ: tar.TypeReg, size: 513},
		{name: "d/link", typ: tar.TypeSymlink, link: "big"},
		{name: "d/kept", typ: tar.TypeReg, size: 700},
		{name: "d/511", typ: tar.TypeReg, size: 511},
		{name: "d/512", typ: tar.TypeReg, size: 512},
		{name: "d/after", typ: tar.TypeReg, size: readAheadBufferSize},
	}
	stream := serverTar(t, entries)
	src := &tarSource{ra: newReadAhead(iotest.HalfReader(bytes.NewReader(stream)))}
	defer src.ra.close()
	tr := tar.NewReader(src)
	var largest int
	for i := 0; ; i++ {
		h, err := tr.Next()
		if err == io.EOF {
			if i != len(entries) {
				t.Fatalf("%d members, want %d", i, len(entries))
			}
			break
		}
		if err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
		e := entries[i]
		if strings.TrimSuffix(h.Name, "/") != e.name || h.Typeflag != e.typ {
			t.Fatalf("member %d: %s type %c, want %s type %c", i, h.Name, h.Typeflag, e.name, e.typ)
		}
		if e.typ != tar.TypeReg {
			continue
		}
		var got []byte
		if e.name == "d/kept" {
			// Read through the tar reader, as control members are.
			if got, err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		} else {
			if !direct(h) {
				t.Fatalf("%s: not direct", h.Name)
			}
			var w sizeRecorder
			n, err := src.copyData(&w, h.Size)
			if err != nil || n != h.Size {
				t.Fatalf("%s: copyData = %d, %v", h.Name, n, err)
			}
			got = w.Bytes()
			largest = max(largest, w.largest)
		}
		if !bytes.Equal(got, fileData(e.name, e.size)) {
			t.Fatalf("%s: %d bytes differ from the member's %d", h.Name, len(got), e.size)
		}
	}
	if largest <= 128<<10 {
		t.Errorf("largest write %d bytes: the data was copied out of the buffers", largest)
	}
	if err := src.ra.drain(); err != nil {
		t.Fatal(err)
	}
	// A PAX sparse member's stored data is not its size: read through the
	// tar reader.
	if direct(&tar.Header{Typeflag: tar.TypeReg, PAXRecords: map[string]string{"GNU.sparse.major": "1"}}) {
		t.Error("a PAX sparse member is direct")
	}
}

// TestTarSource_ErrShort: a stream that ends inside a member's data is a
// stream error (io.ErrUnexpectedEOF), not a write error of the chunk.
func TestTarSource_ErrShort(t *testing.T) {
	stream := serverTar(t, []tarEntry{{name: "f", typ: tar.TypeReg, size: 5000}})
	src := &tarSource{ra: newReadAhead(bytes.NewReader(stream[:2000]))}
	defer src.ra.close()
	h, err := tar.NewReader(src).Next()
	if err != nil {
		t.Fatal(err)
	}
	n, err := src.copyData(io.Discard, h.Size)
	var se streamError
	if !errors.As(err, &se) || !errors.Is(err, io.ErrUnexpectedEOF) || n != 2000-512 {
		t.Fatalf("copyData = %d, %v; want %d bytes and a stream error", n, err, 2000-512)
	}
}
