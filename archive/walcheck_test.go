package archive

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestCheckWAL_SpoolFull: the spool's file system fills up while CheckWAL
// keeps segments there (the room it was given was measured before the
// restore wrote its files). A segment that finds no room is a local
// failure, not damage: it is checked without being kept, and CheckWAL
// succeeds, keeping what fitted.
func TestCheckWAL_SpoolFull(t *testing.T) {
	ctx := context.Background()
	pgwal := pgtest.MountTmpfs(t, 4)
	a := walTestArchive(t, false)
	pushSegments(t, a, 1, 4)
	var files []WALFile
	for no := uint64(1); no <= 4; no++ {
		files = append(files, WALFile{Name: segName(no), Key: a.Layout.WALKey(segName(no)), Archive: a})
	}
	spool := filepath.Join(pgwal, SpoolDirName)
	// Room for about one segment left: the others fill it.
	pgtest.FillDisk(t, filepath.Join(pgwal, "filler"), testSegSize+testSegSize/2)
	kept, err := a.CheckWAL(ctx, files, CheckWALOptions{Spool: spool, Room: len(files), Parallel: 1})
	if err != nil {
		t.Fatalf("check with the spool's file system full: %v", err)
	}
	if len(kept) == 0 || len(kept) == len(files) {
		t.Errorf("kept %v, want some but not all of the %d segments", kept, len(files))
	}
	for _, name := range kept {
		if _, err := os.Stat(filepath.Join(spool, name)); err != nil {
			t.Errorf("segment %s kept, but: %v", name, err)
		}
	}
}
