package restore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/storage"
)

// TestRetryable_ErrChecksum: a chunk whose download was cut is
// downloaded again; one whose bytes do not match the store's checksum
// (Swift's ETag) is not: it reads the same again.
func TestRetryable_ErrChecksum(t *testing.T) {
	const key, where = "site/basebackup_chunk/c", "swift container"
	if err := (&sourceError{err: &storage.ReadError{Key: key, Where: where, Err: io.ErrUnexpectedEOF}}); !retryable(err) {
		t.Errorf("a cut download is not retried: %v", err)
	}
	corrupt := fmt.Errorf("%w (Swift's ETag): Object Corrupted", storage.ErrChecksum)
	if err := (&sourceError{err: &storage.ReadError{Key: key, Where: where, Err: corrupt}}); retryable(err) {
		t.Errorf("retryable(%v) = true", err)
	}
}

// TestWatchStall_ErrStalled: a download that reads nothing more is
// canceled with errStalled once the timeout passes; one that stops its
// watcher first is not, and its stop func waits for the watcher.
func TestWatchStall_ErrStalled(t *testing.T) {
	t.Run("Stalled", func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		pr := &progressReader{r: bytes.NewReader(nil), total: new(atomic.Int64)}
		stop := watchStall(ctx, cancel, pr, 10*time.Millisecond)
		<-ctx.Done()
		stop()
		if got := context.Cause(ctx); !errors.Is(got, errStalled) {
			t.Fatalf("cause %v, want errStalled", got)
		}
	})
	t.Run("Stopped", func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		pr := &progressReader{r: bytes.NewReader(nil), total: new(atomic.Int64)}
		stop := watchStall(ctx, cancel, pr, time.Hour)
		stop()
		if err := ctx.Err(); err != nil {
			t.Fatalf("ctx ended (%v) after the watcher was stopped", context.Cause(ctx))
		}
	})
}

// TestOptions_ReportProgress: Progress is called at each interval
// while the restore runs, and once more by a stop with final set.
func TestOptions_ReportProgress(t *testing.T) {
	t.Run("Ticks", func(t *testing.T) {
		ticked := make(chan struct{}, 1)
		o := Options{ProgressInterval: time.Millisecond, Progress: func(Progress) {
			select {
			case ticked <- struct{}{}:
			default:
			}
		}}
		stop := o.reportProgress(&progress{})
		<-ticked
		<-ticked
		stop(false)
	})
	for _, final := range []bool{false, true} {
		t.Run(fmt.Sprintf("Final=%v", final), func(t *testing.T) {
			var got []Progress
			// No tick comes in the test: only the final report.
			o := Options{ProgressInterval: time.Hour, Progress: func(p Progress) { got = append(got, p) }}
			p := &progress{}
			stop := o.reportProgress(p)
			p.chunksDone.Store(3)
			stop(final)
			switch {
			case final && (len(got) != 1 || got[0].ChunksDone != 3):
				t.Errorf("reports %+v, want one with 3 chunks done", got)
			case !final && len(got) != 0:
				t.Errorf("reports %+v, want none", got)
			}
		})
	}
}
