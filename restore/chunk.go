package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/storage"
)

// errStalled is the cause given to a download's context when it read
// nothing for Options.StallTimeout.
var errStalled = errors.New("download stalled")

// sourceError marks an error that came from reading the stored object, as
// opposed to writing the target: only those may be transient.
type sourceError struct{ err error }

func (e *sourceError) Error() string { return e.err.Error() }
func (e *sourceError) Unwrap() error { return e.err }

// retryable reports whether re-downloading a chunk could help: a stall or a
// read error from storage, but never a missing object or an integrity
// failure (wrong HMAC, truncation, corrupt data), nor a local write error.
func retryable(err error) bool {
	var de *archive.DecodeError
	switch {
	case errors.As(err, &de), errors.Is(err, storage.ErrNotFound), errors.Is(err, ErrSizeMismatch),
		errors.Is(err, ErrUnsafePath), errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, errStalled):
		return true
	}
	var se *sourceError
	return errors.As(err, &se)
}

// chunk restores one chunk of the backup held by src, re-downloading it
// from the start after a transient error, and returns its decoded size.
func (o *Options) chunk(ctx context.Context, log zerolog.Logger, src *archive.Archive, ex *extractor, c archive.ManifestChunk, buf []byte, p *progress) (int64, error) {
	key := src.Layout.ChunkKey(c.ChunkFilename)
	for attempt := 0; ; attempt++ {
		n, err := o.chunkOnce(ctx, src, ex, key, c, buf, &p.bytesDone)
		if err == nil {
			return n, nil
		}
		if ctx.Err() != nil || !retryable(err) || attempt >= o.Retries {
			return 0, fmt.Errorf("restore chunk %s: %w", key, err)
		}
		log.Warn().Err(err).Str("key", key).Int("attempt", attempt+1).Msg("retrying chunk")
	}
}

// chunkOnce downloads and extracts one chunk once. The codec's reader
// verifies the object at EOF, so the stream is read to its very end.
func (o *Options) chunkOnce(ctx context.Context, src *archive.Archive, ex *extractor, key string, c archive.ManifestChunk, buf []byte, total *atomic.Int64) (n int64, err error) {
	octx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	rc, _, err := src.Codec.Open(octx, src.Store, key)
	if err != nil {
		return 0, &sourceError{err}
	}
	defer rc.Close()
	pr := &progressReader{r: rc, total: total}
	defer func() {
		if err != nil {
			total.Add(-pr.n.Load()) // a retry starts the count again
		}
	}()
	stop := watchStall(octx, cancel, pr, o.StallTimeout)
	err = ex.extract(pr, buf)
	if err == nil {
		// Tar readers stop at the end-of-archive blocks; the padding
		// and the HMAC check at EOF follow.
		_, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{pr}, buf)
	}
	stop()
	if cause := context.Cause(octx); errors.Is(cause, errStalled) {
		return 0, fmt.Errorf("no data for %s: %w", o.StallTimeout, errStalled)
	}
	if err != nil {
		return 0, err
	}
	if n := pr.n.Load(); c.InputSize > 0 && n != c.InputSize {
		return 0, fmt.Errorf("decoded %d bytes, manifest says %d: %w", n, c.InputSize, ErrSizeMismatch)
	}
	return pr.n.Load(), nil
}

// progressReader counts bytes read, also into total, and marks read errors
// as sourceErrors.
type progressReader struct {
	r     io.Reader
	n     atomic.Int64
	total *atomic.Int64
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n.Add(int64(n))
	p.total.Add(int64(n))
	if err != nil && err != io.EOF {
		err = &sourceError{err}
	}
	return n, err
}

// watchStall cancels ctx with errStalled when pr makes no progress for
// timeout. The returned func stops the watcher and waits for it.
func watchStall(ctx context.Context, cancel context.CancelCauseFunc, pr *progressReader, timeout time.Duration) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(max(timeout/8, time.Millisecond))
		defer tick.Stop()
		last, since := pr.n.Load(), time.Now()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case now := <-tick.C:
				if n := pr.n.Load(); n != last {
					last, since = n, now
				} else if now.Sub(since) >= timeout {
					cancel(errStalled)
					return
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func mapKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, k := range mapKeys(m) {
		out = append(out, m[k])
	}
	return out
}
