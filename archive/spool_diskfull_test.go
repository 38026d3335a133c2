package archive

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestFetchWAL_SpoolFillsDisk: pg_wal's file system is full, partly with
// segments the prefetch worker spooled ahead, but not the one recovery
// asks for (the worker's download of it failed). wal-fetch must not stop
// recovery for want of the room its own head start takes: it empties the
// spool and downloads the segment again.
func TestFetchWAL_SpoolFillsDisk(t *testing.T) {
	ctx := context.Background()
	// Room for the worker to spool two segments (TestArchive_PrefetchWAL_FreeSpace).
	pgwal := pgtest.MountTmpfs(t, 8)
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

// TestArchive_PrefetchWAL_FreeSpace: the prefetch worker spools into pg_wal's
// file system, which often holds the data directory too. Filling it would
// fail what recovery itself writes there (the startup process extending a
// relation: "could not extend file", and recovery stops), for segments that
// are only a head start. So the worker spools at most as much as it leaves
// free: half of what is free when its spool is empty, and nothing where
// that is less than a segment, and it ends without an error (recovery
// goes on with downloads on demand).
func TestArchive_PrefetchWAL_FreeSpace(t *testing.T) {
	for _, tc := range []struct {
		name    string
		leave   int64 // free bytes of the file system when the worker starts
		fetched int   // segments it spools: half of leave, in whole segments
	}{
		{"Half", 6 * testSegSize, 2}, // 6 MiB less the spool's identity file
		{"None", testSegSize + testSegSize/2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			pgwal := pgtest.MountTmpfs(t, 16)
			a := walTestArchive(t, false)
			segs := pushSegments(t, a, 1, 12)
			dest := filepath.Join(pgwal, "RECOVERYXLOG")
			o := FetchOptions{Spool: SpoolDir(dest)}
			if err := a.FetchWAL(ctx, segName(1), dest, o); err != nil {
				t.Fatal(err)
			}
			pgtest.FillDisk(t, filepath.Join(pgwal, "filler"), tc.leave)
			res, err := a.PrefetchWAL(ctx, o.Spool, PrefetchOptions{Count: 8})
			if err != nil {
				t.Fatalf("PrefetchWAL with %d bytes free = %v, want no error: spooling stops before the disk is full", tc.leave, err)
			}
			if len(res.Fetched) != tc.fetched || !res.NoRoom {
				t.Errorf("PrefetchWAL with %d bytes free = %+v, want %d segments fetched and NoRoom", tc.leave, res, tc.fetched)
			}
			var spooled int64
			for _, name := range res.Fetched {
				fi, err := os.Stat(filepath.Join(o.Spool, name))
				if err != nil {
					t.Fatal(err)
				}
				spooled += fi.Size()
			}
			var st unix.Statfs_t
			if err := unix.Statfs(pgwal, &st); err != nil {
				t.Fatal(err)
			}
			if free := int64(st.Bavail) * st.Bsize; free < spooled || free < testSegSize {
				t.Errorf("after prefetching, %d bytes are free and the spool holds %d: want at least as much free, and a segment's worth", free, spooled)
			}
			// What is spooled is served; the next segment is downloaded.
			for no := uint64(2); no <= uint64(tc.fetched)+2; no++ {
				if err := a.FetchWAL(ctx, segName(no), dest, o); err != nil {
					t.Fatal(err)
				}
				checkFile(t, dest, segs[segName(no)])
			}
		})
	}
}

// TestFetchWAL_SpoolFillsDiskHistory: as TestFetchWAL_SpoolFillsDisk, for
// a history file PostgreSQL asks for (a timeline switch, the scan for a
// newer timeline): the spooled segments are emptied for it too, or
// recovery stops on ENOSPC whose error says they were removed.
func TestFetchWAL_SpoolFillsDiskHistory(t *testing.T) {
	ctx := context.Background()
	pgwal := pgtest.MountTmpfs(t, 8)
	a := walTestArchive(t, false)
	pushSegments(t, a, 1, 8)
	const history = "00000002.history"
	body := "1\t0/5000000\tno recovery target specified\n"
	if err := pushHistory(t, a, history, body, 0); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(pgwal, "RECOVERYXLOG")
	o := FetchOptions{Spool: SpoolDir(dest)}
	if err := a.FetchWAL(ctx, segName(1), dest, o); err != nil {
		t.Fatal(err)
	}
	if res, err := a.PrefetchWAL(ctx, o.Spool, PrefetchOptions{Count: 2}); err != nil || len(res.Fetched) == 0 {
		t.Fatalf("PrefetchWAL = %+v, %v; want segments spooled", res, err)
	}
	pgtest.FillDisk(t, filepath.Join(pgwal, "filler"), 0)
	hdest := filepath.Join(pgwal, "RECOVERYHISTORY")
	if err := a.FetchWAL(ctx, history, hdest, o); err != nil {
		t.Fatalf("fetch %s with the spool filling the disk: %v", history, err)
	}
	checkFile(t, hdest, []byte(body))
}
