package storage_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// TestSFTP_PutWithoutPosixRename: against a server without
// posix-rename@openssh.com (OpenSSH's server with the request denied, so
// that it does not offer the extension: its SSH_FXP_RENAME refuses an
// existing name, as the protocol's draft says), a Put over an existing object
// never removes it first. When the server refuses to rename over the
// object, Put fails with ErrNoAtomicReplace naming posix-rename and leaves
// no temp file; when the rename fails halfway (here the temp file is
// gone), Put fails. Either way the old object stays whole. A new key is
// stored as usual.
func TestSFTP_PutWithoutPosixRename(t *testing.T) {
	srv := storetest.SFTPWithout(t, "posix-rename")
	c := srv.Config
	dir := t.TempDir()
	c.Directory, c.Prefix = dir, ""
	ctx := context.Background()
	st, err := storage.Open(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	read := func(key string) string {
		t.Helper()
		rc, _, err := st.Open(ctx, key)
		if err != nil {
			t.Fatalf("open %s: %v", key, err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	const key = "site/basebackup/b1"
	if err := st.Put(ctx, key, strings.NewReader("old"), storage.Metadata{"v": "1"}); err != nil {
		t.Fatalf("put a new key: %v", err)
	}

	err = st.Put(ctx, key, strings.NewReader("new"), storage.Metadata{"v": "2"})
	if !errors.Is(err, storage.ErrNoAtomicReplace) || !strings.Contains(err.Error(), "posix-rename@openssh.com") {
		t.Fatalf("replace on a server whose rename refuses an existing name: %v, want ErrNoAtomicReplace naming posix-rename", err)
	}
	if got := read(key); got != "old" {
		t.Fatalf("after a refused replace: %q, want the old object", got)
	}
	names := testio.DirNames(t, filepath.Join(dir, "site", "basebackup"))
	if got := strings.Join(names, " "); got != "b1 b1.metadata" {
		t.Errorf("directory holds %q, want the object and its sidecar only", got)
	}

	// The upload's temp file vanishes before its rename (a server disk
	// that fails): the object must not have been removed meanwhile.
	storage.SetReplaceHook(st.(*storage.SFTP), func(oldname, _ string) error {
		return os.Remove(filepath.Join(dir, strings.TrimPrefix(oldname, dir)))
	})
	if err := st.Put(ctx, key, strings.NewReader("new"), storage.Metadata{"v": "2"}); err == nil {
		t.Fatal("put with its temp file gone succeeded")
	}
	storage.SetReplaceHook(st.(*storage.SFTP), nil)
	if got := read(key); got != "old" {
		t.Fatalf("after a failed replace: %q, want the old object", got)
	}

	if err := st.Put(ctx, "site/basebackup/b2", strings.NewReader("two"), nil); err != nil {
		t.Fatalf("put a new key: %v", err)
	}
	if got := read("site/basebackup/b2"); got != "two" {
		t.Errorf("new key: %q", got)
	}
}

// TestSFTP_CreateWithoutHardlink runs the conformance suite against
// OpenSSH's server without hardlink@openssh.com (the request denied, so
// that it does not offer it): Create then places its temp file with
// SSH_FXP_RENAME, which OpenSSH's server does with link(2) and unlink(2),
// refusing an existing name. Of ten concurrent Creates of one key exactly
// one must succeed (ConcurrentCreate), as with the link.
func TestSFTP_CreateWithoutHardlink(t *testing.T) {
	c := storetest.SFTPWithout(t, "hardlink").Config
	storetest.Run(t, func(t testing.TB) storage.Store {
		c := c
		c.Directory = t.TempDir()
		return storetest.Open(t, c)
	})
}
