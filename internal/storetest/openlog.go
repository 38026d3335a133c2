package storetest

import (
	"context"
	"io"
	"slices"
	"sync"

	"github.com/hoardbackup/hoard/storage"
)

// OpenLog is a Store that records the keys read through it (Open and
// OpenRange), in order: a test counts the downloads a step makes.
type OpenLog struct {
	storage.Store
	// Match, when not nil, selects the keys recorded.
	Match func(key string) bool

	mu   sync.Mutex
	keys []string
}

func (s *OpenLog) log(key string) {
	if s.Match != nil && !s.Match(key) {
		return
	}
	s.mu.Lock()
	s.keys = append(s.keys, key)
	s.mu.Unlock()
}

// Open records key and opens it.
func (s *OpenLog) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	s.log(key)
	return s.Store.Open(ctx, key)
}

// OpenRange records key and opens the range.
func (s *OpenLog) OpenRange(ctx context.Context, key string, off, n int64) (io.ReadCloser, error) {
	s.log(key)
	return s.Store.OpenRange(ctx, key, off, n)
}

// Keys returns the keys read so far, in order, once per read.
func (s *OpenLog) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.keys)
}

// Count returns how many times key was read.
func (s *OpenLog) Count(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, k := range s.keys {
		if k == key {
			n++
		}
	}
	return n
}

// Reset forgets the keys read so far.
func (s *OpenLog) Reset() {
	s.mu.Lock()
	s.keys = nil
	s.mu.Unlock()
}
