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
}

// readOnly is a store that refuses writes.
type readOnly struct{ *memStore }

func (readOnly) Create(context.Context, string, io.Reader, storage.Metadata) error {
	return errors.New("access denied")
}
