package basebackup

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// listHookStore calls hook before each List with its prefix and how many
// Lists of that prefix came before it.
type listHookStore struct {
	storage.Store
	mu    sync.Mutex
	count map[string]int
	hook  func(prefix string, n int)
}

func (s *listHookStore) List(ctx context.Context, prefix string, fn func(storage.Object) error) error {
	s.mu.Lock()
	if s.count == nil {
		s.count = map[string]int{}
	}
	n := s.count[prefix]
	s.count[prefix]++
	s.mu.Unlock()
	s.hook(prefix, n)
	return s.Store.List(ctx, prefix, fn)
}

// forEachRaceStore runs fn in a subtest per real storage (local, MinIO),
// with a new archive there and the options of a backup of c into it.
func forEachRaceStore(t *testing.T, c *pgtest.Cluster, fn func(ctx context.Context, t *testing.T, opts Options)) {
	stores := []struct {
		name string
		open func(t *testing.T) storage.Store
	}{
		{"Local", func(t *testing.T) storage.Store { return storetest.Open(t, storetest.Local(t)) }},
		{"MinIO", func(t *testing.T) storage.Store { return storetest.Open(t, storetest.MinIO(t)) }},
	}
	for _, sc := range stores {
		t.Run(sc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
			t.Cleanup(cancel)
			a := &archive.Archive{Store: sc.open(t), Codec: &archive.Codec{Compression: compress.Snappy, Host: "testhost"}, Layout: archive.Layout{Prefix: "site"}, Site: "site"}
			fn(ctx, t, Options{ConnString: c.ConnString("postgres"), Archive: a, Fast: true, NoWait: true, ChunkSize: 1 << 20, Parallel: 2})
		})
	}
}

// startPaused starts a backup with opts whose first Put that gate accepts
// waits, and returns once it does.
func startPaused(ctx context.Context, t *testing.T, opts Options, gate func(string) bool) *storetest.PausedRun[*archive.BackupInfo] {
	t.Helper()
	return storetest.StartPaused(ctx, t, opts.Archive.Store, gate, func(st storage.Store) (*archive.BackupInfo, error) {
		ga := *opts.Archive
		ga.Store = st
		opts.Archive = &ga
		return Run(ctx, opts)
	})
}

// TestRun_RetentionWhileCompleting runs retention (plan and apply, as
// `hoard retention` does) while a real backup of a real cluster is paused
// at each step of its completion, on local storage and on MinIO:
//
//   - Chunk: a chunk being stored (its folder holds part of the chunks);
//   - Control: every chunk stored, the control object not yet;
//   - ControlAfterListing: the control object lands after retention
//     listed basebackup/ and before it looks at the chunk folders;
//   - ControlBeforeSecondListing: it lands before retention lists
//     basebackup/ a second time.
//
// Retention must succeed, delete nothing of the backup in progress, keep
// the WAL from its start, and the backup must complete and check in full.
// Before, the last two failed with "backup ... is stored ... but the
// listing of site/basebackup/ left it out" and "... is in a second listing
// of site/basebackup/ but the first left it out": retention took a backup
// that completed while it planned for one the storage had hidden.
func TestRun_RetentionWhileCompleting(t *testing.T) {
	c := pgtest.Start(t, pgtest.Options{Major: pgtest.Versions()[0]})
	pgtest.Pgbench(t, c, "-i", "-s", "1")
	forEachRaceStore(t, c, func(ctx context.Context, t *testing.T, opts Options) {
		a := opts.Archive
		for range 2 {
			if _, err := Run(ctx, opts); err != nil {
				t.Fatal(err)
			}
		}
		isChunk := func(key string) bool { return strings.HasPrefix(key, a.Layout.Dir(archive.BasebackupChunkDir)) }
		isControl := func(key string) bool { return strings.HasSuffix(key, archive.ControlSuffix) }
		steps := []struct {
			name string
			gate func(key string) bool
			// landAt says at which List of retention the paused Put
			// is let go and waited for; nil: after retention.
			landAt func(prefix string, n int) bool
		}{
			{name: "Chunk", gate: isChunk},
			{name: "Control", gate: isControl},
			{name: "ControlAfterListing", gate: isControl, landAt: func(prefix string, n int) bool {
				return prefix == a.Layout.Dir(archive.BasebackupChunkDir)
			}},
			{name: "ControlBeforeSecondListing", gate: isControl, landAt: func(prefix string, n int) bool {
				return prefix == a.Layout.Dir(archive.BasebackupDir) && n == 1
			}},
		}
		for _, step := range steps {
			t.Run(step.name, func(t *testing.T) {
				retentionWhileCompleting(ctx, t, opts, step.gate, step.landAt)
			})
		}
	})
}

// retentionWhileCompleting takes a backup whose first Put that gate
// accepts is paused, runs retention with basebackup_count=1 meanwhile (the
// Put let go at the List landAt names, or after retention), and checks
// retention's outcome and the backup's.
func retentionWhileCompleting(ctx context.Context, t *testing.T, opts Options, gate func(string) bool, landAt func(string, int) bool) {
	a := opts.Archive
	pb := startPaused(ctx, t, opts, gate)

	ra := *a
	ra.Store = &listHookStore{Store: a.Store, hook: func(prefix string, n int) {
		if landAt != nil && landAt(prefix, n) {
			pb.LetGo(ctx)
		}
	}}
	plan, err := ra.PlanRetention(ctx, archive.RetentionPolicy{MaxCount: 1}, time.Now())
	if err != nil {
		t.Fatalf("retention while a backup completes: %v", err)
	}
	if _, err := ra.ApplyRetention(ctx, plan, zerolog.Nop()); err != nil {
		t.Fatalf("apply retention while a backup completes: %v", err)
	}
	info, err := pb.Wait(ctx)
	if err != nil {
		t.Fatalf("backup that retention ran beside: %v", err)
	}
	for _, d := range plan.Delete {
		if d.Backup.Name == info.Name {
			t.Errorf("retention deleted the backup in progress %s: %s", info.Name, d.Reason)
		}
	}
	for _, o := range plan.Orphans {
		if strings.Contains(o.Folder, info.Name) {
			t.Errorf("retention deleted the chunks of the backup in progress: %s", o.Folder)
		}
	}
	if plan.WALHorizon == "" || plan.WALHorizon[8:] > info.StartWALSegment[8:] {
		t.Errorf("WAL horizon %q is past the start %s of the backup in progress", plan.WALHorizon, info.StartWALSegment)
	}
	bs, err := a.ListBackups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		if b.Name == info.Name {
			if err := a.CheckBackup(ctx, b, true); err != nil {
				t.Errorf("backup completed beside retention: %v", err)
			}
			return
		}
	}
	t.Errorf("backup %s completed beside retention is not listed (listed: %d)", info.Name, len(bs))
}

// TestRun_RetentionBesideOlderBackup: a backup P still in progress that
// started before the newest completed backup Q (a daemon on another host
// writing the same site, or PGHoard during a migration, whose backups
// overlap hoard's), with retention (basebackup_count=1) run between Q's
// completion and P's. Retention keeps Q and deletes what precedes Q's
// start; P, which starts earlier, needs the WAL from its own start once
// it completes. Before, that WAL was deleted: P completed unrestorable.
// Local storage and MinIO.
func TestRun_RetentionBesideOlderBackup(t *testing.T) {
	c, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: pgtest.Versions()[0]})
	pgtest.Pgbench(t, c, "-i", "-s", "1")
	forEachRaceStore(t, c, func(ctx context.Context, t *testing.T, opts Options) {
		a := opts.Archive
		if _, err := Run(ctx, opts); err != nil {
			t.Fatal(err)
		}
		pb := startPaused(ctx, t, opts, func(key string) bool { return strings.HasPrefix(key, a.Layout.Dir(archive.BasebackupChunkDir)) })
		// Q starts in a later segment than P.
		c.Exec(t, "select pg_switch_wal()")
		c.Exec(t, "create table if not exists moved (n int); insert into moved values (1)")
		c.Exec(t, "select pg_switch_wal()")
		q, err := Run(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		archivetest.StoreArchivedWAL(t, c, walDir, a)

		plan, err := a.PlanRetention(ctx, archive.RetentionPolicy{MaxCount: 1}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.ApplyRetention(ctx, plan, zerolog.Nop()); err != nil {
			t.Fatal(err)
		}
		p, err := pb.Wait(ctx)
		if err != nil {
			t.Fatalf("backup P: %v", err)
		}
		if p.StartWALSegment[8:] >= q.StartWALSegment[8:] {
			t.Fatalf("P starts in %s, Q in %s: the test needs P to start first", p.StartWALSegment, q.StartWALSegment)
		}
		for s := p.StartWALSegment; s[8:] < q.StartWALSegment[8:]; s = nextSegment(t, s, p.SegmentSize()) {
			if _, err := a.Store.Stat(ctx, a.Layout.WALKey(s)); err != nil {
				t.Errorf("WAL %s, which backup P (start %s) needs, is gone after retention: %v (plan: %q)", s, p.StartWALSegment, err, plan.Notes)
			}
		}
	})
}

// nextSegment returns the name of the segment after s.
func nextSegment(t testing.TB, s string, segSize uint64) string {
	t.Helper()
	seg, err := wal.ParseSegmentName(s, segSize)
	if err != nil {
		t.Fatal(err)
	}
	seg.No++
	return seg.Name(segSize)
}
