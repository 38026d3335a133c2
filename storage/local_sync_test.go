package storage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// syncRecorder records the paths a Local fsyncs.
type syncRecorder struct {
	mu    sync.Mutex
	paths []string
}

func (r *syncRecorder) fsync(f *os.File) error {
	r.mu.Lock()
	r.paths = append(r.paths, f.Name())
	r.mu.Unlock()
	return f.Sync()
}

func (r *syncRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.paths
	r.paths = nil
	return p
}

// The directories Put creates are fsynced in their parents, up to the
// first one that existed: without it a crash can take away a new
// directory, and every object in it, after Put returned.
func TestLocal_PutSyncsNewDirectories(t *testing.T) {
	base := t.TempDir()
	rec := &syncRecorder{}
	l := &Local{root: filepath.Join(base, "store"), fsync: rec.fsync}
	ctx := context.Background()
	if err := l.Put(ctx, "site/xlog/000000010000000000000001", strings.NewReader("wal"), nil); err != nil {
		t.Fatal(err)
	}
	got := rec.take()
	for _, dir := range []string{base, l.root, filepath.Join(l.root, "site")} {
		if !slices.Contains(got, dir) {
			t.Errorf("Put created %s's child directory without fsyncing %s; fsynced %v", dir, dir, got)
		}
	}
	// An existing directory is not synced again for its own sake.
	if err := l.Put(ctx, "site/xlog/000000010000000000000002", strings.NewReader("wal"), nil); err != nil {
		t.Fatal(err)
	}
	if got := rec.take(); slices.Contains(got, base) || slices.Contains(got, l.root) {
		t.Errorf("second Put into existing directories fsynced their parents: %v", got)
	}
}

// Sync fsyncs the object, its sidecar and every directory from the
// object's up to the root's parent: what a Put that died before its
// fsyncs may have left unsynced.
func TestLocal_Sync(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		base := t.TempDir()
		rec := &syncRecorder{}
		l := &Local{root: filepath.Join(base, "store"), fsync: rec.fsync}
		ctx := context.Background()
		key := "site/xlog/000000010000000000000001"
		if err := l.Put(ctx, key, strings.NewReader("wal"), nil); err != nil {
			t.Fatal(err)
		}
		rec.take()
		if err := l.Sync(ctx, key); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(l.root, "site", "xlog", "000000010000000000000001")
		want := []string{p, p + sidecarSuffix, filepath.Dir(p), filepath.Join(l.root, "site"), l.root, base}
		if got := rec.take(); !slices.Equal(got, want) {
			t.Errorf("Sync fsynced %v, want %v", got, want)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		l := NewLocal(t.TempDir())
		if err := l.Sync(context.Background(), "site/xlog/x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Sync of a missing key: %v, want ErrNotFound", err)
		}
	})
	t.Run("ThroughRetry", func(t *testing.T) {
		rec := &syncRecorder{}
		l := &Local{root: t.TempDir(), fsync: rec.fsync}
		ctx := context.Background()
		if err := l.Put(ctx, "k", strings.NewReader("v"), nil); err != nil {
			t.Fatal(err)
		}
		rec.take()
		if err := Sync(ctx, WithRetry(l, RetryOptions{}), "k"); err != nil {
			t.Fatal(err)
		}
		if got := rec.take(); !slices.Contains(got, filepath.Join(l.root, "k")) {
			t.Errorf("Sync through the retry wrapper fsynced %v", got)
		}
		if err := Sync(ctx, WithRetry(NewMem(), RetryOptions{}), "k"); err != nil {
			t.Errorf("Sync of a store without Sync: %v", err)
		}
	})
}
