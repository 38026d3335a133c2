package storetest

import (
	"context"
	"io"
	"sync"

	"github.com/hoardbackup/hoard/storage"
)

// SwapOpen is a Store whose open number At (from 1) of Key reads Other's
// object instead: an object replaced between two reads by someone who
// can write the bucket but holds no key (another backup's authentic
// control object, copied under Key's name, say).
type SwapOpen struct {
	storage.Store
	Key, Other string
	At         int

	mu sync.Mutex
	n  int
}

// Open opens key, or Other at the At-th open of Key.
func (s *SwapOpen) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	if key == s.Key {
		s.mu.Lock()
		s.n++
		swap := s.n == s.At
		s.mu.Unlock()
		if swap {
			key = s.Other
		}
	}
	return s.Store.Open(ctx, key)
}
