package archive

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestFetchWAL_SpoolFillsDisk: pg_wal's file system is full, partly with
// segments the prefetch worker spooled ahead, but not the one recovery
// asks for (the worker's download of it failed). wal-fetch must not stop
// recovery for want of the room its own head start takes: it empties the
// spool and downloads the segment again.
func TestFetchWAL_SpoolFillsDisk(t *testing.T) {
	ctx := context.Background()
	pgwal := pgtest.MountTmpfs(t, 4)
	a := walTestArchive(t, false)
	segs := pushSegments(t, a, 1, 8)
	dest := filepath.Join(pgwal, "RECOVERYXLOG")
	o := FetchOptions{Spool: SpoolDir(dest)}
	if err := a.FetchWAL(ctx, segName(1), dest, o); err != nil {
		t.Fatal(err)
	}
	if _, err := a.PrefetchWAL(ctx, o.Spool, PrefetchOptions{Count: 2}); err != nil {
		t.Fatal(err)
	}
	// The worker's copy of segment 2 failed; segment 3's is spooled.
	if err := os.Remove(filepath.Join(o.Spool, segName(2))); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(o.Spool, segName(3))); err != nil {
		t.Fatal(err)
	}
	pgtest.FillDisk(t, filepath.Join(pgwal, "filler"), 512<<10)
	if err := a.FetchWAL(ctx, segName(2), dest, o); err != nil {
		t.Fatalf("fetch %s with the spool filling the disk: %v", segName(2), err)
	}
	checkFile(t, dest, segs[segName(2)])
}
