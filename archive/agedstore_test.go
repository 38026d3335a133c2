package archive

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/hoardbackup/hoard/storage"
)

// agedStore reports, for the keys in at, a time of its own as when the
// storage wrote them (storage.Object.Changed), over a real store: the
// tests' clock for ages that a real store takes from its own clock. A key
// written again (Put, Create) is reported with the real store's time
// again, as a store's own time moves on when an object is rewritten.
type agedStore struct {
	storage.Store
	mu   sync.Mutex
	at   map[string]time.Time
	next map[string]time.Time // key -> the time its next write is reported at
}

// ageStore puts an agedStore in front of a's store, unless one is there
// already, and returns it.
func ageStore(a *Archive) *agedStore {
	if s, ok := a.Store.(*agedStore); ok {
		return s
	}
	s := &agedStore{Store: a.Store, at: map[string]time.Time{}, next: map[string]time.Time{}}
	a.Store = s
	return s
}

// ageKeys makes a's store report at as when the storage wrote keys: the
// test's stand-in for objects written at that time.
func ageKeys(a *Archive, keys []string, at time.Time) {
	ageStore(a).setStoredAt(keys, at)
}

// setStoredAt makes s report at as when the storage wrote keys.
func (s *agedStore) setStoredAt(keys []string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		s.at[k] = at
	}
}

func (s *agedStore) age(o storage.Object) storage.Object {
	s.mu.Lock()
	defer s.mu.Unlock()
	if at, ok := s.at[o.Key]; ok {
		o.Changed = at
	}
	return o
}

// ageNextWrite makes a's store report at as when the storage wrote key
// from its next write (Put, Create) on: the test's stand-in for a write
// at that time.
func ageNextWrite(a *Archive, key string, at time.Time) {
	s := ageStore(a)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next[key] = at
}

// written forgets the time set for key, the store wrote it now, unless a
// time was set for its next write.
func (s *agedStore) written(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if at, ok := s.next[key]; ok {
		s.at[key] = at
		delete(s.next, key)
		return
	}
	delete(s.at, key)
}

func (s *agedStore) Put(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	err := s.Store.Put(ctx, key, r, md)
	if err == nil {
		s.written(key)
	}
	return err
}

func (s *agedStore) Create(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	err := s.Store.Create(ctx, key, r, md)
	if err == nil {
		s.written(key)
	}
	return err
}

func (s *agedStore) List(ctx context.Context, prefix string, fn func(storage.Object) error) error {
	return s.Store.List(ctx, prefix, func(o storage.Object) error { return fn(s.age(o)) })
}

func (s *agedStore) Stat(ctx context.Context, key string) (storage.Object, error) {
	o, err := s.Store.Stat(ctx, key)
	return s.age(o), err
}

func (s *agedStore) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	r, o, err := s.Store.Open(ctx, key)
	return r, s.age(o), err
}
