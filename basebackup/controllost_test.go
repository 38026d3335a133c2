package basebackup

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// errLostResponse is what lostControlStore's Put returns once the
// control object is stored: the storage wrote it, and the answer never
// came (a connection reset after the PUT, a storage stopped then).
var errLostResponse = errors.New("connection reset by peer (the object was stored)")

// lostControlStore stores every object, but fails the Put of a backup's
// control object after storing it; with failDelete, deleting it fails
// too.
type lostControlStore struct {
	storage.Store
	failDelete bool
}

func isControlKey(key string) bool {
	return strings.Contains(key, "/"+archive.BasebackupDir+"/") && strings.HasSuffix(key, archive.ControlSuffix)
}

func (s *lostControlStore) Put(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	if err := s.Store.Put(ctx, key, r, md); err != nil || !isControlKey(key) {
		return err
	}
	return errLostResponse
}

func (s *lostControlStore) Delete(ctx context.Context, key string) error {
	if s.failDelete && isControlKey(key) {
		return errors.New("storage unavailable")
	}
	return s.Store.Delete(ctx, key)
}

// TestRun_ErrControlStoredUnseen: the storage stores a backup's control
// object and its answer is lost, so Run cannot tell whether the backup
// is listed. It must not delete the chunks of a backup that may be
// listed: it deletes the control object first, then the chunks, so that
// nothing of the failed backup is listed or left; where the control
// object cannot be deleted either, it keeps the chunks, so that the
// listed backup restores, and says so. In every mode that stores chunks
// and then a control object (BASE_BACKUP, local-tar).
func TestRun_ErrControlStoredUnseen(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[0]})
	pgtest.Pgbench(t, c, "-i", "-s", "1")
	for _, mode := range []struct {
		name string
		mode Mode
	}{{"BaseBackup", ModeStream}, {"LocalTar", ModeLocal}} {
		t.Run(mode.name+"/Deleted", func(t *testing.T) {
			ctx := testContext(t)
			a := localArchive(t)
			real := a.Store
			a.Store = &lostControlStore{Store: real}
			_, err := Run(ctx, Options{ConnString: c.ConnString("postgres"), Archive: a, Mode: mode.mode, PGData: c.DataDir,
				Fast: true, NoWait: true, ChunkSize: 1 << 20})
			if !errors.Is(err, errLostResponse) {
				t.Fatalf("Run = %v, want the control object's error", err)
			}
			noObjectsLeft(t, real, "a backup whose control object's store was not seen")
		})
		t.Run(mode.name+"/ErrStillListed", func(t *testing.T) {
			ctx := testContext(t)
			a := localArchive(t)
			real := a.Store
			a.Store = &lostControlStore{Store: real, failDelete: true}
			_, err := Run(ctx, Options{ConnString: c.ConnString("postgres"), Archive: a, Mode: mode.mode, PGData: c.DataDir,
				Fast: true, NoWait: true, ChunkSize: 1 << 20})
			if !errors.Is(err, errLostResponse) || !errors.Is(err, errStillListed) {
				t.Fatalf("Run = %v, want the control object's error, still listed", err)
			}
			a.Store = real
			bs, err := a.ListBackups(ctx)
			if err != nil || len(bs) != 1 {
				t.Fatalf("ListBackups = %v, %v, want the backup whose control object stayed", bs, err)
			}
			b := bs[0]
			for n := 1; n <= b.ChunkCount; n++ {
				key := a.Layout.ChunkKey(archive.ChunkFilename(b.Name, n))
				if _, err := real.Stat(ctx, key); err != nil {
					t.Errorf("chunk %d of the listed backup %s: %v", n, b.Name, err)
				}
			}
		})
	}
}

// markerStatFails fails every Stat of a delta backup's marker once a
// control object is stored: the storage is unreachable just then.
type markerStatFails struct {
	storage.Store
	stored atomic.Bool
}

func (s *markerStatFails) Put(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	err := s.Store.Put(ctx, key, r, md)
	if err == nil && isControlKey(key) {
		s.stored.Store(true)
	}
	return err
}

func (s *markerStatFails) Stat(ctx context.Context, key string) (storage.Object, error) {
	if s.stored.Load() && strings.HasSuffix(key, archive.DeltaRunningSuffix) {
		return storage.Object{}, errors.New("storage unavailable")
	}
	return s.Store.Stat(ctx, key)
}

// TestRunDelta_ErrControlStoredUnseen: a delta backup whose control
// object's store was not seen is not listed; one whose marker check
// fails once its control object is stored fails, and stays listed with
// its bundles: they are not deleted as a failed backup's are.
func TestRunDelta_ErrControlStoredUnseen(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[0]})
	pgtest.Pgbench(t, c, "-i", "-s", "1")
	t.Run("Deleted", func(t *testing.T) {
		ctx := testContext(t)
		a := encryptedArchive(t, compress.Zstd)
		real := a.Store
		a.Store = &lostControlStore{Store: real}
		if _, err := Run(ctx, deltaOptions(t, c, a)); !errors.Is(err, errLostResponse) {
			t.Fatalf("Run = %v, want the control object's error", err)
		}
		a.Store = real
		if bs, err := a.ListBackups(ctx); err != nil || len(bs) != 0 {
			t.Errorf("ListBackups = %v, %v, want none", bs, err)
		}
	})
	t.Run("ErrMarkerAfterStore", func(t *testing.T) {
		ctx := testContext(t)
		a := encryptedArchive(t, compress.Zstd)
		real := a.Store
		a.Store = &markerStatFails{Store: real}
		_, err := Run(ctx, deltaOptions(t, c, a))
		if err == nil || !strings.Contains(err.Error(), "is stored, but") {
			t.Fatalf("Run = %v, want the stored backup's marker check error", err)
		}
		a.Store = real
		bs, err := a.ListBackups(ctx)
		if err != nil || len(bs) != 1 {
			t.Fatalf("ListBackups = %v, %v, want the stored backup", bs, err)
		}
		b := bs[0]
		if b.ChunkCount == 0 {
			t.Fatalf("backup %s has no bundles", b.Name)
		}
		for n := 1; n <= b.ChunkCount; n++ {
			key := a.Layout.DeltaChunkKey(archive.ChunkFilename(b.Name, n))
			if _, err := real.Stat(ctx, key); err != nil {
				t.Errorf("bundle %d of the listed backup %s: %v", n, b.Name, err)
			}
		}
	})
}
