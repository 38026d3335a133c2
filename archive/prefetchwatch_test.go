package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// stallStore holds every Open of a WAL segment until its context ends,
// saying on hit that one is held: storage that stalls.
type stallStore struct {
	storage.Store
	hit chan string
}

func (s *stallStore) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	if !strings.Contains(key, "/xlog/") {
		return s.Store.Open(ctx, key)
	}
	select {
	case s.hit <- key:
	default:
	}
	<-ctx.Done()
	return nil, storage.Object{}, ctx.Err()
}

// TestArchive_PrefetchWAL_Stopped: a prefetch worker waiting on storage
// that stalls stops, with ErrPrefetchStopped and no temporary file left,
// once the server it fetches for stops (its postmaster.pid goes) or its
// spool is removed with the data directory; before, it waited as long as
// the storage did, in a directory nobody would read again.
func TestArchive_PrefetchWAL_Stopped(t *testing.T) {
	for _, tc := range []struct {
		name    string
		server  bool
		stopped func(dataDir string) error
	}{
		{"ServerStopped", true, func(d string) error { return os.Remove(filepath.Join(d, "postmaster.pid")) }},
		{"DataDirRemoved", false, os.RemoveAll},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			a := walTestArchive(t, false)
			pushSegments(t, a, 1, 4)
			dataDir := t.TempDir()
			dest := filepath.Join(dataDir, "pg_wal", "RECOVERYXLOG")
			if err := os.MkdirAll(filepath.Dir(dest), 0o700); err != nil {
				t.Fatal(err)
			}
			if tc.server {
				pid := fmt.Sprintf("%d\n%s\n1700000000\n5432\n", os.Getpid(), dataDir)
				if err := os.WriteFile(filepath.Join(dataDir, "postmaster.pid"), []byte(pid), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			o := FetchOptions{Spool: SpoolDir(dest)}
			if err := a.FetchWAL(ctx, segName(1), dest, o); err != nil {
				t.Fatal(err)
			}
			stall := &stallStore{Store: a.Store, hit: make(chan string, 1)}
			a.Store = stall
			done := make(chan error, 1)
			go func() {
				_, err := a.PrefetchWAL(ctx, o.Spool, PrefetchOptions{Count: 2, DataDir: dataDir, Watch: 10 * time.Millisecond})
				done <- err
			}()
			select {
			case <-stall.hit:
			case err := <-done:
				t.Fatalf("the worker returned (%v) before asking the storage", err)
			}
			// Still waiting while the server runs and the spool is there.
			select {
			case err := <-done:
				t.Fatalf("the worker returned (%v) while its server ran", err)
			case <-time.After(100 * time.Millisecond):
			}
			if err := tc.stopped(dataDir); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if !errors.Is(err, ErrPrefetchStopped) {
					t.Fatalf("worker: %v, want ErrPrefetchStopped", err)
				}
			case <-time.After(time.Minute):
				t.Fatal("the worker went on waiting a minute after its server stopped or its spool went")
			}
			if !tc.server {
				return
			}
			for _, n := range testio.DirNames(t, o.Spool) {
				if strings.HasPrefix(n, spoolTmpPrefix) {
					t.Errorf("the stopped worker left %s in the spool", n)
				}
			}
		})
	}
}
