package storage_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// oddEntries are what someone who can write the storage directory (or a
// damaged file system, or a mistake by hand) may leave under an object's
// name, its sidecar kept: make replaces the object file at p, and the
// error of a read, and the object's Damaged, says want.
var oddEntries = func() []oddEntry {
	var out []oddEntry
	for _, e := range testio.OddEntries {
		out = append(out, oddEntry{e.Name, e.Make, e.What + ", not a regular file"})
	}
	return append(out, oddEntry{"EmptyDirectory", func(p string) error { return os.Mkdir(p, 0o755) }, "is a directory, not a regular file"})
}()

// oddEntry is one of oddEntries.
type oddEntry struct {
	name string
	make func(p string) error
	want string
}

// plantOdd stores key in a new local store, replaces its file by make's
// entry and returns the store and the file's path.
func plantOdd(t *testing.T, key string, make func(p string) error) (*storage.Local, string) {
	t.Helper()
	dir := t.TempDir()
	st := storage.NewLocal(dir)
	if err := st.Put(context.Background(), key, strings.NewReader("object"), storage.Metadata{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, filepath.FromSlash(key))
	testio.ReplaceFile(t, p, make)
	return st, p
}

// TestLocal_ListOddEntry: an object whose file is replaced by a FIFO, a
// directory or a socket, its sidecar kept, is listed with
// Damaged saying what is there (wrapping ErrObjectDamaged), Size 0,
// between the sound objects; Stat fails with the same words, at once.
// Before, List left it out in silence. An entry of that kind without a
// sidecar is no object, and a file in a directory planted under an
// object's name is listed by its own key only when it has a sidecar.
func TestLocal_ListOddEntry(t *testing.T) {
	ctx := context.Background()
	const key = "site/basebackup/b"
	for _, tc := range oddEntries {
		t.Run(tc.name, func(t *testing.T) {
			st, p := plantOdd(t, key, tc.make)
			for _, k := range []string{"site/basebackup/a", "site/basebackup/c"} {
				if err := st.Put(ctx, k, strings.NewReader("object"), nil); err != nil {
					t.Fatal(err)
				}
			}
			// No sidecar: no object.
			if err := syscall.Mkfifo(filepath.Join(filepath.Dir(p), "d"), 0o600); err != nil {
				t.Fatal(err)
			}
			var got []storage.Object
			err := within(t, 30*time.Second, "List", func() error {
				return st.List(ctx, "site/basebackup/", func(o storage.Object) error {
					got = append(got, o)
					return nil
				})
			})
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, o := range got {
				keys = append(keys, o.Key)
				switch {
				case o.Key != key && o.Damaged != nil:
					t.Errorf("%s: Damaged %v, want nil", o.Key, o.Damaged)
				case o.Key == key && (!errors.Is(o.Damaged, storage.ErrObjectDamaged) || !strings.Contains(o.Damaged.Error(), p+" ") ||
					!strings.Contains(o.Damaged.Error(), tc.want) || o.Size != 0):
					t.Errorf("%s: Damaged %v, Size %d; want ErrObjectDamaged naming %s and saying %q, Size 0", o.Key, o.Damaged, o.Size, p, tc.want)
				}
			}
			if got, want := strings.Join(keys, " "), "site/basebackup/a site/basebackup/b site/basebackup/c"; got != want {
				t.Errorf("List = %s, want %s", got, want)
			}
			_, err = st.Stat(ctx, key)
			if !errors.Is(err, storage.ErrObjectDamaged) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Stat = %v, want ErrObjectDamaged saying %q", err, tc.want)
			}
		})
	}
}

// TestLocal_DeleteOddEntry: Delete of a key whose file is a FIFO, a
// directory or a socket fails with ErrObjectDamaged naming it, and leaves
// it and its sidecar as they were (retention deletes by what List
// reports): hoard removes nothing it did not store.
func TestLocal_DeleteOddEntry(t *testing.T) {
	ctx := context.Background()
	const key = "site/xlog/000000010000000000000001"
	for _, tc := range oddEntries {
		t.Run(tc.name, func(t *testing.T) {
			st, p := plantOdd(t, key, tc.make)
			err := within(t, 30*time.Second, "Delete", func() error { return st.Delete(ctx, key) })
			if !errors.Is(err, storage.ErrObjectDamaged) || !strings.Contains(err.Error(), p+" "+tc.want[:len("is a")]) {
				t.Errorf("Delete = %v, want ErrObjectDamaged naming %s", err, p)
			}
			for _, n := range []string{p, p + ".metadata"} {
				if _, err := os.Lstat(n); err != nil {
					t.Errorf("%s after Delete: %v, want it kept", n, err)
				}
			}
			if tc.name == "Directory" {
				if b, err := os.ReadFile(filepath.Join(p, "kept")); err != nil || string(b) != "not hoard's" {
					t.Errorf("the planted directory's file after Delete: %q, %v", b, err)
				}
			}
		})
	}
}

// TestLocal_ListSidecarAlone: an object whose file is gone, its sidecar
// kept (what PGHoard's delete leaves when it is stopped between removing
// the file and the sidecar, or a disk that lost the file), is not listed,
// as PGHoard's listing does not list it: a site PGHoard once served must
// not stop hoard's listing, restore and retention for it. OnSkip hears of
// it once per listing, naming the sidecar to remove; Stat of its key
// fails naming the missing file; Delete removes the sidecar.
func TestLocal_ListSidecarAlone(t *testing.T) {
	ctx := context.Background()
	const key = "site/basebackup/b"
	st, p := plantOdd(t, key, func(string) error { return nil })
	for _, k := range []string{"site/basebackup/a", "site/basebackup/c"} {
		if err := st.Put(ctx, k, strings.NewReader("object"), nil); err != nil {
			t.Fatal(err)
		}
	}
	var skipped []string
	st.OnSkip = func(key, why string) { skipped = append(skipped, key+": "+why) }
	var keys []string
	if err := st.List(ctx, "site/", func(o storage.Object) error {
		if o.Damaged != nil {
			t.Errorf("%s: Damaged %v, want nil", o.Key, o.Damaged)
		}
		keys = append(keys, o.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(keys, " "), "site/basebackup/a site/basebackup/c"; got != want {
		t.Errorf("List = %s, want %s", got, want)
	}
	if len(skipped) != 1 || !strings.HasPrefix(skipped[0], key+": ") || !strings.Contains(skipped[0], "PGHoard leaves one") ||
		!strings.Contains(skipped[0], "remove "+p+".metadata") {
		t.Errorf("OnSkip heard %q, want one call for %s naming PGHoard and the sidecar to remove", skipped, key)
	}
	if _, err := st.Stat(ctx, key); !errors.Is(err, storage.ErrObjectDamaged) || !strings.Contains(err.Error(), "has a metadata sidecar but no object file") {
		t.Errorf("Stat = %v, want ErrObjectDamaged saying the file is missing", err)
	}
	if err := st.Delete(ctx, key); err != nil {
		t.Fatalf("Delete = %v", err)
	}
	if _, err := os.Lstat(p + ".metadata"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("sidecar after Delete: %v, want it gone", err)
	}
}
