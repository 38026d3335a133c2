package storage_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// A Put or Create into a local store whose file system fills, while the
// data is written or only when the metadata sidecar is (the inodes run
// out after the data's temp file), fails with ENOSPC naming the path,
// leaves no temp file, keeps the object it would replace as it was, and
// succeeds once there is room again.
func TestLocal_Put_ErrDiskFull(t *testing.T) {
	ctx := context.Background()
	dir := pgtest.MountTmpfs(t, 2)
	st := storage.NewLocal(dir)
	const key = "site/xlog/000000010000000000000001"
	old := []byte("the stored object")
	if err := st.Put(ctx, key, bytes.NewReader(old), storage.Metadata{"v": "old"}); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), 3<<20) // more than the file system holds
	small := []byte("new bytes")
	for _, c := range []struct {
		name  string
		data  []byte
		limit func(t *testing.T) // makes the file system too full for data
	}{
		{"Data", big, func(t *testing.T) {}},
		{"Sidecar", small, func(t *testing.T) { limitInodes(t, dir, 1) }},
	} {
		for _, op := range []string{"Put", "Create"} {
			t.Run(c.name+op, func(t *testing.T) {
				before := pgtest.Files(t, dir)
				c.limit(t)
				var err error
				if op == "Put" {
					err = st.Put(ctx, key, bytes.NewReader(c.data), storage.Metadata{"v": "new"})
				} else {
					err = st.Create(ctx, "site/xlog/000000010000000000000002", bytes.NewReader(c.data), storage.Metadata{"v": "new"})
				}
				limitInodes(t, dir, 0)
				t.Log(err)
				if !errors.Is(err, unix.ENOSPC) || !strings.Contains(err.Error(), dir) {
					t.Errorf("%s = %v, want ENOSPC naming %s", op, err, dir)
				}
				if got := pgtest.Files(t, dir); !slices.Equal(got, before) {
					t.Errorf("the store holds %v after the failed %s, want %v", got, op, before)
				}
				rc, md, err := st.Open(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || !bytes.Equal(got, old) || md.Metadata["v"] != "old" {
					t.Errorf("the stored object reads %q %v (%v), want %q with its old metadata", got, md.Metadata, err, old)
				}
			})
		}
	}
	t.Run("OKRoom", func(t *testing.T) {
		if err := st.Put(ctx, key, bytes.NewReader(small), storage.Metadata{"v": "new"}); err != nil {
			t.Fatal(err)
		}
		if err := st.Create(ctx, "site/xlog/000000010000000000000002", bytes.NewReader(small), nil); err != nil {
			t.Fatal(err)
		}
	})
}

// limitInodes remounts the tmpfs at dir so that only free more inodes can
// be created; 0 lifts the limit.
func limitInodes(t *testing.T, dir string, free uint64) {
	t.Helper()
	n := uint64(1 << 20)
	if free > 0 {
		var s unix.Statfs_t
		if err := unix.Statfs(dir, &s); err != nil {
			t.Fatal(err)
		}
		n = s.Files - s.Ffree + free
	}
	pgtest.Remount(t, dir, "nr_inodes="+strconv.FormatUint(n, 10))
}
