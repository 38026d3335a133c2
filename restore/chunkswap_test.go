package restore

import (
	"context"
	"crypto/rsa"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/hostile"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// swapSource is a PostgreSQL 15 cluster with a table r whose pages are
// full of random bytes (which snappy, the default, stores as they are),
// and an encrypting snappy archive for its backups.
func swapSource(t *testing.T) (src *pgtest.Cluster, walDir string, a *archive.Archive) {
	t.Helper()
	src, walDir = pgtest.StartArchiving(t, pgtest.Options{Major: 15})
	src.Exec(t, "create table r (id int primary key, v bytea) with (autovacuum_enabled = off)")
	src.Exec(t, "alter table r alter v set storage plain")
	fillR(t, src, "1, 4096")
	k, err := crypto.GenerateKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	a = archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: compress.Snappy,
		KeyID: "k", PublicKey: &k.PublicKey, PrivateKeys: map[string]*rsa.PrivateKey{"k": k}})
	return src, walDir, a
}

// fillR inserts the rows of ids in the range (a generate_series argument
// list) into r, each 1984 random bytes: four to a page, filling it.
func fillR(t *testing.T, c *pgtest.Cluster, ids string) {
	t.Helper()
	c.Exec(t, `insert into r select i, (select decode(string_agg(md5(random()::text || i || g), ''), 'hex')
		from generate_series(1, 124) g) from generate_series(`+ids+`) i`)
}

// rewriteR gives r new rows in the pages its old ones held, so that its
// file keeps its size: the first 4092 rows are deleted and vacuumed away
// (the last page's rows keep the file from being truncated), then new
// ones fill the freed space.
func rewriteR(t *testing.T, c *pgtest.Cluster) {
	t.Helper()
	c.Exec(t, "delete from r where id <= 4092")
	c.Exec(t, "vacuum r")
	fillR(t, c, "1, 4092")
}

// TestRun_ErrChunkSwapped: someone who can write the bucket but holds no
// key copies a chunk of an older backup over the chunk of a newer one that
// has the same stored size and original-file-size (table files whose pages
// hold incompressible data, rewritten in place). The manifest's sizes all
// match; the table's file would be the older backup's, before the newer
// backup's checkpoint, where WAL replay does not repair it. Restore must
// refuse the backup, naming the chunk.
func TestRun_ErrChunkSwapped(t *testing.T) {
	src, walDir, a := swapSource(t)
	ctx := context.Background()
	backup := func() *archive.BackupInfo {
		b, err := basebackup.Run(ctx, basebackup.Options{
			ConnString: src.ConnString("postgres"), Archive: a, Fast: true, NoWait: true, ChunkSize: 1 << 20, Logger: zerolog.Nop(),
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	old := backup()
	rewriteR(t, src)
	want := src.QueryString(t, "select md5(string_agg(v, '' order by id)) from r")
	time.Sleep(time.Second) // backup names are per second
	b := backup()
	archivetest.StoreArchivedWAL(t, src, walDir, a)
	swapped := archivetest.SwapChunks(t, a, old.Name, b.Name)
	if len(swapped) == 0 {
		t.Fatal("no chunk of the older backup has the size of one of the newer")
	}

	dir := filepath.Join(pgtest.TempDir(t), "data")
	_, err := Run(ctx, Options{Archive: a, TargetDir: dir, Backup: b.Name, RestoreCommand: "cp " + walDir + "/%f %p", Logger: zerolog.Nop()})
	if err == nil {
		c := pgtest.StartDataDir(t, 15, dir, nil)
		c.WaitRecoveryDone(t, 3*time.Minute)
		got := c.QueryString(t, "select md5(string_agg(v, '' order by id)) from r")
		t.Fatalf("restore of %s with chunks %v of %s swapped in succeeded; r's rows: %s, backed up: %s", b.Name, swapped, old.Name, got, want)
	}
	named := slices.ContainsFunc(swapped, func(k string) bool { return strings.Contains(err.Error(), "chunk "+k+": ") })
	if !errors.Is(err, archive.ErrWrongObject) || !named {
		t.Errorf("restore with %v swapped: %v, want ErrWrongObject naming the chunk", swapped, err)
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
