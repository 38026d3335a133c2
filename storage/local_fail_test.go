package storage_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/storage"
)

// A missing or empty storage directory (an unmounted volume) never reads
// as "object not found": wal-fetch would end recovery early.
func TestLocal_Open_ErrNotMounted(t *testing.T) {
	ctx := context.Background()
	parent := t.TempDir()
	const key = "site/xlog/000000010000000000000001"
	for name, dir := range map[string]string{
		"Missing": filepath.Join(parent, "mnt", "backups"),
		"Empty":   parent,
	} {
		t.Run(name, func(t *testing.T) {
			st := storage.NewLocal(dir)
			_, _, err := st.Open(ctx, key)
			if err == nil || errors.Is(err, storage.ErrNotFound) || !errors.Is(err, storage.ErrPermanent) ||
				!strings.Contains(err.Error(), "is its volume mounted?") {
				t.Errorf("Open = %v, want a permanent error asking whether the volume is mounted", err)
			}
			if _, err := st.OpenRange(ctx, key, 0, -1); err == nil || errors.Is(err, storage.ErrNotFound) {
				t.Errorf("OpenRange = %v, want an error that is not ErrNotFound", err)
			}
			// Stat still answers: a first upload checks that its key is free.
			if _, err := st.Stat(ctx, key); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("Stat = %v, want ErrNotFound", err)
			}
		})
	}
	t.Run("OKMountedMissingKey", func(t *testing.T) {
		st := storage.NewLocal(t.TempDir())
		if err := st.Put(ctx, "site/basebackup/b", strings.NewReader("x"), nil); err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.Open(ctx, key); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Open of a missing key in a populated store = %v, want ErrNotFound", err)
		}
	})
}

// An object whose sidecar is there but whose file is gone is a damaged
// store, not a missing object.
func TestLocal_Open_ErrSidecarWithoutFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := storage.NewLocal(dir)
	const key = "site/xlog/000000010000000000000001"
	if err := st.Put(ctx, key, strings.NewReader("wal"), nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, filepath.FromSlash(key))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Open(ctx, key); err == nil || errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), "has a metadata sidecar but no object file") {
		t.Errorf("Open = %v, want a damaged-store error that is not ErrNotFound", err)
	}
	if _, err := st.Stat(ctx, key); err == nil || errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Stat = %v, want an error that is not ErrNotFound", err)
	}
}

// Temp files a killed writer left are never objects, and List removes them
// once they have not been written for StaleTempAge; fresh ones stay.
func TestLocal_List_RemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	checkListRemovesStaleTemps(t, storage.NewLocal(dir), filepath.Join(dir, "site", "xlog"), map[string]tempFile{
		".000000010000000000000002.tmp-123":           {aged: true, removed: true},
		".000000010000000000000002.metadata_tmp-4":    {aged: true, removed: true},
		"000000010000000000000003.metadata_tmp":       {aged: true, removed: true},
		".000000010000000000000004.tmp-fresh":         {},
		".000000010000000000000004.metadata_tmp-5678": {},
	})
}

// tempFile is a file a test leaves beside a store's objects: aged, it was
// last written longer than StaleTempAge ago; removed, a listing must
// remove it.
type tempFile struct{ aged, removed bool }

// checkListRemovesStaleTemps stores one object in site/xlog/, writes files
// into xlog (that directory on the store's file system), lists the store
// and checks that the listing names only the object and removed exactly
// the files marked removed.
func checkListRemovesStaleTemps(t *testing.T, st storage.Store, xlog string, files map[string]tempFile) {
	t.Helper()
	ctx := context.Background()
	const key = "site/xlog/000000010000000000000001"
	if err := st.Put(ctx, key, strings.NewReader("wal"), nil); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-storage.StaleTempAge - time.Hour)
	for name, f := range files {
		p := filepath.Join(xlog, name)
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		if f.aged {
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
	}
	var keys []string
	if err := st.List(ctx, "site/", func(o storage.Object) error { keys = append(keys, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != key {
		t.Errorf("List = %v, want only the one object", keys)
	}
	for name, f := range files {
		_, err := os.Stat(filepath.Join(xlog, name))
		if gone := errors.Is(err, os.ErrNotExist); gone != f.removed {
			t.Errorf("%s: removed = %v, want %v", name, gone, f.removed)
		}
	}
}

// An object's time is the storage's: setting the file's or the sidecar's
// modification time back does not make it older.
func TestLocal_Changed_IsChangeTime(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := storage.NewLocal(dir)
	const key = "site/xlog/000000010000000000000001"
	before := time.Now().Add(-time.Second)
	if err := st.Put(ctx, key, strings.NewReader("wal"), nil); err != nil {
		t.Fatal(err)
	}
	past := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	p := filepath.Join(dir, filepath.FromSlash(key))
	for _, f := range []string{p, p + ".metadata"} {
		if err := os.Chtimes(f, past, past); err != nil {
			t.Fatal(err)
		}
	}
	o, err := st.Stat(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	rc, opened, err := st.Open(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	for what, m := range map[string]time.Time{"Stat": o.Changed, "Open": opened.Changed} {
		if m.Before(before) {
			t.Errorf("%s: Changed = %v after utimes to %v, want the change time (after %v)", what, m, past, before)
		}
	}
}

// Create adopts an object file without a sidecar that holds its own bytes
// (a writer that died between its two links), and refuses, naming the
// file, one that holds other bytes.
func TestLocal_Create_Leftover(t *testing.T) {
	t.Cleanup(storage.SetIncompleteWait(200 * time.Millisecond))
	ctx := context.Background()
	dir := t.TempDir()
	st := storage.NewLocal(dir)
	const key = "site/xlog/000000010000000000000001"
	p := filepath.Join(dir, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("same bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := st.Create(ctx, key, strings.NewReader("same bytes"), storage.Metadata{"host": "h"}); err != nil {
		t.Fatalf("Create over an identical leftover: %v", err)
	}
	if o, err := st.Stat(ctx, key); err != nil || o.Metadata["host"] != "h" {
		t.Fatalf("Stat after adoption = %+v, %v", o, err)
	}

	const other = "site/xlog/000000010000000000000002"
	q := filepath.Join(dir, filepath.FromSlash(other))
	if err := os.WriteFile(q, []byte("someone else's bytes"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := st.Create(ctx, other, strings.NewReader("my bytes"), nil)
	if err == nil || errors.Is(err, storage.ErrExist) || !strings.Contains(err.Error(), q) {
		t.Fatalf("Create over a different leftover = %v, want an error naming %s", err, q)
	}
	if b, _ := os.ReadFile(q); string(b) != "someone else's bytes" {
		t.Errorf("leftover = %q, want it untouched", b)
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") || strings.Contains(e.Name(), "metadata_tmp") {
			t.Errorf("Create left the temp file %s", e.Name())
		}
	}
}
