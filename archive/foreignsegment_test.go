package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// firstPageFaultStore fails the reads of key: each Stat, Open and
// OpenRange with err when deny is set; otherwise the first cuts opens
// (Open or OpenRange) read nothing and fail with a transient
// storage.ReadError, as a connection the network cuts does.
type firstPageFaultStore struct {
	storage.Store
	key  string
	deny error

	mu   sync.Mutex
	cuts int
}

func (s *firstPageFaultStore) Stat(ctx context.Context, key string) (storage.Object, error) {
	if key == s.key && s.deny != nil {
		return storage.Object{}, fmt.Errorf("stat %s: %w", key, s.deny)
	}
	return s.Store.Stat(ctx, key)
}

func (s *firstPageFaultStore) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	if key == s.key && s.deny != nil {
		return nil, storage.Object{}, fmt.Errorf("open %s: %w", key, s.deny)
	}
	rc, o, err := s.Store.Open(ctx, key)
	if err == nil {
		rc = s.cut(key, rc)
	}
	return rc, o, err
}

func (s *firstPageFaultStore) OpenRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if key == s.key && s.deny != nil {
		return nil, fmt.Errorf("open %s: %w", key, s.deny)
	}
	rc, err := s.Store.OpenRange(ctx, key, offset, length)
	if err == nil {
		rc = s.cut(key, rc)
	}
	return rc, err
}

func (s *firstPageFaultStore) cut(key string, rc io.ReadCloser) io.ReadCloser {
	s.mu.Lock()
	defer s.mu.Unlock()
	if key != s.key || s.cuts == 0 {
		return rc
	}
	s.cuts--
	return struct {
		io.Reader
		io.Closer
	}{readErr{&storage.ReadError{Key: key, Where: "test", Err: errReadReset}}, rc}
}

type readErr struct{ err error }

func (r readErr) Read([]byte) (int, error) { return 0, r.err }

// TestArchive_ForeignSegment_ReadFails: a first page that cannot be read
// is no answer. A download cut in the middle is tried again, as
// wal-fetch's are, and its answer counts; a read that still fails (the
// storage refuses it, the object is truncated or not WAL) is an error
// naming the object, not "the streamed system's", so that the daemon's
// hole check says it could not decide instead of guessing. A site whose
// daemon holds only the public key cannot read any first page: that is
// its configuration, not a failure, and every segment may be the
// system's, as before.
func TestArchive_ForeignSegment_ReadFails(t *testing.T) {
	old := fetchBackoff
	fetchBackoff = time.Millisecond
	t.Cleanup(func() { fetchBackoff = old })
	const sysOld, sysNew = 7000000000000000001, 7000000000000000002
	const seg = "000000010000000000000004"
	testio.WithAndWithoutKeys(t, func(t *testing.T, keys bool) {
		ctx := context.Background()
		setup := func(t *testing.T) (*Archive, *firstPageFaultStore) {
			a := walTestArchive(t, keys)
			key := pushSegmentOf(t, a, seg, sysOld)
			fs := &firstPageFaultStore{Store: a.Store, key: key}
			a.Store = fs
			return a, fs
		}
		t.Run("OKCutOnce", func(t *testing.T) {
			a, fs := setup(t)
			fs.cuts = 2 // the ranged read and the whole object's
			if got, err := a.ForeignSegment(ctx, seg, sysNew); err != nil || !got {
				t.Errorf("ForeignSegment after a cut download = %v, %v; want true (tried again)", got, err)
			}
		})
		t.Run("ErrDenied", func(t *testing.T) {
			a, fs := setup(t)
			fs.deny = fmt.Errorf("access denied: %w", storage.ErrPermanent)
			got, err := a.ForeignSegment(ctx, seg, sysNew)
			if err == nil || !strings.Contains(err.Error(), fs.key) || !strings.Contains(err.Error(), "access denied") {
				t.Errorf("ForeignSegment with reads refused = %v, %v; want an error naming %s and the storage's", got, err, fs.key)
			}
		})
		t.Run("ErrCutAlways", func(t *testing.T) {
			a, fs := setup(t)
			fs.cuts = 1000
			if got, err := a.ForeignSegment(ctx, seg, sysNew); err == nil || !errors.Is(err, errReadReset) {
				t.Errorf("ForeignSegment with every download cut = %v, %v; want the read's error", got, err)
			}
		})
		t.Run("ErrTruncated", func(t *testing.T) {
			a, fs := setup(t)
			b, o := storetest.Read(t, a.Store, fs.key)
			if err := fs.Store.Put(ctx, fs.key, strings.NewReader(string(b[:20])), o.Metadata); err != nil {
				t.Fatal(err)
			}
			if got, err := a.ForeignSegment(ctx, seg, sysNew); err == nil {
				t.Errorf("ForeignSegment of a truncated object = %v, nil; want an error", got)
			}
		})
		t.Run("ErrNotWAL", func(t *testing.T) {
			a, _ := setup(t)
			const name = "00000001000000000000000B"
			if _, err := a.Codec.Put(ctx, a.Store, a.Layout.WALKey(name), strings.NewReader("not wal"), -1, nil); err != nil {
				t.Fatal(err)
			}
			if got, err := a.ForeignSegment(ctx, name, sysNew); err == nil {
				t.Errorf("ForeignSegment of an object that is not WAL = %v, nil; want an error", got)
			}
		})
		if keys {
			t.Run("OKPublicKeyOnly", func(t *testing.T) {
				a, _ := setup(t)
				a.Codec = &Codec{Compression: a.Codec.Compression, Host: "test", KeyID: a.Codec.KeyID, PublicKey: a.Codec.PublicKey, RequireEncryption: true}
				if got, err := a.ForeignSegment(ctx, seg, sysNew); err != nil || got {
					t.Errorf("ForeignSegment without a private key = %v, %v; want false, nil", got, err)
				}
			})
		}
	})
}
