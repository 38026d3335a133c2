package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/storage"
)

// failingChunk is a Store whose reads of key fail with err: Stat and
// Open at once, or, with cut, Open's reader after half the object (a
// download cut in the middle, as a network store reports it).
type failingChunk struct {
	storage.Store
	key string
	err error
	cut bool
}

func (s failingChunk) Stat(ctx context.Context, key string) (storage.Object, error) {
	if key == s.key && !s.cut {
		return storage.Object{}, fmt.Errorf("stat %s: %w", key, s.err)
	}
	return s.Store.Stat(ctx, key)
}

func (s failingChunk) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	rc, o, err := s.Store.Open(ctx, key)
	if key != s.key || err != nil || !s.cut {
		return rc, o, err
	}
	return &halfReader{rc: rc, left: o.Size / 2, err: &storage.ReadError{Key: key, Where: "s3 bucket \"b\"", Err: s.err}}, o, nil
}

// halfReader reads left bytes of rc, then fails with err.
type halfReader struct {
	rc   io.ReadCloser
	left int64
	err  error
}

func (r *halfReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, r.err
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.rc.Read(p)
	r.left -= int64(n)
	return n, err
}

func (r *halfReader) Close() error { return r.rc.Close() }

// TestRun_ErrChunkUnchecked: a chunk the storage fails to answer for (a
// HEAD answered 503 past the retries, access denied; with --full, its
// download cut in the middle) ends verify with the storage's error,
// naming the chunk and saying that it could not be checked: no report
// calls the backup broken, since nothing was found wrong with it. A
// chunk the storage answers "not found" for is still reported missing.
// Before, every such failure made the backup broken, the report naming
// a 503 as the damage.
func TestRun_ErrChunkUnchecked(t *testing.T) {
	unavailable := errors.New("https response error StatusCode: 503, SlowDown")
	denied := fmt.Errorf("access denied to s3 bucket %q: %w", "b", storage.ErrPermanent)
	for _, c := range []struct {
		name string
		err  error
		cut  bool
		full bool
	}{
		{"Unavailable", unavailable, false, false},
		{"Denied", denied, false, false},
		{"UnavailableFull", unavailable, false, true},
		{"CutFull", io.ErrUnexpectedEOF, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := soundArchive(t)
			key := a.Layout.ChunkKey(archive.ChunkFilename("b1", 1))
			a.Store = failingChunk{Store: a.Store, key: key, err: c.err, cut: c.cut}
			rep, err := Run(context.Background(), Options{Archive: a, Full: c.full, Logger: zerolog.Nop()})
			if err == nil {
				t.Fatalf("verify: no error; report OK=%v, problems:\n%s", rep.OK(), problems(rep))
			}
			if !errors.Is(err, c.err) || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "could not be checked") {
				t.Fatalf("verify: %v, want the storage's error naming %s, saying it could not be checked", err, key)
			}
		})
	}
}
