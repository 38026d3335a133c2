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
// failure (wrong HMAC, truncation, corrupt data, the store's own checksum),
// nor a local write error.
func retryable(err error) bool {
	var de *archive.DecodeError
	switch {
	case errors.As(err, &de), errors.Is(err, storage.ErrNotFound), errors.Is(err, storage.ErrChecksum), errors.Is(err, ErrSizeMismatch),
		errors.Is(err, ErrUnsafeMember), errors.Is(err, archive.ErrWrongObject), errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, errStalled):
		return true
	}
	var se *sourceError
	return errors.As(err, &se)
}

// chunk restores one chunk of the backup held by src, re-downloading it
// from the start after a transient error (the files the failed attempt
// created are removed first: madeFiles lists them, on the local disk past
// maxMadeFiles), and returns its decoded size.
func (o *Options) chunk(ctx context.Context, log zerolog.Logger, src *archive.Archive, ex *extractor, c archive.ManifestChunk, buf []byte, p *progress) (int64, error) {
	key := src.Layout.ChunkKey(c.ChunkFilename)
	if ex.bundles {
		key = src.Layout.DeltaChunkKey(c.ChunkFilename)
	}
	var made madeFiles
	defer made.close()
	for attempt := 0; ; attempt++ {
		made.reset()
		n, err := o.chunkOnce(ctx, src, ex, key, c, buf, &p.bytesDone, &made)
		if err == nil {
			return n, nil
		}
		if ctx.Err() != nil || !retryable(err) || attempt >= o.Retries {
			return 0, fmt.Errorf("chunk %s%s: %w", key, o.Archive.InSite(src), err)
		}
		if made.overflow {
			return 0, fmt.Errorf("chunk %s%s: %w (not retried: the list of its files on the local disk failed: %w)", key, o.Archive.InSite(src), err, made.spillErr)
		}
		if rerr := ex.removeMade(&made); rerr != nil {
			return 0, fmt.Errorf("chunk %s%s: %w (retrying after: %w)", key, o.Archive.InSite(src), rerr, err)
		}
		log.Warn().Err(err).Str("key", key).Int("attempt", attempt+1).Msg("retrying chunk")
	}
}

// chunkOnce downloads and extracts one chunk once. The codec's reader
// verifies the object at EOF, so the stream is read to its very end. The
// stored bytes may not pass the manifest's result_size, nor the decoded
// ones its input_size: either is an error as soon as it happens, so a
// compression bomb is stopped at the size the manifest declares; at the
// end both must match exactly, and the object must be the one the
// manifest's hoard_hmac names, when it names one.
func (o *Options) chunkOnce(ctx context.Context, src *archive.Archive, ex *extractor, key string, c archive.ManifestChunk, buf []byte, total *atomic.Int64, made *madeFiles) (n int64, err error) {
	octx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	rc, md, err := src.Store.Open(octx, key)
	if err != nil {
		return 0, &sourceError{fmt.Errorf("open %s: %w", key, err)}
	}
	defer rc.Close()
	storedMax := c.ResultSize
	if storedMax == 0 {
		storedMax = -1 // not recorded
	}
	stored := &sizedReader{r: rc, max: storedMax, what: "stored bytes, over the manifest's result_size"}
	// The control object records which object each chunk is (its HMAC):
	// an authentic chunk of another backup copied under this name fails at
	// its end, before the chunk counts as restored.
	dec, err := src.Codec.DecodeExpected(key, stored, md, c.HMAC)
	if err != nil {
		return 0, err
	}
	defer dec.Close()
	decoded := &sizedReader{r: dec, max: c.InputSize, what: "decoded bytes, over the manifest's input_size"}
	pr := &progressReader{r: decoded, total: total}
	defer func() {
		if err != nil {
			total.Add(-pr.n.Load()) // a retry starts the count again
		}
	}()
	stop := watchStall(octx, cancel, pr, o.StallTimeout)
	err = ex.extract(pr, func() int64 { return c.InputSize - decoded.n }, c.Names, buf, made)
	if errors.Is(err, ErrPGManifest) {
		// A file that differs from backup_manifest in a chunk that is
		// not the object the manifest names (another backup's, altered,
		// truncated) is that object's fault: its checks at EOF say so.
		if _, derr := io.CopyBuffer(io.Discard, struct{ io.Reader }{pr}, buf); derr != nil && !retryable(derr) {
			err = derr
		}
	}
	if err == nil {
		// Tar readers stop at the end-of-archive blocks; the padding
		// and the HMAC check at EOF follow, then whatever stored bytes
		// the decoder left.
		_, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{pr}, buf)
	}
	if err == nil {
		_, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{stored}, buf)
		if err != nil {
			err = &sourceError{err}
		}
	}
	stop()
	if cause := context.Cause(octx); errors.Is(cause, errStalled) {
		return 0, fmt.Errorf("no data for %s: %w", o.StallTimeout, errStalled)
	}
	if err != nil {
		return 0, err
	}
	if decoded.n != c.InputSize {
		return 0, fmt.Errorf("decoded %d bytes, manifest's input_size says %d: %w", decoded.n, c.InputSize, ErrSizeMismatch)
	}
	if storedMax >= 0 && stored.n != storedMax {
		return 0, fmt.Errorf("stored %d bytes, manifest's result_size says %d: %w", stored.n, storedMax, ErrSizeMismatch)
	}
	return decoded.n, nil
}

// sizedReader reads at most max bytes from r (max < 0: no limit): one more
// is an error wrapping ErrSizeMismatch, returned as soon as it is read.
type sizedReader struct {
	r    io.Reader
	n    int64
	max  int64
	what string // what the bytes are, for the error
}

func (s *sizedReader) Read(p []byte) (int, error) {
	if s.max >= 0 {
		if rest := s.max - s.n + 1; int64(len(p)) > rest {
			p = p[:rest]
		}
	}
	n, err := s.r.Read(p)
	s.n += int64(n)
	if s.max >= 0 && s.n > s.max {
		over := int(s.n - s.max)
		s.n = s.max
		return n - over, fmt.Errorf("more than %d %s: %w", s.max, s.what, ErrSizeMismatch)
	}
	return n, err
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
	last, since := pr.n.Load(), time.Now()
	return every(ctx, max(timeout/8, time.Millisecond), func(now time.Time) bool {
		if n := pr.n.Load(); n != last {
			last, since = n, now
		} else if now.Sub(since) >= timeout {
			cancel(errStalled)
			return false
		}
		return true
	})
}

// every calls fn in a goroutine at each tick of interval until fn
// returns false, ctx ends, or the returned func is called; that func
// waits for the goroutine to end.
func every(ctx context.Context, interval time.Duration, fn func(now time.Time) bool) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				if !fn(now) {
					return
				}
			}
		}
	}()
	return func() { cancel(); wg.Wait() }
}

func mapKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, k := range mapKeys(m) {
		out = append(out, m[k])
	}
	return out
}
