package storage_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// TestLocal_ErrLinkedDirectory: someone who can write the storage
// directory replaces an object's directory with a link to a directory
// outside it (pg_wal of the running cluster, say). A Put, Create or
// Delete of a key below the link fails and leaves the linked directory
// as it was: nothing is written into it, and nothing named like an
// object is removed from it.
func TestLocal_ErrLinkedDirectory(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	outside := t.TempDir()
	const seg = "000000010000000000000001"
	for _, n := range []string{seg, seg + ".metadata"} {
		if err := os.WriteFile(filepath.Join(outside, n), []byte("not the store's: "+n), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st := storage.NewLocal(dir)
	if err := os.Mkdir(filepath.Join(dir, "site"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "site", "xlog")); err != nil {
		t.Fatal(err)
	}
	ops := []struct {
		name string
		do   func() error
	}{
		{"Put", func() error {
			return st.Put(ctx, "site/xlog/000000010000000000000002", bytes.NewReader([]byte("wal")), storage.Metadata{})
		}},
		{"PutOver", func() error { return st.Put(ctx, "site/xlog/"+seg, bytes.NewReader([]byte("wal")), storage.Metadata{}) }},
		{"Create", func() error {
			return st.Create(ctx, "site/xlog/000000010000000000000003", bytes.NewReader([]byte("wal")), storage.Metadata{})
		}},
		{"Delete", func() error { return st.Delete(ctx, "site/xlog/"+seg) }},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			err := op.do()
			const link = `"site/xlog"`
			if !errors.Is(err, storage.ErrPermanent) || !strings.Contains(err.Error(), link+" is a symbolic link out of the storage directory "+dir) {
				t.Errorf("%s through a link out of the storage directory = %v, want a permanent error naming %s", op.name, err, link)
			}
			if got := testio.DirNames(t, outside); !slices.Equal(got, []string{seg, seg + ".metadata"}) {
				t.Errorf("the linked directory holds %v after %s, want it as it was", got, op.name)
			}
			for _, n := range []string{seg, seg + ".metadata"} {
				if b, err := os.ReadFile(filepath.Join(outside, n)); err != nil || string(b) != "not the store's: "+n {
					t.Errorf("%s after %s: %q, %v", n, op.name, b, err)
				}
			}
		})
	}
}
