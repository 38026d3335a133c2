package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// A rate-limited store keeps every Store contract.
func TestWithRateLimit_Conformance(t *testing.T) {
	storetest.Run(t, func(t testing.TB) storage.Store {
		return storage.WithRateLimit(storage.NewMem(), storage.RateLimits{Upload: 1 << 30, Download: 1 << 30})
	})
}

// A cancelled context ends an upload that waits for its budget.
func TestWithRateLimit_Cancel(t *testing.T) {
	st := storage.WithRateLimit(storage.NewMem(), storage.RateLimits{Upload: 1 << 10, Download: 1 << 10})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &cancelAfterRead{r: bytes.NewReader(make([]byte, 1<<20)), cancel: cancel}
	if err := st.Put(ctx, "site/basebackup/x", r, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put = %v, want context.Canceled", err)
	}
	if _, err := st.Stat(context.Background(), "site/basebackup/x"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat after the cancelled Put = %v, want ErrNotFound", err)
	}
}

// With retries outside the limits, a Put of a seekable reader is retried
// after a transient failure: the retrying store still sees the caller's
// reader.
func TestWithRateLimit_RetrySeesSeeker(t *testing.T) {
	flaky := &flakyStore{Store: storage.NewMem(), fails: 1}
	st := storage.WithRetry(storage.WithRateLimit(flaky, storage.RateLimits{Upload: 1 << 30}), storage.RetryOptions{Initial: time.Millisecond})
	if err := st.Put(context.Background(), "k", bytes.NewReader([]byte("data")), nil); err != nil {
		t.Fatalf("Put = %v, want success on the second try", err)
	}
	if flaky.calls != 2 {
		t.Errorf("%d Put calls, want 2", flaky.calls)
	}
}

type cancelAfterRead struct {
	r      io.Reader
	cancel context.CancelFunc
}

func (c *cancelAfterRead) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.cancel()
	return n, err
}

// flakyStore fails its first Puts with a transient error, after reading
// the reader through.
type flakyStore struct {
	storage.Store
	fails, calls int
}

func (f *flakyStore) Put(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	f.calls++
	if f.calls <= f.fails {
		_, _ = io.Copy(io.Discard, r)
		return errors.New("connection reset")
	}
	return f.Store.Put(ctx, key, r, md)
}

// BenchmarkRateLimit measures the rate a limited store achieves for one
// upload and one download of 3 s worth of data at each limit, against a
// local store in a temp dir. The figures are in docs/benchmarks.md.
func BenchmarkRateLimit(b *testing.B) {
	for _, limit := range []int64{1 << 20, 8 << 20, 32 << 20} {
		for _, dir := range []string{"upload", "download"} {
			b.Run(fmt.Sprintf("%s/%dMiB", dir, limit>>20), func(b *testing.B) {
				size := 3 * limit
				data := make([]byte, size)
				local := storage.NewLocal(b.TempDir())
				ctx := context.Background()
				limits := storage.RateLimits{Upload: limit}
				if dir == "download" {
					limits = storage.RateLimits{Download: limit}
					if err := local.Put(ctx, "obj", bytes.NewReader(data), nil); err != nil {
						b.Fatal(err)
					}
				}
				st := storage.WithRateLimit(local, limits)
				b.SetBytes(size)
				b.ResetTimer()
				start := time.Now()
				for range b.N {
					if dir == "upload" {
						if err := st.Put(ctx, "obj", bytes.NewReader(data), nil); err != nil {
							b.Fatal(err)
						}
						continue
					}
					rc, _, err := st.Open(ctx, "obj")
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.Copy(io.Discard, rc); err != nil {
						b.Fatal(err)
					}
					rc.Close()
				}
				got := float64(size) * float64(b.N) / time.Since(start).Seconds()
				b.ReportMetric(got/float64(limit), "of-limit")
			})
		}
	}
}
