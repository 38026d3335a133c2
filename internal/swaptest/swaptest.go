// Package swaptest builds, on a real PostgreSQL 15 cluster, an archive in
// which someone who can write the bucket but holds no key copied chunks of
// an older backup over a newer one's, for the tests of restore and verify
// that must refuse them.
package swaptest

import (
	"context"
	"crypto/rsa"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/crypto"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// Major is the PostgreSQL major of the cluster.
const Major = 15

// Site is the swapped archive and what it came from.
type Site struct {
	Src     *pgtest.Cluster
	WALDir  string           // the cluster's archive_command copies, for restore_command
	Archive *archive.Archive // encrypting, snappy (the default)
	Old     *archive.BackupInfo
	New     *archive.BackupInfo
	// Swapped are New's chunk keys that Old's chunks were copied over.
	Swapped []string
	// WantR is the md5 of table r's rows when New was taken.
	WantR string
}

// RQuery is the digest of table r that WantR holds.
const RQuery = "select md5(string_agg(v, '' order by id)) from r"

// New takes two backups of a cluster whose table r has pages full of
// random bytes (which snappy stores as they are), its rows rewritten in
// place between them so that r's file keeps its size, then copies every
// chunk of the older backup that has the stored size and
// original-file-size of one of the newer over it
// (archivetest.SwapChunks), and stores the archived WAL. The manifest's
// sizes all match; r's file would be the older backup's, from before the
// newer backup's checkpoint, where WAL replay does not repair it.
func New(t *testing.T) *Site {
	t.Helper()
	src, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: Major})
	src.Exec(t, "create table r (id int primary key, v bytea) with (autovacuum_enabled = off)")
	src.Exec(t, "alter table r alter v set storage plain")
	fillR(t, src, "1, 4096")
	k, err := crypto.GenerateKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	a := archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: compress.Snappy,
		KeyID: "k", PublicKey: &k.PublicKey, PrivateKeys: map[string]*rsa.PrivateKey{"k": k}})
	backup := func() *archive.BackupInfo {
		b, err := basebackup.Run(context.Background(), basebackup.Options{
			ConnString: src.ConnString("postgres"), Archive: a, Fast: true, NoWait: true, ChunkSize: 1 << 20, Logger: zerolog.Nop(),
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	s := &Site{Src: src, WALDir: walDir, Archive: a, Old: backup()}
	rewriteR(t, src)
	s.WantR = src.QueryString(t, RQuery)
	time.Sleep(time.Second) // backup names are per second
	s.New = backup()
	archivetest.StoreArchivedWAL(t, src, walDir, a)
	s.Swapped = archivetest.SwapChunks(t, a, s.Old.Name, s.New.Name)
	if len(s.Swapped) == 0 {
		t.Fatal("no chunk of the older backup has the size of one of the newer")
	}
	return s
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
