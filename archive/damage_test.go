package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// faultStore is a Store whose reads of key fail with err: Stat and Open
// at once, or, with cut, Open's reader after half the object (a
// connection cut in the middle of a download).
type faultStore struct {
	storage.Store
	key string
	err error
	cut bool
}

func (s *faultStore) Stat(ctx context.Context, key string) (storage.Object, error) {
	if key == s.key && !s.cut {
		return storage.Object{}, fmt.Errorf("stat %s: %w", key, s.err)
	}
	return s.Store.Stat(ctx, key)
}

func (s *faultStore) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	if key != s.key {
		return s.Store.Open(ctx, key)
	}
	if !s.cut {
		return nil, storage.Object{}, fmt.Errorf("open %s: %w", key, s.err)
	}
	rc, o, err := s.Store.Open(ctx, key)
	if err != nil {
		return nil, o, err
	}
	return storetest.CutHalf(rc, o, key, s.err), o, nil
}

// TestIsDamage_CheckBackup: what CheckBackup finds wrong with what is
// stored is damage (IsDamage): a chunk missing or of another size, a
// control object tampered with or cut short at rest, another backup's
// control object, a chunk that does not decode (full). What the storage
// fails to answer is not: a HEAD or GET that fails past the retries (a
// 503, access denied, a timeout), a download cut in the middle.
// The incremental backup's check of its parent's chain and retention's
// and verify's checks tell the two apart by it.
func TestIsDamage_CheckBackup(t *testing.T) {
	ctx := context.Background()
	const name, start = "2024-03-04_10-00_0", "000000010000000000000001"
	setup := func(t *testing.T) (*Archive, *BackupInfo, []string) {
		a := localArchive(t, t.TempDir(), "s", retentionCodec(t))
		keys := putBackup(t, a, name, start, 2, 0)
		bs, err := a.ListBackups(ctx)
		if err != nil || len(bs) != 1 {
			t.Fatalf("listed %v, %v", bs, err)
		}
		return a, bs[0], keys
	}
	unavailable := errors.New("https response error StatusCode: 503, SlowDown")
	denied := fmt.Errorf("access denied to s3 bucket %q: %w", "b", storage.ErrPermanent)

	damage := []struct {
		name string
		full bool
		do   func(t *testing.T, a *Archive, chunk, control string)
	}{
		{"ChunkMissing", false, func(t *testing.T, a *Archive, chunk, _ string) {
			if err := a.Store.Delete(ctx, chunk); err != nil {
				t.Fatal(err)
			}
		}},
		{"ChunkShort", false, func(t *testing.T, a *Archive, chunk, _ string) {
			storetest.Rewrite(t, a.Store, chunk, func(d []byte, _ storage.Metadata) []byte { return d[:len(d)-1] })
		}},
		{"ChunkTampered", true, func(t *testing.T, a *Archive, chunk, _ string) { storetest.Tamper(t, a.Store, chunk) }},
		{"ControlTampered", false, func(t *testing.T, a *Archive, _, control string) { storetest.Tamper(t, a.Store, control) }},
		{"ControlTruncated", false, func(t *testing.T, a *Archive, _, control string) {
			storetest.Rewrite(t, a.Store, control, func(d []byte, _ storage.Metadata) []byte { return d[:len(d)/2] })
		}},
	}
	for _, c := range damage {
		t.Run(c.name, func(t *testing.T) {
			a, b, keys := setup(t)
			c.do(t, a, keys[0], b.Key)
			err := a.CheckBackup(ctx, b, c.full)
			if err == nil || !IsDamage(err) {
				t.Fatalf("CheckBackup: %v, want damage", err)
			}
		})
	}

	storageErrs := []struct {
		name    string
		control bool // the fault is on the control object, else a chunk
		err     error
		cut     bool
	}{
		{"ChunkUnavailable", false, unavailable, false},
		{"ChunkDenied", false, denied, false},
		{"ControlUnavailable", true, unavailable, false},
		{"ControlDenied", true, denied, false},
		{"ControlCut", true, io.ErrUnexpectedEOF, true},
		{"ControlTimeout", true, context.DeadlineExceeded, false},
	}
	for _, c := range storageErrs {
		t.Run(c.name, func(t *testing.T) {
			a, b, keys := setup(t)
			key := keys[0]
			if c.control {
				key = b.Key
			}
			a.Store = &faultStore{Store: a.Store, key: key, err: c.err, cut: c.cut}
			err := a.CheckBackup(ctx, b, false)
			if !errors.Is(err, c.err) || IsDamage(err) {
				t.Fatalf("CheckBackup: %v, want the storage's error, not damage", err)
			}
		})
	}
	t.Run("Sound", func(t *testing.T) {
		a, b, _ := setup(t)
		if err := a.CheckBackup(ctx, b, true); err != nil {
			t.Fatal(err)
		}
	})
}

// TestIsDamage_Sealed: checked without the private key, a chunk folder
// that holds fewer chunks than the backup's metadata counts is damage; a
// listing that fails is not.
func TestIsDamage_Sealed(t *testing.T) {
	ctx := context.Background()
	a := localArchive(t, t.TempDir(), "s", retentionCodec(t))
	keys := putBackup(t, a, "2024-03-04_10-00_0", "000000010000000000000001", 2, 0)
	bs, err := a.ListBackups(ctx)
	if err != nil || len(bs) != 1 {
		t.Fatalf("listed %v, %v", bs, err)
	}
	if err := a.Store.Delete(ctx, keys[0]); err != nil {
		t.Fatal(err)
	}
	if err := a.CheckBackupSealed(ctx, bs[0]); !IsDamage(err) {
		t.Errorf("a chunk missing: %v, want damage", err)
	}
	unavailable := errors.New("https response error StatusCode: 503, SlowDown")
	a.Store = listFails{Store: a.Store, err: unavailable}
	if err := a.CheckBackupSealed(ctx, bs[0]); !errors.Is(err, unavailable) || IsDamage(err) {
		t.Errorf("listing fails: %v, want the storage's error, not damage", err)
	}
}

type listFails struct {
	storage.Store
	err error
}

func (s listFails) List(context.Context, string, func(storage.Object) error) error { return s.err }
