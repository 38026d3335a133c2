package storage_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/storage"
)

// TestLocal_ErrObjectFIFO: someone who can write the storage directory
// replaces an object's file with a FIFO and keeps its sidecar. Open, Stat
// and OpenRange fail at once, naming the file, instead of waiting forever
// for a writer (wal-fetch would hang, and recovery with it).
func TestLocal_ErrObjectFIFO(t *testing.T) {
	dir := t.TempDir()
	st := storage.NewLocal(dir)
	ctx := context.Background()
	const key = "site/xlog/000000010000000000000001"
	if err := st.Put(ctx, key, strings.NewReader("wal"), nil); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, filepath.FromSlash(key))
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	// Should an open wait for a writer, this one ends the wait when the
	// test is done.
	t.Cleanup(func() {
		if f, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	for _, op := range []struct {
		name string
		do   func() error
	}{
		{"Open", func() error {
			rc, _, err := st.Open(ctx, key)
			if err == nil {
				rc.Close()
			}
			return err
		}},
		{"Stat", func() error { _, err := st.Stat(ctx, key); return err }},
		{"OpenRange", func() error {
			rc, err := st.OpenRange(ctx, key, 0, 1)
			if err == nil {
				rc.Close()
			}
			return err
		}},
	} {
		t.Run(op.name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() { done <- op.do() }()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "not a regular file") {
					t.Errorf("%s of a FIFO = %v, want an error saying it is not a regular file", op.name, err)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("%s of a FIFO did not return in 30 s: it waits for a writer", op.name)
			}
		})
	}
}
