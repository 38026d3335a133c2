package verify

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/restore"
	"github.com/hoardbackup/hoard/storage"
)

// TestRestoreTest_ErrScratchTooSmall: a test restore (hoard verify
// --restore, the daemon's scheduled ones) whose scratch directory's file
// system cannot hold the backup fails before it writes anything, so it
// never fills that disk, which may be the one PostgreSQL or the spool
// lives on; the scratch directory is left empty.
func TestRestoreTest_ErrScratchTooSmall(t *testing.T) {
	scratch := pgtest.MountTmpfs(t, 16)
	binDir := pgtest.BinDir(t, pgtest.DebianMajor, true)
	a := archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: "zstd"})
	b := hostile.Benign()
	b.Chunks = [][]hostile.Member{{{Name: "pgdata/base/5/16401", Body: strings.Repeat("x", 24<<20)}}}
	stored := hostile.Put(t, a, b)
	_, err := RestoreTest(context.Background(), RestoreTestOptions{
		Archive: a, Backup: stored.Name, PGBinDir: binDir, ScratchDir: scratch,
		RestoreCommand: "false", RunAsUser: pgtest.ServerUser, Logger: zerolog.Nop(),
	})
	if !errors.Is(err, restore.ErrNoSpace) || !errors.Is(err, ErrRestoreTest) {
		t.Fatalf("RestoreTest = %v, want ErrNoSpace", err)
	}
	if files := pgtest.Files(t, scratch); len(files) != 0 {
		t.Errorf("the scratch directory holds %v", files)
	}
}
