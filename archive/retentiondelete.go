package archive

import (
	"context"
	"errors"
	"sync"

	"github.com/hoardbackup/hoard/storage"
)

// RetentionDeletes is how many Deletes a retention run has in flight at
// once, at most. A Delete is one round trip to the storage (20-100 ms on
// S3, GCS or Azure), and a big site's run deletes thousands of chunks and
// WAL files: one at a time, that took many minutes, during which the
// daemon's retention holds its site. PGHoard has no setting of that
// meaning (it deletes from its main thread; transfer.thread_count sizes
// its uploads and downloads), so the bound is fixed: enough to hide the
// latency, few enough that no storage throttles a run.
//
// Only deletes whose order does not matter run together: the chunks of
// one backup once its main object is gone, the WAL files once every
// backup of the plan is, the objects of orphaned chunk folders, the delta
// objects. Each step starts once the step before it has finished (every
// Delete of it returned), so ApplyRetention's order holds whatever
// moment a run stops at.
const RetentionDeletes = 16

// errNotTried is the result of a delete that deleteParallel did not
// start because an earlier one failed.
var errNotTried = errors.New("not tried: an earlier delete failed")

// deleteParallel calls del for each i in [0, n), started in order of i,
// at most RetentionDeletes at once. It returns each call's error in errs
// (nil for a delete that succeeded, errNotTried for one not started) and
// stopAt, the index of the first call whose error stopped it (-1 when
// none did): once a call returns an error that goOn does not accept (nil
// goOn accepts none), no further call starts. It returns only once every
// call it started has returned, so that a step after it never overlaps
// it, and a failure stops a run as it did one delete at a time: what
// was in flight at the failure finishes, nothing after it starts.
func deleteParallel(ctx context.Context, n int, goOn func(error) bool, del func(ctx context.Context, i int) error) (errs []error, stopAt int) {
	errs = make([]error, n)
	stopAt = -1
	var (
		mu      sync.Mutex
		stopped = make(chan struct{})
	)
	isStopped := func() bool {
		select {
		case <-stopped:
			return true
		default:
			return false
		}
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(n, RetentionDeletes) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				// A job handed over as the stop came is not started.
				if isStopped() {
					errs[i] = errNotTried
					continue
				}
				err := del(ctx, i)
				errs[i] = err
				if err == nil || goOn != nil && goOn(err) {
					continue
				}
				mu.Lock()
				if stopAt < 0 {
					stopAt = i
					close(stopped)
				}
				mu.Unlock()
			}
		}()
	}
	sent := 0
send:
	for sent < n {
		select {
		case jobs <- sent:
			sent++
		case <-stopped:
			break send
		}
	}
	close(jobs)
	wg.Wait()
	for i := sent; i < n; i++ {
		errs[i] = errNotTried
	}
	return errs, stopAt
}

// isDamaged reports whether err is a local store's refusal to delete an
// entry no writer leaves (storage.ErrObjectDamaged), which retention
// leaves, names (leftEntry) and goes on past.
func isDamaged(err error) bool { return errors.Is(err, storage.ErrObjectDamaged) }

// errDeltaWindow is the result of a delta object's delete not started
// because DeltaDeleteWindow has passed since the run stored its marker.
var errDeltaWindow = errors.New("delta delete window passed")
