package pgtest

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestRemoveSettled removes a directory while another goroutine keeps
// creating files in it for a while, as wal-fetch's detached prefetch
// worker does in a restored cluster's pg_wal after PostgreSQL stopped:
// one os.RemoveAll then fails with "directory not empty".
func TestRemoveSettled(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	sub := filepath.Join(dir, "pg_wal", "hoard-prefetch")
	if err := os.MkdirAll(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	started, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		close(started)
		for i := 0; i < 2000; i++ {
			// The writer's own directory goes with the removal; it makes
			// it again, as a worker that opens its spool would.
			if os.MkdirAll(sub, 0o700) != nil {
				continue
			}
			_ = os.WriteFile(filepath.Join(sub, strconv.Itoa(i)), []byte("x"), 0o600)
		}
	}()
	<-started
	if err := removeSettled(dir, time.Minute); err != nil {
		t.Fatalf("removeSettled = %v", err)
	}
	<-done
	// The writer may have made the directory again after the removal
	// that succeeded; once it has stopped, one more removal must leave
	// nothing.
	if err := removeSettled(dir, time.Minute); err != nil {
		t.Fatalf("removeSettled after the writer stopped = %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s still exists: %v", dir, err)
	}
}
