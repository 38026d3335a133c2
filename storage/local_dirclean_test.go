package storage_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/storage"
)

// A backup's chunk directory goes with its last object: Delete removes a
// directory left holding nothing but its lock file, so abandoned and
// retired backups leave no folder behind. A directory that holds anything
// else stays, and so does the storage directory's own folder above it.
func TestLocal_Delete_RemovesEmptyDirectory(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := storage.NewLocal(dir)
	for _, key := range []string{"site/basebackup_chunk/b1/c1", "site/basebackup_chunk/b1/c2", "site/basebackup/b1"} {
		if err := st.Create(ctx, key, strings.NewReader("x"), nil); err != nil {
			t.Fatal(err)
		}
	}
	chunkDir := filepath.Join(dir, "site", "basebackup_chunk", "b1")
	if err := st.Delete(ctx, "site/basebackup_chunk/b1/c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(chunkDir, "c2")); err != nil {
		t.Fatalf("the other chunk: %v", err)
	}
	if err := st.Delete(ctx, "site/basebackup_chunk/b1/c2"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(chunkDir); !errors.Is(err, os.ErrNotExist) {
		names, _ := os.ReadDir(chunkDir)
		t.Fatalf("chunk directory after its last object's Delete: %v (entries %v), want it gone", err, names)
	}
	if _, err := os.Stat(filepath.Join(dir, "site", "basebackup_chunk")); err != nil {
		t.Fatalf("basebackup_chunk itself: %v, want it kept", err)
	}
	// Deleting again, or a key of a directory that is gone, is fine.
	if err := st.Delete(ctx, "site/basebackup_chunk/b1/c2"); err != nil {
		t.Fatal(err)
	}
	// A new object in the same directory is stored and read.
	if err := st.Create(ctx, "site/basebackup_chunk/b1/c1", strings.NewReader("y"), nil); err != nil {
		t.Fatal(err)
	}
	rc, _, err := st.Open(ctx, "site/basebackup_chunk/b1/c1")
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()

	// A folder of an abandoned backup from before (only the lock file)
	// goes with the Delete of any key in it.
	old := filepath.Join(dir, "site", "basebackup_chunk", "b0")
	if err := os.Mkdir(old, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, ".hoard-create-lock"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, "site/basebackup_chunk/b0/c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(old); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("abandoned folder after a Delete in it: %v, want it gone", err)
	}

	// Anything else in the directory keeps it.
	other := filepath.Join(dir, "site", "basebackup_chunk", "b2")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "notes.txt"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, "site/basebackup_chunk/b2/c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(other, "notes.txt")); err != nil {
		t.Fatalf("a directory holding a file of someone else's: %v, want it kept", err)
	}
}

// A writer storing into a directory while the Delete of its last object
// removes it never fails and never loses its object: a writer that
// opened the directory just before it went makes it again.
func TestLocal_Delete_RaceWithWriter(t *testing.T) {
	ctx := context.Background()
	st := storage.NewLocal(t.TempDir())
	if err := st.Put(ctx, "site/basebackup_chunk/b1/seed", strings.NewReader("x"), nil); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := st.Delete(ctx, "site/basebackup_chunk/b1/none"); err != nil {
				t.Errorf("delete: %v", err)
				return
			}
		}
	}()
	for i := range 300 {
		key := fmt.Sprintf("site/basebackup_chunk/b1/c%d", i)
		var err error
		if i%2 == 0 {
			err = st.Put(ctx, key, strings.NewReader("chunk"), nil)
		} else {
			err = st.Create(ctx, key, strings.NewReader("chunk"), nil)
		}
		if err != nil {
			t.Errorf("store %s: %v", key, err)
			break
		}
		if _, err := st.Stat(ctx, key); err != nil {
			t.Errorf("stored %s, then: %v", key, err)
			break
		}
		if err := st.Delete(ctx, key); err != nil {
			t.Errorf("delete %s: %v", key, err)
			break
		}
		if i == 0 {
			if err := st.Delete(ctx, "site/basebackup_chunk/b1/seed"); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	wg.Wait()
}

// TestLocal_Create_DirectoryRemovedRepeatedly: a Delete emptying the
// key's directory removes it between the writer's mkdir and its open a
// dozen times in a row (a Delete looping in the directory that falls into
// step with the writer, as TestLocal_Delete_RaceWithWriter once saw on a
// loaded machine). Create and Put make it again each time and store the
// object. Before, a writer gave up after 10 tries with "object not
// found", and the upload failed.
func TestLocal_Create_DirectoryRemovedRepeatedly(t *testing.T) {
	ctx := context.Background()
	for _, op := range []string{"Create", "Put"} {
		t.Run(op, func(t *testing.T) {
			st := storage.NewLocal(t.TempDir())
			removed := 0
			storage.SetMkdirHook(st, func(dir string) {
				if removed < 12 {
					if err := os.Remove(dir); err != nil {
						t.Errorf("remove %s: %v", dir, err)
					}
					removed++
				}
			})
			key := "site/basebackup_chunk/b1/c1"
			var err error
			if op == "Create" {
				err = st.Create(ctx, key, strings.NewReader("chunk"), nil)
			} else {
				err = st.Put(ctx, key, strings.NewReader("chunk"), nil)
			}
			if err != nil {
				t.Fatalf("%s with its directory removed %d times: %v", op, removed, err)
			}
			if removed != 12 {
				t.Errorf("directory removed %d times, want 12", removed)
			}
			if _, err := st.Stat(ctx, key); err != nil {
				t.Errorf("stored, then: %v", err)
			}
		})
	}
}

// A symbolic link inside the storage directory that leads to a directory
// Delete empties stays: only a real directory goes.
func TestLocal_Delete_KeepsLinkedDirectory(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := storage.NewLocal(dir)
	if err := st.Create(ctx, "moved/xlog/000000010000000000000001", strings.NewReader("x"), nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "site"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..", "moved", "xlog"), filepath.Join(dir, "site", "xlog")); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, "site/xlog/000000010000000000000001"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "site", "xlog")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link after the Delete of the last object it leads to: %v %v, want it kept", fi, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "moved", "xlog")); err != nil {
		t.Fatalf("the linked directory: %v, want it kept", err)
	}
}

// A writer that opened a directory's lock file and got its lock after a
// Delete removed that file (and a new one was made) does not count itself
// the holder: it takes the directory's lock file as it now is, and waits
// for whoever holds that one.
func TestLocal_LockFileReplacedWhileWaiting(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := storage.NewLocal(dir)
	if err := st.Create(ctx, "d/obj", strings.NewReader("x"), nil); err != nil {
		t.Fatal(err)
	}
	lockName := filepath.Join(dir, "d", ".hoard-create-lock")
	old, err := os.OpenFile(lockName, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(old.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	var cur *os.File
	storage.SetLockWait(st, func() {
		// As a Delete does under the lock, then a writer: the name now
		// names a new file, held by another.
		if cur != nil {
			return
		}
		if err := os.Remove(lockName); err != nil {
			t.Error(err)
		}
		f, err := os.OpenFile(lockName, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Error(err)
			return
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			t.Error(err)
		}
		cur = f
		old.Close() // releases the old file's lock
	})
	done := make(chan error, 1)
	go func() { done <- st.Sync(ctx, "d/obj") }()
	select {
	case err := <-done:
		t.Fatalf("Sync returned (%v) while another held the directory's lock file", err)
	case <-time.After(300 * time.Millisecond):
	}
	cur.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
