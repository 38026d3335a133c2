package storetest

import (
	"context"
	"io"
	"sync"
	"testing"

	"github.com/hoardbackup/hoard/storage"
)

// Pause is a Store that holds the first Put of a key Match accepts until
// LetGo: a writer paused at one step, for a test to run something else
// beside it.
type Pause struct {
	storage.Store
	Match func(key string) bool

	once, let                sync.Once
	reached, release, landed chan struct{}
}

// NewPause returns a Pause in front of st.
func NewPause(st storage.Store, match func(key string) bool) *Pause {
	return &Pause{Store: st, Match: match, reached: make(chan struct{}), release: make(chan struct{}), landed: make(chan struct{})}
}

// Put holds the first Put Match accepts until LetGo, or ctx ends.
func (s *Pause) Put(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	paused := false
	if s.Match(key) {
		s.once.Do(func() { paused = true })
	}
	if !paused {
		return s.Store.Put(ctx, key, r, md)
	}
	close(s.reached)
	select {
	case <-s.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer close(s.landed)
	return s.Store.Put(ctx, key, r, md)
}

// Reached is closed once the held Put arrived.
func (s *Pause) Reached() <-chan struct{} { return s.reached }

// LetGo lets the held Put go and, if it arrived, waits until it returned
// or ctx ends. Later calls do nothing.
func (s *Pause) LetGo(ctx context.Context) {
	s.let.Do(func() {
		close(s.release)
		select {
		case <-s.reached:
		default:
			return
		}
		select {
		case <-s.landed:
		case <-ctx.Done():
		}
	})
}

// PausedRun is a writer running on a goroutine through a Pause.
type PausedRun[T any] struct {
	*Pause
	done chan struct{}
	v    T
	err  error
}

// StartPaused runs run on a goroutine with a Pause (match) in front of
// st, and returns once the held Put arrived; it fails t when run returns
// first. The Put is let go when the test ends.
func StartPaused[T any](ctx context.Context, t testing.TB, st storage.Store, match func(key string) bool, run func(st storage.Store) (T, error)) *PausedRun[T] {
	t.Helper()
	p := &PausedRun[T]{Pause: NewPause(st, match), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.v, p.err = run(p.Pause)
	}()
	t.Cleanup(func() {
		p.LetGo(ctx)
		<-p.done
	})
	select {
	case <-p.Reached():
	case <-p.done:
		t.Fatalf("ended before it reached the paused step: %v", p.err)
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	return p
}

// Wait lets the held Put go and returns what run returned.
func (p *PausedRun[T]) Wait(ctx context.Context) (T, error) {
	p.LetGo(ctx)
	<-p.done
	return p.v, p.err
}
