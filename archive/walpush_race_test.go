package archive

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
)

// Ten wal-push of one segment name at once, against every real storage
// server: with identical files all succeed and one object is stored; with
// different files exactly the pushers of the stored bytes succeed and
// every other one gets ErrWALConflict, the stored object untouched.
//
// Swift checks If-None-Match when a PUT starts, not atomically with the
// write (storage.Swift.Create, docs/security.md: run one archiver per
// site on Swift), so there, as in storetest's RacyCreate, the test checks
// what Swift still guarantees: at least one pusher stored its file, the
// object is whole and one successful pusher's, and no pusher of identical
// bytes fails; how many pushers of other bytes also succeeded is logged.
func TestArchive_PushWAL_ConcurrentWriters(t *testing.T) {
	for _, srv := range storetest.Servers {
		t.Run(srv.Name, func(t *testing.T) {
			c := srv.Config(t)
			racy := c.Type == storage.TypeSwift
			for _, mode := range []string{"Identical", "Different"} {
				t.Run(mode, func(t *testing.T) {
					a := &Archive{
						Store:  storetest.Open(t, c),
						Codec:  &Codec{Compression: compress.Zstd},
						Layout: Layout{Prefix: "site"},
						Site:   "site",
					}
					pushConcurrently(t, a, mode == "Different", racy)
				})
			}
		})
	}
}

// pushConcurrently pushes ten files of one segment name at once. racy
// says the store's create-if-absent is not atomic (Swift): then pushers
// of other bytes than the stored ones may succeed too, and are counted
// and logged instead of failing the test.
func pushConcurrently(t *testing.T, a *Archive, different, racy bool) {
	ctx := context.Background()
	const writers = 10
	name := "000000010000000000000003"
	files := make([][]byte, writers)
	paths := make([]string, writers)
	for i := range writers {
		seed := int64(3)
		if different {
			seed = int64(100 + i)
		}
		// 16 MiB: over the test part sizes, so S3, GCS and Azure upload
		// in parts and check the precondition when the upload completes.
		files[i] = waltest.Segment(t, name, 16<<20, seed)
		paths[i] = writeWALFile(t, t.TempDir(), name, files[i])
	}
	// An archive in use (Swift creates its container on the first upload).
	if err := a.Store.Put(ctx, "site/basebackup/in-use", bytes.NewReader(nil), nil); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, writers)
	results := make([]PushResult, writers)
	testio.Race(writers, func(i int) {
		results[i], errs[i] = a.PushWAL(ctx, paths[i], PushOptions{})
	})

	stored, _ := storedPlain(t, a, a.Layout.WALKey(name))
	uploaded, storedBySuccess, overlapped := 0, false, 0
	for i := range writers {
		same := bytes.Equal(files[i], stored)
		switch {
		case same && errs[i] != nil:
			t.Errorf("writer %d pushed the stored bytes but failed: %v", i, errs[i])
		case !same && racy && errs[i] == nil:
			overlapped++
		case !same && !errors.Is(errs[i], ErrWALConflict):
			t.Errorf("writer %d pushed other bytes than the stored ones: err = %v, want ErrWALConflict", i, errs[i])
		}
		if same && errs[i] == nil {
			storedBySuccess = true
		}
		if results[i].Uploaded {
			uploaded++
		}
	}
	if !storedBySuccess {
		t.Errorf("the stored object is no successful writer's file")
	}
	switch {
	case racy && uploaded == 0:
		t.Errorf("no writer reports having uploaded")
	case racy && uploaded > 1:
		t.Logf("%d writers report having uploaded, %d of other bytes than the stored ones (Swift's If-None-Match is not atomic)", uploaded, overlapped)
	case !racy && uploaded != 1:
		t.Errorf("%d writers report having uploaded, want exactly 1", uploaded)
	}
	if !different {
		for i, err := range errs {
			if err != nil {
				t.Errorf("writer %d of identical files: %v", i, err)
			}
		}
	}
	var keys []string
	if err := a.Store.List(ctx, "site/xlog/", func(o storage.Object) error { keys = append(keys, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{a.Layout.WALKey(name)}; fmt.Sprint(keys) != fmt.Sprint(want) {
		t.Errorf("store holds %v, want only %v", keys, want)
	}
}
