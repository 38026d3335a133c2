package verify

import (
	"context"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// TestRun_PGHoardSegSize64Full: verify --full of a backup of a cluster
// made with initdb --wal-segsize=64 whose metadata, as PGHoard's, records
// no segment size, with its WAL past several segments: the backup is ok,
// its start LSN the 64 MiB one, and its WAL reaches the newest stored
// segment.
func TestRun_PGHoardSegSize64Full(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB segments: slow")
	}
	ctx := context.Background()
	src, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: 15, WALSegmentSizeMB: 64})
	a := archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: "zstd"})
	src.Exec(t, "create table t (id int primary key)")
	for i := range 3 {
		src.Exec(t, "insert into t select generate_series($1::int * 10 + 1, $1::int * 10 + 10)", i)
		src.Exec(t, "select pg_switch_wal()")
	}
	b, err := basebackup.Run(ctx, basebackup.Options{
		ConnString: src.ConnString("postgres"), Archive: a, Fast: true, NoWait: true, ChunkSize: 1 << 20, Logger: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	archivetest.PGHoardShape(t, a.Store, b.Key)
	for range 3 {
		src.Exec(t, "insert into t select generate_series(1001, 1010) on conflict do nothing")
		src.Exec(t, "select pg_switch_wal()")
	}
	archivetest.StoreArchivedWAL(t, src, walDir, a)

	rep, err := Run(ctx, Options{Archive: a, Full: true, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Backups) != 1 {
		t.Fatalf("report of %d backups, want 1", len(rep.Backups))
	}
	r := rep.Backups[0]
	if r.Status != StatusOK || !rep.OK() {
		t.Errorf("backup %s: status %s, problems %v %v; want ok", r.Name, r.Status, r.Problems, rep.Problems)
	}
	// PGHoard records only the start segment: its start, at 64 MiB.
	if want := b.StartLSN - b.StartLSN%(64<<20); r.StartLSN != want {
		t.Errorf("start LSN %s, want %s (the start of the backup's segment at 64 MiB)", r.StartLSN, want)
	}
	if r.ReachSegment != rep.Newest || rep.Newest <= r.StartSegment {
		t.Errorf("WAL reaches %s, newest stored %s, start %s: want the newest, past the start", r.ReachSegment, rep.Newest, r.StartSegment)
	}
}
