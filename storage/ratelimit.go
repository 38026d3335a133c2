package storage

import (
	"context"
	"io"

	"golang.org/x/time/rate"
)

// RateLimits caps a store's transfer rates in bytes per second; 0 is
// unlimited.
type RateLimits struct {
	Upload   int64 // bytes read from Put's readers per second
	Download int64 // bytes read from Open's and OpenRange's streams per second
}

// WithRateLimit returns s with its uploads and downloads together held to
// l: every Put shares one upload budget and every open stream one download
// budget, so parallel transfers split the rate rather than each getting
// it. The limits hold per returned store, that is per process and site.
// Put our of a retrying store goes through WithRetry outside WithRateLimit,
// so that WithRetry still sees the caller's seekable reader.
func WithRateLimit(s Store, l RateLimits) Store {
	if l.Upload <= 0 && l.Download <= 0 {
		return s
	}
	return &rateStore{Store: s, up: newLimiter(l.Upload), down: newLimiter(l.Download)}
}

// newLimiter returns a token bucket of bytes/s with a burst of a tenth of
// a second (at least 32 KiB, so small reads pass in one wait), or nil.
func newLimiter(bytesPerSecond int64) *rate.Limiter {
	if bytesPerSecond <= 0 {
		return nil
	}
	burst := max(bytesPerSecond/10, 32<<10)
	return rate.NewLimiter(rate.Limit(bytesPerSecond), int(burst))
}

type rateStore struct {
	Store
	up, down *rate.Limiter
}

var (
	_ Store  = (*rateStore)(nil)
	_ Syncer = (*rateStore)(nil)
)

func (r *rateStore) Put(ctx context.Context, key string, rd io.Reader, md Metadata) error {
	if r.up != nil {
		rd = &limitedReader{ctx: ctx, r: rd, l: r.up}
	}
	return r.Store.Put(ctx, key, rd, md)
}

// Create is Put's limit on Store.Create.
func (r *rateStore) Create(ctx context.Context, key string, rd io.Reader, md Metadata) error {
	if r.up != nil {
		rd = &limitedReader{ctx: ctx, r: rd, l: r.up}
	}
	return r.Store.Create(ctx, key, rd, md)
}

func (r *rateStore) Open(ctx context.Context, key string) (io.ReadCloser, Object, error) {
	rc, md, err := r.Store.Open(ctx, key)
	if err != nil || r.down == nil {
		return rc, md, err
	}
	return &limitedReadCloser{limitedReader{ctx: ctx, r: rc, l: r.down}, rc}, md, nil
}

func (r *rateStore) OpenRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	rc, err := r.Store.OpenRange(ctx, key, offset, length)
	if err != nil || r.down == nil {
		return rc, err
	}
	return &limitedReadCloser{limitedReader{ctx: ctx, r: rc, l: r.down}, rc}, nil
}

// Sync passes Sync on to the wrapped store.
func (r *rateStore) Sync(ctx context.Context, key string) error { return Sync(ctx, r.Store, key) }

// limitedReader reads at most a burst at a time and waits for the bytes it
// read; a cancelled ctx ends the wait with ctx's error.
type limitedReader struct {
	ctx context.Context
	r   io.Reader
	l   *rate.Limiter
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if b := l.l.Burst(); len(p) > b {
		p = p[:b]
	}
	n, err := l.r.Read(p)
	if n > 0 {
		if werr := l.l.WaitN(l.ctx, n); werr != nil && err == nil {
			err = werr
		}
	}
	return n, err
}

type limitedReadCloser struct {
	limitedReader
	c io.Closer
}

func (l *limitedReadCloser) Close() error { return l.c.Close() }
