package basebackup

import (
	"context"
	"sync"
	"time"
)

// keepMarker runs keep, which stores a running backup's marker in the
// archive again at each tick so that retention keeps counting it
// (archive.KeepIncrementalMarker, archive.KeepDeltaRunning), with a tick
// every interval, until the returned stop is called. stop ends it and
// waits for it to return; it may be called more than once.
func keepMarker(ctx context.Context, every time.Duration, keep func(ctx context.Context, tick <-chan time.Time)) (stop func()) {
	kctx, cancel := context.WithCancel(ctx)
	t := time.NewTicker(every)
	done := make(chan struct{})
	go func() {
		defer close(done)
		keep(kctx, t.C)
	}()
	return sync.OnceFunc(func() {
		cancel()
		t.Stop()
		<-done
	})
}
