package restore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRun_PGManifestLeftOut takes a BASE_BACKUP of a real PostgreSQL 15
// cluster whose data directory and tablespace hold files operators leave
// behind (postgresql.conf.old, pg_hba.conf~, a .tmp file in a database
// directory and in the tablespace, a log file in pg_log). The server
// sends them and its backup_manifest lists them (basebackup.c's
// excludeFiles does not name them); hoard's backup leaves them out
// (archive.LeftOut), so the restore must not count them missing: it
// succeeds, restores none of them, and the cluster starts with its rows.
func TestRun_PGManifestLeftOut(t *testing.T) {
	const major = 15
	src, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: major})
	spcDir := pgtest.TempDir(t)
	src.Exec(t, "create tablespace extra location '"+spcDir+"'")
	src.Exec(t, "create table t (id int primary key) tablespace extra")
	src.Exec(t, "insert into t select generate_series(1, 1000)")
	dbOID := src.QueryString(t, "select oid::text from pg_database where datname = 'postgres'")
	spcVersion, err := filepath.Glob(filepath.Join(spcDir, "PG_15_*"))
	if err != nil || len(spcVersion) != 1 {
		t.Fatalf("tablespace version directory in %s: %v %v", spcDir, spcVersion, err)
	}
	leftOut := []string{
		filepath.Join(src.DataDir, "postgresql.conf.old"),
		filepath.Join(src.DataDir, "pg_hba.conf~"),
		filepath.Join(src.DataDir, "base", dbOID, "somefile.tmp"),
		filepath.Join(src.DataDir, "pg_log", "postgresql-old.log"),
		filepath.Join(spcVersion[0], dbOID, "junk.tmp"),
	}
	for _, p := range leftOut {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("left behind by an operator\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pgtest.Chown(t, src.DataDir)
	pgtest.Chown(t, spcDir)

	ctx := context.Background()
	a := archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: "zstd"})
	if _, err := basebackup.Run(ctx, basebackup.Options{
		ConnString: src.ConnString("postgres"), Archive: a, Fast: true, NoWait: true, ChunkSize: 1 << 20, Logger: zerolog.Nop(),
	}); err != nil {
		t.Fatal(err)
	}
	src.Exec(t, "insert into t select generate_series(1001, 1500)")
	archivetest.StoreArchivedWAL(t, src, walDir, a)

	dir := filepath.Join(pgtest.TempDir(t), "data")
	newSpc := filepath.Join(pgtest.TempDir(t), "extra")
	res, err := Run(ctx, Options{Archive: a, TargetDir: dir, TablespaceDirs: map[string]string{"extra": newSpc},
		RestoreCommand: "cp " + walDir + "/%f %p", Logger: zerolog.Nop()})
	if err != nil {
		t.Fatalf("restore of a backup whose data directory held files hoard leaves out: %v", err)
	}
	if res.PGManifestFiles < 900 {
		t.Errorf("restore compared %d files with backup_manifest, want every file of the cluster (900 or more)", res.PGManifestFiles)
	}
	for _, p := range leftOut {
		rel, err := filepath.Rel(src.DataDir, p)
		to := filepath.Join(dir, rel)
		if err != nil || rel[0] == '.' {
			rel, _ = filepath.Rel(spcDir, p)
			to = filepath.Join(newSpc, rel)
		}
		if _, err := os.Lstat(to); err == nil {
			t.Errorf("%s was restored as %s, want it left out as the backup left it out", p, to)
		}
	}
	pgtest.Chown(t, newSpc) // StartDataDir gives the server the data directory only
	c := pgtest.StartDataDir(t, major, dir, nil)
	c.WaitRecoveryDone(t, 3*time.Minute)
	if got := c.QueryString(t, "select count(*)::text from t"); got != "1500" {
		t.Errorf("restored t has %s rows, want 1500", got)
	}
}

// TestPGManifest_missing: a file the manifest lists that was not restored
// is missing unless the backup leaves it out on purpose (archive.LeftOut,
// a tablespace's file by the tablespace's rule); a file the backup would
// keep, a control file, and a file of a tablespace the backup does not
// hold are missing whatever their names.
func TestPGManifest_missing(t *testing.T) {
	leftOut := []string{
		"postgresql.conf.old", "pg_hba.conf~", "base/5/somefile.tmp", "pg_log/postgresql.log",
		"pg_stat_tmp/global.stat", "base/5/pg_internal.init", "pg_tblspc/16384/PG_15_202209061/5/junk.tmp",
		// Kept at the top of the data directory only.
		"pg_tblspc/16384/backup_label.old",
	}
	kept := []string{
		"base/5/16385", "global/pg_control", "backup_label", "tablespace_map", "backup_label.old",
		"pg_tblspc/16384/PG_15_202209061/5/16390", "pg_tblspc/99999/PG_15_202209061/5/junk.tmp",
	}
	newPM := func(names []string) *pgManifest {
		pm := &pgManifest{files: map[string]*pgManifestEntry{}, spcs: map[string]string{"extra": "pg_tblspc/16384/"}}
		for _, n := range names {
			pm.files[n] = &pgManifestEntry{}
		}
		return pm
	}
	if err := newPM(leftOut).missing(); err != nil {
		t.Errorf("missing() with only files the backup leaves out not restored = %v, want nil", err)
	}
	err := newPM(append(append([]string{}, leftOut...), kept[1:]...)).missing()
	if !errors.Is(err, ErrPGManifest) {
		t.Fatalf("missing() = %v, want ErrPGManifest", err)
	}
	for _, n := range kept[1:] {
		if !strings.Contains(err.Error(), archive.Quoted(n)) {
			t.Errorf("missing() = %q, does not name %s", err, n)
		}
	}
	for _, n := range leftOut {
		if strings.Contains(err.Error(), archive.Quoted(n)) {
			t.Errorf("missing() = %q, names %s, which the backup leaves out", err, n)
		}
	}
	pm := newPM(kept)
	for _, n := range kept {
		pm.files[n].restored = true
	}
	if err := pm.missing(); err != nil {
		t.Errorf("missing() with every file restored = %v, want nil", err)
	}
}
