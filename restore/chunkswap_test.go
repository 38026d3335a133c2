package restore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/swaptest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRun_ErrChunkSwapped: someone who can write the bucket but holds no
// key copies a chunk of an older backup over the chunk of a newer one that
// has the same stored size and original-file-size (table files whose pages
// hold incompressible data, rewritten in place). The manifest's sizes all
// match; the table's file would be the older backup's, before the newer
// backup's checkpoint, where WAL replay does not repair it. Restore must
// refuse the backup, naming the chunk.
func TestRun_ErrChunkSwapped(t *testing.T) {
	s := swaptest.New(t)
	dir := filepath.Join(pgtest.TempDir(t), "data")
	_, err := Run(context.Background(), Options{Archive: s.Archive, TargetDir: dir, Backup: s.New.Name,
		RestoreCommand: "cp " + s.WALDir + "/%f %p", Logger: zerolog.Nop()})
	if err == nil {
		c := pgtest.StartDataDir(t, swaptest.Major, dir, nil)
		c.WaitRecoveryDone(t, 3*time.Minute)
		t.Fatalf("restore of %s with chunks %v of %s swapped in succeeded; r's rows: %s, backed up: %s",
			s.New.Name, s.Swapped, s.Old.Name, c.QueryString(t, swaptest.RQuery), s.WantR)
	}
	named := slices.ContainsFunc(s.Swapped, func(k string) bool { return strings.Contains(err.Error(), "chunk "+k+": ") })
	if !errors.Is(err, archive.ErrWrongObject) || !named {
		t.Errorf("restore with %v swapped: %v, want ErrWrongObject naming the chunk", s.Swapped, err)
	}
	t.Logf("refused: %v", err)
}

// TestRun_ErrChunkMovedListed: a chunk without a recorded HMAC (PGHoard's
// backups, hoard's unencrypted ones) copied from an older backup over a
// newer one's, of the same sizes but holding another file, is refused by
// the chunk's file list in the control object, naming the chunk and the
// member; before, the older file was restored in place of the newer one.
func TestRun_ErrChunkMovedListed(t *testing.T) {
	// Uncompressed: tars of the same size store the same size.
	a := archivetest.New(t, storage.NewMem(), &archive.Codec{})
	body := strings.Repeat("x", 8192)
	old := hostile.Put(t, a, hostile.Backup{Name: "2026-01-02_01-00_0", Chunks: [][]hostile.Member{{{Name: "pgdata/base/1/3333", Body: body}}}})
	b := hostile.Put(t, a, hostile.Backup{Name: "2026-01-02_02-00_0", Chunks: [][]hostile.Member{{{Name: "pgdata/base/1/2222", Body: body}}}})
	archivetest.CopyObject(t, a.Store, old.ChunkKeys[1], b.ChunkKeys[1])
	e := hostile.NewEnv(t)
	_, err := Run(context.Background(), Options{Archive: a, TargetDir: e.Target(), Backup: b.Name,
		RestoreCommand: "hoard wal-fetch %f %p", Logger: zerolog.Nop()})
	if !errors.Is(err, archive.ErrWrongObject) || !strings.Contains(err.Error(), "chunk "+b.ChunkKeys[1]+": ") ||
		!strings.Contains(err.Error(), `"pgdata/base/1/3333"`) {
		t.Fatalf("restore with %s moved over %s: %v, want ErrWrongObject naming both", old.ChunkKeys[1], b.ChunkKeys[1], err)
	}
	if _, err := os.Lstat(filepath.Join(e.Target(), "base/1/3333")); err == nil {
		t.Error("the moved chunk's member was written")
	}
}
