package restore

import (
	"context"
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
	"github.com/hoardbackup/hoard/wal"
)

// pghoardShaped takes a backup of c into a, its main object's metadata
// rewritten as PGHoard writes it (archivetest.PGHoardShape).
func pghoardShaped(t *testing.T, c *pgtest.Cluster, a *archive.Archive) *archive.BackupInfo {
	t.Helper()
	b, err := basebackup.Run(context.Background(), basebackup.Options{
		ConnString: c.ConnString("postgres"), Archive: a, Fast: true, NoWait: true, ChunkSize: 1 << 20, Logger: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	archivetest.PGHoardShape(t, a.Store, b.Key)
	return b
}

// TestRun_PGHoardSegSize64: backups of a cluster made with initdb
// --wal-segsize=64 whose metadata, as PGHoard's, records no segment size,
// with the WAL past several segments (the start segment's number differs
// from its LSN's at 16 MiB). hoard reads them at the 64 MiB the WAL's
// pages declare: hoard list's size, a restore to a named restore point
// (found by scanning the WAL at the backup's size) shows the rows there,
// retention at basebackup_count 1 deletes the older backup and only the
// WAL before the newer one's start, and a restore of what is left shows
// every row. The restores read the WAL stored in the archive (decodeWAL).
// PostgreSQL is the oracle.
func TestRun_PGHoardSegSize64(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB segments: slow")
	}
	const major = 15
	const segSize = 64 << 20
	ctx := context.Background()
	src, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: major, WALSegmentSizeMB: 64})
	a := archivetest.New(t, storage.NewMem(), &archive.Codec{Compression: "zstd"})
	src.Exec(t, "create table t (id int primary key)")
	for i := range 3 {
		src.Exec(t, "insert into t select generate_series($1::int * 10 + 1, $1::int * 10 + 10)", i)
		src.Exec(t, "select pg_switch_wal()")
	}
	first := pghoardShaped(t, src, a)
	src.Exec(t, "insert into t select generate_series(101, 150)")
	src.Exec(t, "select pg_create_restore_point('mid')")
	const rowsMid = "80"
	for i := range 3 {
		src.Exec(t, "select pg_switch_wal()")
		src.Exec(t, "insert into t select generate_series($1::int * 10 + 1001, $1::int * 10 + 1010)", i)
	}
	second := pghoardShaped(t, src, a)
	src.Exec(t, "insert into t select generate_series(5001, 5010)")
	const rowsAll = "120"
	archivetest.StoreArchivedWAL(t, src, walDir, a)

	bs, err := a.ListBackups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 2 {
		t.Fatalf("listed %d backups, want 2", len(bs))
	}
	for _, b := range bs {
		if b.WALSegmentSize != 0 || b.SegmentSize() != segSize {
			t.Errorf("backup %s: recorded %d, SegmentSize %d; want none recorded, %d learned", b.Name, b.WALSegmentSize, b.SegmentSize(), segSize)
		}
		s, err := wal.ParseSegmentName(b.StartWALSegment, segSize)
		if err != nil || b.StartLSN != s.StartLSN(segSize) {
			t.Errorf("backup %s: start %s in %s, want %s (%v)", b.Name, b.StartLSN, b.StartWALSegment, s.StartLSN(segSize), err)
		}
	}

	restoreRows := func(target Target, want string) {
		t.Helper()
		dir := filepath.Join(pgtest.TempDir(t), "data")
		if _, err := Run(ctx, Options{Archive: a, TargetDir: dir, Target: target, RestoreCommand: "cp " + decodeWAL(t, a) + "/%f %p", Logger: zerolog.Nop()}); err != nil {
			t.Fatal(err)
		}
		c := pgtest.StartDataDir(t, major, dir, nil)
		c.WaitRecoveryDone(t, 3*time.Minute)
		if got := c.QueryString(t, "select count(*)::text from t"); got != want {
			t.Errorf("restored t (target %+v) has %s rows, want %s", target, got, want)
		}
		c.Stop(t)
	}
	restoreRows(Target{Name: "mid"}, rowsMid)

	plan, err := a.PlanRetention(ctx, archive.RetentionPolicy{MaxCount: 1}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Delete) != 1 || plan.Delete[0].Backup.Name != first.Name {
		t.Fatalf("plan deletes %+v, want %s", plan.Delete, first.Name)
	}
	for _, w := range plan.WAL {
		if w.Name[:24] >= second.StartWALSegment {
			t.Errorf("plan deletes %s, at or after the kept backup's start %s", w.Name, second.StartWALSegment)
		}
	}
	if len(plan.WAL) == 0 {
		t.Error("plan deletes no WAL before the kept backup")
	}
	if _, err := a.ApplyRetention(ctx, plan, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	segs, err := a.ListSegments(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range segs {
		if s < second.StartWALSegment {
			t.Errorf("segment %s kept, before the kept backup's start %s", s, second.StartWALSegment)
		}
	}
	if !strings.HasPrefix(strings.Join(segs, ","), second.StartWALSegment) {
		t.Errorf("stored segments %v, want them to start at the kept backup's start %s", segs, second.StartWALSegment)
	}
	restoreRows(Target{}, rowsAll)
}
