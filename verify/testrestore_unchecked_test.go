package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRestoreTest_ErrStorageFailed: a test restore (hoard verify
// --restore, the daemon's) whose restore the storage fails (a chunk's GET
// answered 503 past the retries, access denied, its download cut in the
// middle; the control object's or a WAL segment's GET answered 503, a
// segment's download cut) says that the test could
// not be run because the storage failed, with the storage's error naming
// the object (RestoreTestResult.StorageFailed), and no more: not that the
// test failed (ErrRestoreTest), nor restore's advice to run it again with
// overwrite, which the scratch directory, removed, never needs. Before, it
// read as a failed test of a bad backup. A chunk that does not decode
// (tampered) still fails the test, as damage.
func TestRestoreTest_ErrStorageFailed(t *testing.T) {
	binDir := pgtest.BinDir(t, pgtest.DebianMajor, true)
	unavailable := errors.New("https response error StatusCode: 503, SlowDown")
	denied := fmt.Errorf("access denied to s3 bucket %q: %w", "b", storage.ErrPermanent)
	chunk := func(s hostile.Stored) string { return s.ChunkKeys[0] }
	control := func(s hostile.Stored) string { return s.ControlKey }
	// The backup's first WAL segment, which restore checks before the
	// cluster is consistent.
	walKey := func(hostile.Stored) string { return archive.Layout{Prefix: "site"}.WALKey(hostile.StartSegment) }
	for _, c := range []struct {
		name   string
		key    func(hostile.Stored) string
		err    error // nil: the object is tampered with instead
		cut    bool
		failed bool // the test fails (damage), rather than could not be run
	}{
		{"ChunkUnavailable", chunk, unavailable, false, false},
		{"ChunkDenied", chunk, denied, false, false},
		{"ChunkCut", chunk, io.ErrUnexpectedEOF, true, false},
		{"ControlUnavailable", control, unavailable, false, false},
		{"WALUnavailable", walKey, unavailable, false, false},
		{"WALCut", walKey, io.ErrUnexpectedEOF, true, false},
		{"ChunkTampered", chunk, nil, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: "zstd"})
			b := hostile.Benign()
			b.Chunks = [][]hostile.Member{{{Name: "pgdata/base/5/16401", Body: strings.Repeat("x", 64<<10)}}}
			stored := hostile.Put(t, a, b)
			key := c.key(stored)
			if c.err == nil {
				storetest.Tamper(t, a.Store, key)
			} else {
				a.Store = failingOpen{Store: a.Store, key: key, err: c.err, cut: c.cut}
			}
			scratch := pgtest.TempDir(t)
			res, err := RestoreTest(context.Background(), RestoreTestOptions{
				Archive: a, Backup: stored.Name, PGBinDir: binDir, ScratchDir: scratch,
				RestoreCommand: "false", RunAsUser: pgtest.ServerUser, Logger: zerolog.Nop(),
			})
			if err == nil || res == nil || res.OK {
				t.Fatalf("RestoreTest = %+v, %v; want an error", res, err)
			}
			if m, _ := filepath.Glob(filepath.Join(scratch, "hoard-restore-test-*")); len(m) != 0 {
				t.Errorf("scratch left: %v", m)
			}
			if res.Error != err.Error() {
				t.Errorf("result error %q, want %q", res.Error, err)
			}
			if c.failed {
				if !errors.Is(err, ErrRestoreTest) || res.StorageFailed || strings.Contains(err.Error(), "could not be run") {
					t.Fatalf("RestoreTest = %v (storage failed %v), want ErrRestoreTest for damage", err, res.StorageFailed)
				}
				return
			}
			if !errors.Is(err, c.err) || !strings.Contains(err.Error(), key) ||
				!strings.Contains(err.Error(), "could not be run: the storage failed") {
				t.Fatalf("RestoreTest = %v; want the storage's error naming %s, saying the test could not be run", err, key)
			}
			if errors.Is(err, ErrRestoreTest) || strings.Contains(err.Error(), "overwrite") || !res.StorageFailed {
				t.Fatalf("RestoreTest = %v (storage failed %v); want no failed test, no advice to overwrite", err, res.StorageFailed)
			}
		})
	}
}
