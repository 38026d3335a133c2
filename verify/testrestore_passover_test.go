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
	"github.com/hoardbackup/hoard/storage"
)

// TestRestoreTest_PassedOver: a test restore (hoard verify --restore, the
// daemon's) chooses as hoard restore does, so it passes over a newest
// backup that is refused as damaged before anything is written (here its
// manifest lists fewer chunks than its metadata counts) and restores the
// older one; but it still fails, its result and error naming the damaged
// backup and why, so that the pass-over never hides the damage.
func TestRestoreTest_PassedOver(t *testing.T) {
	binDir := pgtest.BinDir(t, pgtest.DebianMajor, true)
	a := archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: "zstd"})
	hostile.Put(t, a, hostile.Backup{Name: "2026-01-02_03-00_0"})
	newer := hostile.Put(t, a, hostile.Backup{Name: "2026-01-02_04-00_0",
		Chunks:   [][]hostile.Member{{{Name: "pgdata/base/1/2222", Body: strings.Repeat("x", 8192)}}},
		Manifest: func(m *archive.Manifest) { m.Chunks = m.Chunks[:len(m.Chunks)-1] }})
	res, err := RestoreTest(context.Background(), RestoreTestOptions{
		Archive: a, PGBinDir: binDir, ScratchDir: pgtest.TempDir(t),
		RestoreCommand: "false", RunAsUser: pgtest.ServerUser, Logger: zerolog.Nop(),
	})
	if !errors.Is(err, ErrRestoreTest) || !strings.Contains(err.Error(), newer.Name) || !strings.Contains(err.Error(), "passed over") {
		t.Fatalf("RestoreTest = %v, want ErrRestoreTest naming %s as passed over", err, newer.Name)
	}
	if res.OK || res.Backup != "2026-01-02_03-00_0" {
		t.Errorf("result OK %v, backup %q: want failed, the older backup restored", res.OK, res.Backup)
	}
	if len(res.PassedOver) != 1 || res.PassedOver[0].Backup != newer.Name ||
		!strings.Contains(res.PassedOver[0].Error, "lists 1 of the 2 chunks") {
		t.Errorf("PassedOver = %+v, want %s with its missing chunk", res.PassedOver, newer.Name)
	}
	if !strings.Contains(res.Error, newer.Name) {
		t.Errorf("result error %q does not name %s", res.Error, newer.Name)
	}
}
