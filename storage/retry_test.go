package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

var errFlaky = errors.New("connection reset")

// faultStore fails the next n calls of an operation with err, and can fail
// a listing after it reported some objects.
type faultStore struct {
	storage.Store
	mu        sync.Mutex
	fails     map[string]int
	err       error
	calls     map[string]int
	listAfter int // fail List after this many objects, once; 0: never
}

func newFaultStore(err error) *faultStore {
	return &faultStore{Store: storage.NewMem(), fails: map[string]int{}, calls: map[string]int{}, err: err}
}

func (f *faultStore) fault(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	if f.fails[op] > 0 {
		f.fails[op]--
		return fmt.Errorf("%s: %w", op, f.err)
	}
	return nil
}

func (f *faultStore) Put(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	if err := f.fault("put"); err != nil {
		_, _ = io.CopyN(io.Discard, r, 3) // a failure after part of the source was read
		return err
	}
	return f.Store.Put(ctx, key, r, md)
}

func (f *faultStore) Create(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	if err := f.fault("create"); err != nil {
		_, _ = io.CopyN(io.Discard, r, 3)
		return err
	}
	return f.Store.Create(ctx, key, r, md)
}

func (f *faultStore) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	if err := f.fault("open"); err != nil {
		return nil, storage.Object{}, err
	}
	return f.Store.Open(ctx, key)
}

func (f *faultStore) Stat(ctx context.Context, key string) (storage.Object, error) {
	if err := f.fault("stat"); err != nil {
		return storage.Object{}, err
	}
	return f.Store.Stat(ctx, key)
}

func (f *faultStore) Delete(ctx context.Context, key string) error {
	if err := f.fault("delete"); err != nil {
		return err
	}
	return f.Store.Delete(ctx, key)
}

func (f *faultStore) List(ctx context.Context, prefix string, fn func(storage.Object) error) error {
	if err := f.fault("list"); err != nil {
		return err
	}
	n := 0
	return f.Store.List(ctx, prefix, func(o storage.Object) error {
		if f.listAfter > 0 && n == f.listAfter {
			f.listAfter = 0
			return errFlaky
		}
		n++
		return fn(o)
	})
}

func fast(onRetry func(op, key string, attempt int, err error)) storage.RetryOptions {
	return storage.RetryOptions{Attempts: 4, Initial: time.Millisecond, Max: 4 * time.Millisecond, OnRetry: onRetry}
}

func TestWithRetry_PutSeeker(t *testing.T) {
	f := newFaultStore(errFlaky)
	f.fails["put"] = 2
	var retries []int
	st := storage.WithRetry(f, fast(func(op, key string, attempt int, err error) {
		if op != "put" || key != "k" || !errors.Is(err, errFlaky) {
			t.Errorf("OnRetry(%q, %q, %d, %v)", op, key, attempt, err)
		}
		retries = append(retries, attempt)
	}))
	ctx := context.Background()
	r := bytes.NewReader([]byte("xxwhole object"))
	_, _ = r.Seek(2, io.SeekStart) // a Put sends from where the reader stands
	if err := st.Put(ctx, "k", r, storage.Metadata{"host": "h"}); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if !cmp.Equal(retries, []int{1, 2}) {
		t.Errorf("retries = %v, want [1 2]", retries)
	}
	if got, _ := storetest.Read(t, st, "k"); string(got) != "whole object" {
		t.Errorf("stored %q after retries, want %q", got, "whole object")
	}
}

func TestWithRetry_PutNotSeekerNotRetried(t *testing.T) {
	f := newFaultStore(errFlaky)
	f.fails["put"] = 1
	st := storage.WithRetry(f, fast(nil))
	err := st.Put(context.Background(), "k", io.MultiReader(strings.NewReader("stream")), nil)
	if !errors.Is(err, errFlaky) || f.calls["put"] != 1 {
		t.Errorf("Put = %v after %d calls, want errFlaky after 1", err, f.calls["put"])
	}
}

func TestWithRetry_GivesUp(t *testing.T) {
	f := newFaultStore(errFlaky)
	f.fails["stat"] = 100
	st := storage.WithRetry(f, fast(nil))
	if _, err := st.Stat(context.Background(), "k"); !errors.Is(err, errFlaky) || f.calls["stat"] != 4 {
		t.Errorf("Stat = %v after %d calls, want errFlaky after 4", err, f.calls["stat"])
	}
}

func TestWithRetry_NoRetry(t *testing.T) {
	for name, err := range map[string]error{
		"ErrNotFound":  storage.ErrNotFound,
		"ErrPermanent": storage.ErrPermanent,
		"Canceled":     context.Canceled,
		// The local store waited lockPatience for the lock already: the
		// caller (archive_command, the daemon's upload loop) tries later.
		"ErrLockHeld": storage.ErrLockHeld,
	} {
		t.Run(name, func(t *testing.T) {
			f := newFaultStore(err)
			f.fails["open"] = 1
			st := storage.WithRetry(f, fast(func(string, string, int, error) { t.Error("retried") }))
			if _, _, got := st.Open(context.Background(), "k"); !errors.Is(got, err) || f.calls["open"] != 1 {
				t.Errorf("Open = %v after %d calls, want %v after 1", got, f.calls["open"], err)
			}
		})
	}
	// A missing key from the real store is not retried either.
	f := newFaultStore(errFlaky)
	st := storage.WithRetry(f, fast(nil))
	if _, err := st.Stat(context.Background(), "missing"); !errors.Is(err, storage.ErrNotFound) || f.calls["stat"] != 1 {
		t.Errorf("Stat = %v after %d calls", err, f.calls["stat"])
	}
}

func TestWithRetry_OpenDeleteRecover(t *testing.T) {
	f := newFaultStore(errFlaky)
	st := storage.WithRetry(f, fast(nil))
	ctx := context.Background()
	if err := st.Put(ctx, "k", strings.NewReader("v"), nil); err != nil {
		t.Fatal(err)
	}
	f.fails["open"], f.fails["delete"] = 3, 3
	rc, _, err := st.Open(ctx, "k")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	rc.Close()
	if err := st.Delete(ctx, "k"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
}

// A listing that fails midway resumes after the last key reported.
func TestWithRetry_ListResumes(t *testing.T) {
	f := newFaultStore(errFlaky)
	st := storage.WithRetry(f, fast(nil))
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c", "d"} {
		if err := st.Put(ctx, k, strings.NewReader(k), nil); err != nil {
			t.Fatal(err)
		}
	}
	f.listAfter = 2
	var got []string
	if err := st.List(ctx, "", func(o storage.Object) error { got = append(got, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Errorf("List = %v, want each key once", got)
	}
	stop := errors.New("stop")
	calls := 0
	err := st.List(ctx, "", func(storage.Object) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Errorf("List with failing fn = %v after %d calls, want stop after 1", err, calls)
	}
}

// listed is a store whose listing reports keys as given, in that order:
// a storage that lies about the order, or resumes a listing at the wrong
// place. Each listing fails (errFlaky) after as many keys as the next
// number of cuts says, while there is one.
type listed struct {
	storage.Store
	keys []string
	cuts *[]int
}

func (l listed) List(ctx context.Context, prefix string, fn func(storage.Object) error) error {
	cut := -1
	if l.cuts != nil && len(*l.cuts) > 0 {
		cut, *l.cuts = (*l.cuts)[0], (*l.cuts)[1:]
	}
	for i, k := range l.keys {
		if i == cut {
			return errFlaky
		}
		if err := fn(storage.Object{Key: k}); err != nil {
			return err
		}
	}
	return nil
}

// A key out of lexical order is reported, not left out, and the listing
// does not fail: gocloud reports a name planted as "x/__0x01__" as
// "x/\x01", out of the order of the stored names. A retried listing
// reports each key once, out of order or not; an exact duplicate is
// reported once.
func TestWithRetry_ListOrder(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		keys []string
		cuts []int
		want []string
	}{
		{"OK", []string{"a", "b", "b", "c"}, nil, []string{"a", "b", "c"}},
		{"OKOutOfOrder", []string{"a", "c", "b", "d"}, nil, []string{"a", "c", "b", "d"}},
		// e puts b, c and d out of order; the first listing fails after
		// b, the second after f.
		{"OKRetried", []string{"a", "e", "b", "c", "f", "d"}, []int{3, 5}, []string{"a", "e", "b", "c", "f", "d"}},
		{"OKRetriedDuplicate", []string{"a", "c", "b", "b", "d"}, []int{3}, []string{"a", "c", "b", "d"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cuts := tc.cuts
			st := storage.WithRetry(listed{storage.NewMem(), tc.keys, &cuts}, fast(nil))
			var got []string
			if err := st.List(ctx, "", func(o storage.Object) error { got = append(got, o.Key); return nil }); err != nil {
				t.Fatal(err)
			}
			if !cmp.Equal(got, tc.want) {
				t.Errorf("List = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestWithRetry_StopsOnCancel(t *testing.T) {
	f := newFaultStore(errFlaky)
	f.fails["stat"] = 100
	ctx, cancel := context.WithCancel(context.Background())
	st := storage.WithRetry(f, storage.RetryOptions{Attempts: 100, Initial: time.Hour, Max: time.Hour,
		OnRetry: func(string, string, int, error) { cancel() }})
	_, err := st.Stat(ctx, "k")
	if !errors.Is(err, errFlaky) || !errors.Is(err, context.Canceled) || f.calls["stat"] != 1 {
		t.Errorf("Stat = %v after %d calls, want errFlaky and Canceled after 1", err, f.calls["stat"])
	}
}

func TestIsTransient(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errFlaky, true},
		{fmt.Errorf("open k: %w", storage.ErrNotFound), false},
		{fmt.Errorf("put k: %w", storage.ErrPermanent), false},
		{fmt.Errorf("put k: %w", context.DeadlineExceeded), false},
	} {
		if got := storage.IsTransient(tc.err); got != tc.want {
			t.Errorf("IsTransient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
