package restore

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRun_RestorePointFarNamedBackup: with --basebackup, a restore point
// name made twice more than 64 segments before the newest WAL is refused
// as made more than once, and a name recovery from the backup never
// replays is refused (PostgreSQL would replay the whole archive and stop
// with FATAL). Before, the newest-first scan read only the newest 64
// segments, found no point, and both restores went ahead: the first to
// stop at the older point silently, the second to fail at the end of
// recovery, after the data directory was written.
func TestRun_RestorePointFarNamedBackup(t *testing.T) {
	if testing.Short() {
		t.Skip("real cluster")
	}
	const major = 15
	ctx := context.Background()
	src, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: major, WALSegmentSizeMB: 1})
	a := archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: "zstd"})
	src.Exec(t, "create table t (id int primary key)")
	b := takeBackup(ctx, t, src, a, basebackup.ModeStream, false)
	first := src.QueryString(t, "select pg_create_restore_point('p')::text")
	src.Exec(t, "select pg_switch_wal()")
	src.Exec(t, "insert into t values (1)")
	newest := src.QueryString(t, "select pg_create_restore_point('p')::text")
	for i := range defaultScanSegments + 6 {
		src.Exec(t, "insert into t values ($1)", i+2)
		src.Exec(t, "select pg_switch_wal()")
	}
	archivetest.StoreArchivedWAL(t, src, walDir, a)
	restoreCmd := "cp " + decodeWAL(t, a) + "/%f %p"

	dir := filepath.Join(pgtest.TempDir(t), "data")
	_, err := Run(ctx, Options{Archive: a, Backup: b.Name, TargetDir: dir, Target: Target{Name: "p"}, RestoreCommand: restoreCmd, Logger: zerolog.Nop()})
	if !errors.Is(err, ErrBadTarget) || !strings.Contains(err.Error(), "made more than once") ||
		!strings.Contains(err.Error(), first) || !strings.Contains(err.Error(), newest) {
		t.Errorf("restore --basebackup %s to p, made at %s and %s, %d segments before the newest: err = %v; want it refused naming both",
			b.Name, first, newest, defaultScanSegments+6, err)
	}
	dir = filepath.Join(pgtest.TempDir(t), "data")
	_, err = Run(ctx, Options{Archive: a, Backup: b.Name, TargetDir: dir, Target: Target{Name: "never-made"}, RestoreCommand: restoreCmd, Logger: zerolog.Nop()})
	if !errors.Is(err, ErrBadTarget) || !strings.Contains(err.Error(), `no restore point "never-made"`) {
		t.Errorf("restore --basebackup %s to a point never made: err = %v; want it refused", b.Name, err)
	}
}
