package storage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The create lock file is hoard's own, but whoever can write the storage
// directory can plant something under its name: a link is not followed
// (a Create fails, naming it and what to do), nor is a FIFO waited on.
func TestLocal_CreateLockPlanted(t *testing.T) {
	for name, plant := range map[string]func(p, outside string) error{
		"ErrLink": func(p, outside string) error { return os.Symlink(outside, p) },
		"ErrFIFO": func(p, _ string) error { return syscall.Mkfifo(p, 0o600) },
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			root := t.TempDir()
			outside := filepath.Join(t.TempDir(), "file")
			if err := os.WriteFile(outside, []byte("keep"), 0o600); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(root, "site", "xlog")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			lock := filepath.Join(dir, createLockName)
			if err := plant(lock, outside); err != nil {
				t.Fatal(err)
			}
			l := NewLocal(root)
			err := l.Create(ctx, "site/xlog/000000010000000000000001", strings.NewReader("wal"), nil)
			if err == nil || !strings.Contains(err.Error(), lock) || !strings.Contains(err.Error(), "remove it") {
				t.Fatalf("Create beside a planted lock file = %v, want an error naming %s and saying to remove it", err, lock)
			}
			if b, err := os.ReadFile(outside); err != nil || string(b) != "keep" {
				t.Errorf("the file the link names: %q, %v", b, err)
			}
			if err := os.Remove(lock); err != nil {
				t.Fatal(err)
			}
			if err := l.Create(ctx, "site/xlog/000000010000000000000001", strings.NewReader("wal"), nil); err != nil {
				t.Errorf("Create once the planted file is removed: %v", err)
			}
		})
	}
}

// On a file system without locks (an NFS mount whose server runs no lock
// manager: flock fails with ENOLCK) Create and Sync go on unlocked, as
// before the lock, rather than stop archiving.
func TestLocal_CreateNoLocks(t *testing.T) {
	ctx := context.Background()
	calls := 0
	l := &Local{root: t.TempDir(), flock: func(int, int) error { calls++; return syscall.ENOLCK }}
	const key = "site/xlog/000000010000000000000001"
	if err := l.Create(ctx, key, strings.NewReader("wal"), nil); err != nil {
		t.Fatalf("Create without locks: %v", err)
	}
	if err := l.Create(ctx, key, strings.NewReader("wal"), nil); !errors.Is(err, ErrExist) {
		t.Errorf("Create of a stored key without locks = %v, want ErrExist", err)
	}
	if err := l.Sync(ctx, key); err != nil {
		t.Errorf("Sync without locks: %v", err)
	}
	if calls < 3 {
		t.Errorf("flock called %d times, want one per Create and Sync", calls)
	}
	wantStored(t, l, key, "wal")
}
