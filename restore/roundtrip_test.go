package restore

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRun_RoundTrip takes a basebackup of a real cluster (holding a
// symbolic link in its data directory) with hoard's basebackup, archives
// its WAL with archive_command = cp, stores that WAL, restores into a new
// directory, starts PostgreSQL on it and compares
// rows. PostgreSQL itself is the oracle. The restored cluster reads WAL
// from the cp archive: hoard wal-fetch is the end-to-end tests' business.
func TestRun_RoundTrip(t *testing.T) {
	const major = 15
	src, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: major})
	src.Exec(t, "create table t (id int primary key)")
	src.Exec(t, "insert into t select generate_series(1, 1000)")
	// A link in the data directory (a configuration file kept elsewhere):
	// BASE_BACKUP sends links only from pg_tblspc (sendDir in
	// basebackup.c skips others as special files), so the backup holds
	// none and restores, whose extraction refuses links.
	if err := os.Symlink("/etc/hostname", filepath.Join(src.DataDir, "conf_link")); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a := archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: "zstd"})
	b, err := basebackup.Run(ctx, basebackup.Options{
		ConnString: src.ConnString("postgres"), Archive: a, Fast: true, NoWait: true, ChunkSize: 1 << 20, Logger: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	src.Exec(t, "insert into t select generate_series(1001, 1500)")
	archivetest.StoreArchivedWAL(t, src, walDir, a)

	dir := filepath.Join(pgtest.TempDir(t), "data")
	res, err := Run(ctx, Options{Archive: a, TargetDir: dir, RestoreCommand: "cp " + walDir + "/%f %p", Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Backup.Name != b.Name || res.PGMajor != major {
		t.Errorf("restored %s (PG %d), want %s (PG %d)", res.Backup.Name, res.PGMajor, b.Name, major)
	}
	// Every file was compared with the server's backup_manifest.
	if res.PGManifestFiles < 900 {
		t.Errorf("restore compared %d files with backup_manifest, want every file of the cluster (900 or more)", res.PGManifestFiles)
	}
	if _, err := os.Lstat(filepath.Join(dir, "conf_link")); err == nil {
		t.Error("the data directory's link was restored")
	}
	c := pgtest.StartDataDir(t, major, dir, nil)
	c.WaitRecoveryDone(t, 3*time.Minute)
	if got := c.QueryString(t, "select count(*)::text from t"); got != "1500" {
		t.Errorf("restored t has %s rows, want 1500", got)
	}
}
