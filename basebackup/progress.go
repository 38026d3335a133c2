package basebackup

import (
	"sync"
	"time"

	"github.com/hoardbackup/hoard/replication"
)

// reportProgress calls o.Progress every o.ProgressInterval until the
// returned function is called; that function waits for the reporting
// goroutine to end.
func (r *run) reportProgress(bb *replication.BaseBackup, began time.Time) (stop func()) {
	return progressLoop(r.o, func() Progress {
		n, total := bb.Progress()
		el := time.Since(began)
		return Progress{
			Bytes: n, Total: total, Rate: rate(n, el), Elapsed: el,
			Chunks: int(r.ck.uploaded.Load()), StoredBytes: r.ck.storedBytes.Load(),
		}
	})
}

// progressLoop calls o.Progress with sample() every o.ProgressInterval
// until the returned function is called; that function waits for the
// reporting goroutine to end.
func progressLoop(o Options, sample func() Progress) (stop func()) {
	if o.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(o.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				o.Progress(sample())
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			wg.Wait()
		})
	}
}

// rate returns n bytes over d as bytes per second.
func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
