package storage

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"
)

// lateBytes is a download whose first Read returns a byte only once the
// request is cancelled (the stall timeout fired as the byte arrived), and
// whose later Reads fail with the cancellation, as an HTTP body does.
type lateBytes struct {
	cancelled chan struct{}
	reads     int
}

func (b *lateBytes) Read(p []byte) (int, error) {
	b.reads++
	if b.reads == 1 {
		<-b.cancelled
		p[0] = 'x'
		return 1, nil
	}
	return 0, context.Canceled
}

func (b *lateBytes) Close() error { return nil }

// TestStallReader_LateByte: a byte arriving as the stall timeout cancels
// the request does not turn the stall into a plain cancellation, which
// callers take for the end of the operation and do not retry.
func TestStallReader_LateByte(t *testing.T) {
	body := &lateBytes{cancelled: make(chan struct{})}
	r := &stallReader{ReadCloser: body, timeout: 10 * time.Millisecond, cancel: func() { close(body.cancelled) }}
	if n, err := r.Read(make([]byte, 8)); n != 1 || err != nil {
		t.Fatalf("first Read = %d, %v; want the late byte", n, err)
	}
	_, err := r.Read(make([]byte, 8))
	if !errors.Is(err, errReadStalled) || !IsTransient(err) {
		t.Errorf("Read after the stall = %v, want errReadStalled (transient)", err)
	}
	if _, err := io.ReadAll(r); !errors.Is(err, errReadStalled) {
		t.Errorf("Read after that = %v, want errReadStalled", err)
	}
}
