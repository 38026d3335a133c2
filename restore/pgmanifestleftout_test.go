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
	"github.com/hoardbackup/hoard/internal/hostile"
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
		// Kept at the top of the data directory only, and not
		// missing there (TestRun_PGManifestBackupLabelOld).
		"pg_tblspc/16384/backup_label.old", "backup_label.old",
	}
	kept := []string{
		"base/5/16385", "global/pg_control", "backup_label", "tablespace_map",
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

// TestRun_PGManifestBackupLabelOld: a backup taken over BASE_BACKUP by a
// hoard before c005a0d, of a cluster made from a backup (every standby,
// every cluster restored once), left out the top-level backup_label.old
// that the server sent and its backup_manifest lists (the .old rule
// dropped it then). PostgreSQL never reads backup_label.old, so such a
// backup restores without it; a backup_label.old that a backup does hold
// is still compared with its entry.
func TestRun_PGManifestBackupLabelOld(t *testing.T) {
	const old = "backup_label.old"
	oldBody := "START WAL LOCATION: 0/100028 (file 000000010000000000000001)\n"
	for _, tc := range []struct {
		name   string
		stored string // backup_label.old in a chunk; "" for none
		ok     bool
	}{
		{"OK", "", true},
		{"OKHeld", oldBody, true},
		{"ErrChanged", strings.Replace(oldBody, "0/100028", "0/100029", 1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			listed := pgManifestFiles()
			listed[old] = oldBody
			chunk := []hostile.Member{{Name: "pgdata/base/1/2222", Body: listed["base/1/2222"]}}
			if tc.stored != "" {
				chunk = append(chunk, hostile.Member{Name: "pgdata/" + old, Body: tc.stored})
			}
			spcFile := "pg_tblspc/16400/PG_15_202209061/5/3333"
			spc := []hostile.Member{{Name: "tablespaces/ts/" + strings.TrimPrefix(spcFile, "pg_tblspc/16400/"), Body: listed[spcFile]}}
			b := hostile.Backup{Name: "2026-01-02_03-00_0", PGManifest: true,
				Tablespaces: map[string]archive.ManifestTablespace{"ts": {Path: "/nonexistent/ts", OID: 16400}},
				Chunks:      [][]hostile.Member{chunk, spc},
				Control:     []hostile.Member{{Name: archive.ControlPGManifest, Body: pgManifestJSON(t, listed)}}}
			e := hostile.NewEnv(t)
			st, _, err := restoreHostile(t, e, b, map[string]string{"ts": filepath.Join(e.Parent, "spc")})
			if !tc.ok {
				if !errors.Is(err, ErrPGManifest) || !strings.Contains(err.Error(), archive.Quoted(old)) {
					t.Fatalf("restore of %s whose %s differs from its backup_manifest: %v, want ErrPGManifest naming it", st.Name, old, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("restore of %s, its backup_manifest listing %s, which it holds (%t): %v", st.Name, old, tc.stored != "", err)
			}
			_, err = os.Lstat(filepath.Join(e.Target(), old))
			if got, want := err == nil, tc.stored != ""; got != want {
				t.Errorf("%s restored = %t (%v), want %t", old, got, err, want)
			}
			if _, err := os.Stat(filepath.Join(e.Target(), "global", "pg_control")); err != nil {
				t.Errorf("pg_control: %v", err)
			}
		})
	}
}
