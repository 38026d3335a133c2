package archive

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/storage"
)

// noDelete is a store that lets hoard write and read, not delete.
type noDelete struct{ *memStore }

func (noDelete) Delete(context.Context, string) error { return errors.New("access denied") }

func TestArchive_Probe(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		st := newMemStore()
		st.objs["db/xlog/000000010000000000000001"] = memObject{data: []byte("wal")}
		a := &Archive{Store: st, Layout: Layout{Prefix: "db"}}
		key, err := a.Probe(context.Background())
		if err != nil {
			t.Fatalf("Probe: %v", err)
		}
		if !strings.HasPrefix(key, "db/"+ProbeDir+"/") {
			t.Errorf("scratch key %s is not under db/%s", key, ProbeDir)
		}
		if len(st.objs) != 1 || string(st.objs["db/xlog/000000010000000000000001"].data) != "wal" {
			t.Errorf("the store holds %d objects after the probe, want only the WAL segment as it was", len(st.objs))
		}
	})
	t.Run("ErrNoDelete", func(t *testing.T) {
		st := noDelete{newMemStore()}
		a := &Archive{Store: st, Layout: Layout{Prefix: "db"}}
		key, err := a.Probe(context.Background())
		if !errors.Is(err, ErrProbeLeft) || !strings.Contains(err.Error(), "access denied") {
			t.Errorf("Probe of a store without delete = %v, want ErrProbeLeft with the store's error", err)
		}
		if _, err := st.Stat(context.Background(), key); err != nil {
			t.Errorf("the scratch object %s: %v", key, err)
		}
	})
	t.Run("ErrWrite", func(t *testing.T) {
		st := newMemStore()
		a := &Archive{Store: readOnly{st}, Layout: Layout{Prefix: "db"}}
		if _, err := a.Probe(context.Background()); err == nil || errors.Is(err, ErrProbeLeft) || !strings.Contains(err.Error(), "write db/hoard/check/") {
			t.Errorf("Probe of a read-only store = %v, want a write error", err)
		}
	})
	t.Run("Interrupted", func(t *testing.T) {
		// Interrupted (Ctrl-C, hoard check's storage timeout) while
		// reading the object back: it is deleted all the same.
		st := newMemStore()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		a := &Archive{Store: cancelOnOpen{st, cancel}, Layout: Layout{Prefix: "db"}}
		if _, err := a.Probe(ctx); err == nil {
			t.Error("Probe interrupted: no error")
		}
		if len(st.objs) != 0 {
			t.Errorf("the store holds %d objects after an interrupted probe, want none", len(st.objs))
		}
	})
	t.Run("ErrReplacedLarge", func(t *testing.T) {
		// Someone who can write the storage replaced the scratch
		// object with a large one between its write and its read
		// back: one byte past what was written tells, no more is read.
		st := newMemStore()
		big := &countingSource{r: &fillerReader{unit: []byte("x"), n: 256 << 20}}
		a := &Archive{Store: openReplaced{st, big}, Layout: Layout{Prefix: "db"}}
		_, err := a.Probe(context.Background())
		if err == nil || !strings.Contains(err.Error(), "read back") {
			t.Fatalf("Probe of a replaced object = %v, want a read back error", err)
		}
		if big.n > 1<<10 {
			t.Errorf("read %d bytes of the replaced object, want no more than one past the probe's", big.n)
		}
		if len(st.objs) != 0 {
			t.Errorf("the store holds %d objects after the probe, want none", len(st.objs))
		}
	})
	t.Run("ErrWriteAnswerLost", func(t *testing.T) {
		// The object was stored, but the answer was lost.
		st := newMemStore()
		a := &Archive{Store: createAnswerLost{st}, Layout: Layout{Prefix: "db"}}
		if _, err := a.Probe(context.Background()); err == nil {
			t.Error("Probe whose write answer was lost: no error")
		}
		if len(st.objs) != 0 {
			t.Errorf("the store holds %d objects after the probe, want none", len(st.objs))
		}
	})
}

// cancelOnOpen is a store interrupted (cancel) when an object is opened,
// and which, as a network store, does nothing under a cancelled context.
type cancelOnOpen struct {
	*memStore
	cancel func()
}

func (s cancelOnOpen) Open(ctx context.Context, _ string) (io.ReadCloser, storage.Object, error) {
	s.cancel()
	return nil, storage.Object{}, ctx.Err()
}

func (s cancelOnOpen) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.memStore.Delete(ctx, key)
}

// openReplaced is a store whose Open returns r, as another object stored
// under the key.
type openReplaced struct {
	*memStore
	r io.Reader
}

func (s openReplaced) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	return io.NopCloser(s.r), storage.Object{Key: key}, nil
}

// createAnswerLost is a store whose Create stores the object but fails, as a
// connection cut before the answer.
type createAnswerLost struct{ *memStore }

func (s createAnswerLost) Create(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	if err := s.memStore.Create(ctx, key, r, md); err != nil {
		return err
	}
	return errors.New("connection reset by peer")
}

// readOnly is a store that refuses writes.
type readOnly struct{ *memStore }

func (readOnly) Create(context.Context, string, io.Reader, storage.Metadata) error {
	return errors.New("access denied")
}
