package basebackup

import (
	"bytes"
	"errors"
	"io"
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
