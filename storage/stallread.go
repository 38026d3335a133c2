package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// errReadStalled ends a download whose server sent no byte for the
// store's stall timeout. It is transient: unlike the cancellation that
// ends the request, it says the object may be read again.
var errReadStalled = errors.New("the server sent no byte")

// stallReader is the body of a download whose request runs under
// cancel's context: a Read that waits longer than timeout cancels it,
// which ends the Read, and fails with errReadStalled. It is for a client
// whose own deadline is longer than StallTimeout (Swift's, which its
// uploads need: see swiftDataTimeout). Close cancels too. Once a Read
// has stalled, every error but io.EOF is errReadStalled, also when the Read that
// stalled returned a byte arriving as the request was cancelled and the
// cancellation shows only at the next.
type stallReader struct {
	io.ReadCloser
	timeout time.Duration
	cancel  context.CancelFunc
	stalled atomic.Bool
}

func (r *stallReader) Read(p []byte) (int, error) {
	if r.timeout <= 0 {
		return r.ReadCloser.Read(p)
	}
	t := time.AfterFunc(r.timeout, func() {
		r.stalled.Store(true)
		r.cancel()
	})
	n, err := r.ReadCloser.Read(p)
	t.Stop()
	if err != nil && err != io.EOF && r.stalled.Load() {
		err = fmt.Errorf("%w for %s (%v)", errReadStalled, r.timeout, err)
	}
	return n, err
}

func (r *stallReader) Close() error {
	err := r.ReadCloser.Close()
	r.cancel()
	return err
}
