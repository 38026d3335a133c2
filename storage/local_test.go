package storage_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// PGHoard's own local-storage objects (testdata/pghoard, written by
// PGHoard) read as a store, although their "_hash" is the placeholder "abc".
func TestLocal_PGHoardTestdata(t *testing.T) {
	dir := filepath.Join("..", "testdata", "pghoard", "basebackup")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("PGHoard test data: %v", err)
	}
	st, err := storage.Open(context.Background(), storage.Config{Type: "local", Directory: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var keys []string
	if err := st.List(ctx, "chunks/", func(o storage.Object) error {
		keys = append(keys, o.Key)
		fi, err := os.Stat(filepath.Join(dir, o.Key))
		if err != nil || fi.Size() != o.Size {
			t.Errorf("%s: listed size %d, file %v %v", o.Key, o.Size, fi, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{"chunks/00000001.pghoard", "chunks/00000002.pghoard", "chunks/00000003.pghoard", "chunks/00000004.pghoard"}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Fatalf("List (-want +got):\n%s", diff)
	}
	data, md := storetest.Read(t, st, "chunks/00000001.pghoard")
	file, _ := os.ReadFile(filepath.Join(dir, "chunks", "00000001.pghoard"))
	if string(data) != string(file) || len(data) != 1745 {
		t.Errorf("read %d bytes, want the file's %d", len(data), len(file))
	}
	wantMD := storage.Metadata{
		"compression-algorithm": "snappy",
		"encryption-key-id":     "5ba999de817c49a682ffed124abf9a2e",
		"format":                "pghoard-bb-v2",
		"original-file-size":    "20480",
	}
	if diff := cmp.Diff(wantMD, md.Metadata); diff != "" {
		t.Errorf("metadata (-want +got):\n%s", diff)
	}
	if o, err := st.Stat(ctx, "chunks/00000003.pghoard"); err != nil || o.Metadata["original-file-size"] != "10240" || o.Size != 1130 {
		t.Errorf("Stat = %+v, %v", o, err)
	}
}

// Put writes the object file and a PGHoard sidecar: sorted JSON of string
// values with "_hash", the SHA-256 of the stored bytes, "Content-Length",
// their count (a stale one passed in is replaced), and no temp files.
func TestLocal_Sidecar(t *testing.T) {
	dir := t.TempDir()
	st, err := storage.Open(context.Background(), storage.Config{Type: "local", Directory: dir, Prefix: "pfx"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	data := "stored bytes"
	md := storage.Metadata{"original-file-size": "12", "compression-algorithm": "snappy", "encryption-key-id": "", "host": "h", "Content-Length": "99"}
	if err := st.Put(ctx, "site/xlog/000000010000000000000001", strings.NewReader(data), md); err != nil {
		t.Fatal(err)
	}
	obj := filepath.Join(dir, "pfx", "site", "xlog", "000000010000000000000001")
	got, err := os.ReadFile(obj)
	if err != nil || string(got) != data {
		t.Fatalf("object file = %q, %v", got, err)
	}
	sidecar, err := os.ReadFile(obj + ".metadata")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(data))
	want := `{"Content-Length": "12", "_hash": "` + hex.EncodeToString(sum[:]) + `", "compression-algorithm": "snappy", "host": "h", "original-file-size": "12"}`
	if string(sidecar) != want {
		t.Errorf("sidecar =\n%s\nwant\n%s", sidecar, want)
	}
	var parsed map[string]string
	if err := json.Unmarshal(sidecar, &parsed); err != nil {
		t.Errorf("sidecar is not a JSON object of strings: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(obj))
	entries = slices.DeleteFunc(entries, func(e os.DirEntry) bool { return e.Name() == storage.CreateLockName })
	if len(entries) != 2 {
		t.Errorf("directory holds %d entries, want the object and its sidecar: %v", len(entries), entries)
	}
}

// Files that are not complete objects stay invisible: no sidecar, dot
// files, sidecar temp files, a sidecar without its file
// (TestLocal_ListSidecarAlone).
func TestLocal_Invisible(t *testing.T) {
	dir := t.TempDir()
	st := storage.NewLocal(dir)
	ctx := context.Background()
	if err := st.Put(ctx, "xlog/1", strings.NewReader("one"), nil); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"xlog/2":                 "no sidecar",
		"xlog/.1.tmp-123":        "temp data",
		"xlog/1.metadata_tmp-99": "{}",
		"xlog/3.metadata_tmp":    "{}",
		"xlog/.hidden":           "x",
		"xlog/.hidden.metadata":  "{}",
		"xlog/orphan.metadata":   "{}",
		".dotdir/x":              "x",
		".dotdir/x.metadata":     "{}",
		"xlog/3":                 "x",
	} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	if err := st.List(ctx, "", func(o storage.Object) error { keys = append(keys, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(keys, []string{"xlog/1"}) {
		t.Errorf("List = %v, want [xlog/1]", keys)
	}
	for _, key := range []string{"xlog/2", "xlog/3"} {
		if _, _, err := st.Open(ctx, key); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("Open %s: %v, want ErrNotFound", key, err)
		}
	}
	for _, key := range []string{"../x", "/abs", "a//b", "xlog/x.metadata", "xlog/.x", ""} {
		if err := st.Put(ctx, key, strings.NewReader("x"), nil); err == nil {
			t.Errorf("Put %q succeeded, want an invalid-key error", key)
		}
	}
}

// TestLocal_ErrSidecarNotMetadata: a sidecar that is over the size limit
// (valid JSON padded with spaces), a FIFO or a link makes its object's
// metadata unreadable (ErrBadMetadata, naming the sidecar), for Stat and
// Open alike, without reading it into memory, waiting on it or following
// it.
func TestLocal_ErrSidecarNotMetadata(t *testing.T) {
	for _, tt := range []struct {
		name string
		make func(t *testing.T, sidecar string)
	}{
		{"Oversized", func(t *testing.T, sidecar string) {
			if err := os.WriteFile(sidecar, []byte("{}"+strings.Repeat(" ", 8<<20)), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"FIFO", func(t *testing.T, sidecar string) {
			if err := syscall.Mkfifo(sidecar, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"Link", func(t *testing.T, sidecar string) {
			if err := os.Symlink("/dev/zero", sidecar); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			st := storage.NewLocal(dir)
			ctx := context.Background()
			if err := st.Put(ctx, "site/basebackup/b", strings.NewReader("x"), nil); err != nil {
				t.Fatal(err)
			}
			sidecar := filepath.Join(dir, "site", "basebackup", "b.metadata")
			if err := os.Remove(sidecar); err != nil {
				t.Fatal(err)
			}
			tt.make(t, sidecar)
			if _, err := st.Stat(ctx, "site/basebackup/b"); !errors.Is(err, storage.ErrBadMetadata) || !strings.Contains(err.Error(), "b.metadata") {
				t.Errorf("Stat = %v, want ErrBadMetadata naming b.metadata", err)
			}
			rc, _, err := st.Open(ctx, "site/basebackup/b")
			if err == nil {
				rc.Close()
			}
			if !errors.Is(err, storage.ErrBadMetadata) {
				t.Errorf("Open = %v, want ErrBadMetadata", err)
			}
		})
	}
}
