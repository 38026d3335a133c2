package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"
)

// RetryOptions tunes WithRetry. Zero fields take the defaults.
type RetryOptions struct {
	Attempts int           // total tries per operation, including the first (default 5)
	Initial  time.Duration // backoff cap before the second try (default 500ms)
	Max      time.Duration // largest backoff cap (default 30s)
	// OnRetry, if set, is called before each retry with the operation
	// ("put", "open", ...), the key or prefix, the attempt that failed
	// (1-based) and its error; callers log it as a warning.
	OnRetry func(op, key string, attempt int, err error)
}

// WithRetry returns s with retries on transient errors (see IsTransient):
// up to Attempts tries, sleeping a random time in [0, min(Max,
// Initial·2^n)) ("full jitter") between them, and stopping when ctx is done.
//
//   - Put is retried only when r is an io.Seeker (an *os.File, a
//     *bytes.Reader): it is sought back to where it was. Any other reader is
//     half-consumed after a failure, so that Put is tried once.
//   - Open and OpenRange retry opening only; an error while reading the
//     stream is returned to the caller, who may open again.
//   - List resumes after the last key it reported, so fn never sees a key
//     twice; an error returned by fn is never retried.
//   - Stat and Delete are retried as they are.
//   - A local store's ErrLockHeld is not retried (see do).
func WithRetry(s Store, o RetryOptions) Store {
	if o.Attempts <= 0 {
		o.Attempts = 5
	}
	if o.Initial <= 0 {
		o.Initial = 500 * time.Millisecond
	}
	if o.Max <= 0 {
		o.Max = 30 * time.Second
	}
	if o.Max < o.Initial {
		o.Max = o.Initial
	}
	return &retryStore{s: s, o: o}
}

type retryStore struct {
	s Store
	o RetryOptions
}

var (
	_ Store  = (*retryStore)(nil)
	_ Syncer = (*retryStore)(nil)
)

// do runs f until it succeeds, fails for good, or runs out of attempts.
// ErrLockHeld is not tried again: the local store waited lockPatience
// for the lock already, and Attempts more waits would hold a wal-push
// for ten minutes; its caller (archive_command, the daemon's upload
// loop) tries again later.
func (r *retryStore) do(ctx context.Context, op, key string, f func() error) error {
	for attempt := 1; ; attempt++ {
		err := f()
		var fe *fnError
		if err == nil || !IsTransient(err) || attempt >= r.o.Attempts || errors.As(err, &fe) || errors.Is(err, ErrLockHeld) {
			return err
		}
		if ctx.Err() != nil {
			return err
		}
		if r.o.OnRetry != nil {
			r.o.OnRetry(op, key, attempt, err)
		}
		if serr := sleep(ctx, r.backoff(attempt)); serr != nil {
			return fmt.Errorf("%w (retry interrupted: %w)", err, serr)
		}
	}
}

// backoff returns the full-jitter sleep before attempt+1.
func (r *retryStore) backoff(attempt int) time.Duration {
	limit := r.o.Initial
	for i := 1; i < attempt && limit < r.o.Max; i++ {
		limit *= 2
	}
	limit = min(limit, r.o.Max)
	return rand.N(limit) + 1
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (r *retryStore) Put(ctx context.Context, key string, rd io.Reader, md Metadata) error {
	return r.put(ctx, "put", key, rd, md, r.s.Put)
}

// Create is retried as Put is. A retry after a Create whose success was
// not seen meets its own object as ErrExist, which Create's callers handle
// by comparing (see Store.Create).
func (r *retryStore) Create(ctx context.Context, key string, rd io.Reader, md Metadata) error {
	return r.put(ctx, "create", key, rd, md, r.s.Create)
}

func (r *retryStore) put(ctx context.Context, op, key string, rd io.Reader, md Metadata, put func(context.Context, string, io.Reader, Metadata) error) error {
	seeker, ok := rd.(io.Seeker)
	if !ok {
		return put(ctx, key, rd, md)
	}
	start, err := seeker.Seek(0, io.SeekCurrent)
	if err != nil {
		return put(ctx, key, rd, md)
	}
	first := true
	return r.do(ctx, op, key, func() error {
		if !first {
			if _, err := seeker.Seek(start, io.SeekStart); err != nil {
				return fmt.Errorf("%s %s: rewind for retry: %w", op, key, errPermanentRewind{err})
			}
		}
		first = false
		return put(ctx, key, rd, md)
	})
}

// errPermanentRewind stops retrying when the source cannot be rewound.
type errPermanentRewind struct{ err error }

func (e errPermanentRewind) Error() string   { return e.err.Error() }
func (e errPermanentRewind) Unwrap() []error { return []error{ErrPermanent, e.err} }

func (r *retryStore) Open(ctx context.Context, key string) (rc io.ReadCloser, o Object, err error) {
	err = r.do(ctx, "open", key, func() error {
		rc, o, err = r.s.Open(ctx, key)
		return err
	})
	return rc, o, err
}

func (r *retryStore) OpenRange(ctx context.Context, key string, offset, length int64) (rc io.ReadCloser, err error) {
	err = r.do(ctx, "open", key, func() error {
		rc, err = r.s.OpenRange(ctx, key, offset, length)
		return err
	})
	return rc, err
}

func (r *retryStore) Stat(ctx context.Context, key string) (o Object, err error) {
	err = r.do(ctx, "stat", key, func() error {
		o, err = r.s.Stat(ctx, key)
		return err
	})
	return o, err
}

// fnError carries an error from List's callback past the retry loop.
type fnError struct{ err error }

func (e *fnError) Error() string { return e.err.Error() }

// List passes on each key once: a retried listing starts again from the
// beginning, and the keys it reported before are skipped. Keys come in
// lexical order (Store's contract), so a key at or before the last one
// reported in order was reported (an exact duplicate of the previous key
// is dropped too). A key before the previous one is passed on as well,
// never dropped nor failing the listing: gocloud's buckets list in the
// order of the stored names but report them unescaped, so one planted
// under a name such as "x/__0x01__" is reported as "x/\x01", before its
// neighbours, and may put the keys after it out of order. Such keys are
// remembered (only they: the listing's own are not held), so that a
// retried listing skips exactly those reported before; the storage
// lists the same names in the same order again.
func (r *retryStore) List(ctx context.Context, prefix string, fn func(Object) error) error {
	var last string
	seen := false
	var outOfOrder map[string]bool // reported, before the key listed before them
	err := r.do(ctx, "list", prefix, func() error {
		var prev string
		first := true
		return r.s.List(ctx, prefix, func(o Object) error {
			switch {
			case !first && o.Key == prev:
				return nil // a duplicate
			case !first && o.Key < prev:
				if outOfOrder[o.Key] {
					return nil // reported before the retry
				}
				if outOfOrder == nil {
					outOfOrder = map[string]bool{}
				}
				outOfOrder[o.Key] = true
			default:
				prev, first = o.Key, false
				if seen && o.Key <= last {
					return nil // reported before the retry
				}
				last, seen = o.Key, true
			}
			if err := fn(o); err != nil {
				return &fnError{err}
			}
			return nil
		})
	})
	var fe *fnError
	if errors.As(err, &fe) {
		return fe.err
	}
	return err
}

func (r *retryStore) Delete(ctx context.Context, key string) error {
	return r.do(ctx, "delete", key, func() error { return r.s.Delete(ctx, key) })
}

func (r *retryStore) Close() error { return r.s.Close() }

// Sync passes Sync on to the wrapped store when it has one, retrying
// transient errors.
func (r *retryStore) Sync(ctx context.Context, key string) error {
	if _, ok := r.s.(Syncer); !ok {
		return nil
	}
	return r.do(ctx, "sync", key, func() error { return Sync(ctx, r.s, key) })
}
