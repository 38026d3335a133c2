package basebackup

import (
	"io"
	"sync"
)

// Read-ahead of the server's tar stream: readAheadBuffers buffers of
// readAheadBufferSize bytes, received while the ones before are parsed,
// compressed and encrypted.
const (
	readAheadBuffers    = 4
	readAheadBufferSize = 1 << 20
)

// readAhead reads src on a goroutine of its own into a few large buffers
// and hands them to Read in order: the connection is drained while the
// caller works on what came before, so the server's walsender does not wait
// for hoard's compressor, nor hoard's compressor for the network. Memory is
// bounded by the buffers (readAheadBuffers × readAheadBufferSize).
//
// Read and close are for one goroutine; the reader owns src until Read
// has returned its error (io.EOF at the end) or close has returned.
type readAhead struct {
	full chan []byte // filled buffers, in order; closed after the last
	free chan []byte // buffers Read is done with
	done chan struct{}
	gone chan struct{} // closed when the goroutine has returned

	err  error  // src's error (io.EOF at its end); set before full closes
	cur  []byte // what Read has not handed out of the buffer it holds
	held []byte // that buffer, whole
	once sync.Once
}

// newReadAhead starts reading src.
func newReadAhead(src io.Reader) *readAhead {
	r := &readAhead{
		full: make(chan []byte, readAheadBuffers),
		free: make(chan []byte, readAheadBuffers),
		done: make(chan struct{}),
		gone: make(chan struct{}),
	}
	for range readAheadBuffers {
		r.free <- make([]byte, readAheadBufferSize)
	}
	go r.fill(src)
	return r
}

// fill reads src into free buffers until it fails or ends, or close is
// called.
func (r *readAhead) fill(src io.Reader) {
	defer close(r.gone)
	for {
		var b []byte
		select {
		case b = <-r.free:
		case <-r.done:
			return
		}
		// Fill the buffer: src (the replication stream) returns one
		// CopyData message, 32 kB or less, a call.
		n, err := io.ReadFull(src, b)
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		if n > 0 {
			select {
			case r.full <- b[:n]:
			case <-r.done:
				return
			}
		}
		if err != nil {
			r.err = err
			close(r.full)
			return
		}
	}
}

// next makes r.cur the next received bytes when it is used up, handing
// the buffer it held back to the reading goroutine; false when the
// stream has ended (r.err says how).
func (r *readAhead) next() bool {
	for len(r.cur) == 0 {
		if r.held != nil {
			r.free <- r.held[:cap(r.held)]
			r.held = nil
		}
		b, ok := <-r.full
		if !ok {
			return false
		}
		r.cur, r.held = b, b
	}
	return true
}

// Read copies out the received bytes in order, then returns src's error:
// io.EOF at its end.
func (r *readAhead) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if !r.next() {
		return 0, r.err
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// writeTo writes the next n received bytes into w from the buffers they
// were received into, without copying them out first. An error of src
// (io.ErrUnexpectedEOF at its end) comes as a streamError, w's as it is.
// w must not keep the slices it is given, as io.Writer says.
func (r *readAhead) writeTo(w io.Writer, n int64) (written int64, err error) {
	for n > 0 {
		if !r.next() {
			if r.err == io.EOF {
				return written, streamError{io.ErrUnexpectedEOF}
			}
			return written, streamError{r.err}
		}
		k := int(min(int64(len(r.cur)), n))
		m, err := w.Write(r.cur[:k])
		r.cur = r.cur[m:]
		written += int64(m)
		n -= int64(m)
		if err != nil {
			return written, err
		}
		if m < k {
			return written, io.ErrShortWrite
		}
	}
	return written, nil
}

// drain reads what is left of src up to its end and returns src's error,
// nil at io.EOF. src is the caller's again when it returns.
func (r *readAhead) drain() error {
	_, err := io.Copy(io.Discard, r)
	<-r.gone
	return err
}

// close stops the reading. A goroutine blocked in src.Read stays there
// until src returns: cancel what src reads from to end it.
func (r *readAhead) close() {
	r.once.Do(func() { close(r.done) })
}
