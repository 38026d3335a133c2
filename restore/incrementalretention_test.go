package restore

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/basebackup"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/storetest"
	"github.com/hoardbackup/hoard/storage"
)

// startIncremental starts an incremental backup of src into a and
// returns once it reached the Put that match accepts.
func startIncremental(ctx context.Context, t *testing.T, src *pgtest.Cluster, a *archive.Archive, match func(string) bool) *storetest.PausedRun[*archive.BackupInfo] {
	t.Helper()
	return storetest.StartPaused(ctx, t, a.Store, match, func(st storage.Store) (*archive.BackupInfo, error) {
		pa := *a
		pa.Store = st
		return basebackup.Run(ctx, basebackup.Options{
			ConnString: src.ConnString("postgres"), Archive: &pa, Fast: true, NoWait: true, ChunkSize: 1 << 20,
			Mode: basebackup.ModeStream, Incremental: true, Logger: zerolog.Nop(),
		})
	})
}

// retain plans retention with basebackup_count=1 and applies the plan,
// as `hoard retention` does; between is called between the two.
func retain(ctx context.Context, t *testing.T, a *archive.Archive, between func()) archive.RetentionPlan {
	t.Helper()
	plan, err := a.PlanRetention(ctx, archive.RetentionPolicy{MaxCount: 1}, time.Now())
	if err != nil {
		t.Fatalf("plan retention: %v", err)
	}
	if between != nil {
		between()
	}
	if _, err := a.ApplyRetention(ctx, plan, zerolog.Nop()); err != nil {
		t.Fatalf("apply retention: %v", err)
	}
	return plan
}

// TestRun_IncrementalBesideRetention: an incremental backup I of a real
// PostgreSQL 17 and 18 (summarize_wal on), on local storage and MinIO, is taken against the newest
// backup P; while it runs, a full backup F completes (the daemon's
// schedule beside `hoard basebackup --incremental`, or another host) and
// retention with basebackup_count=1 runs, which would delete P:
//
//   - WhileRunning: retention plans and applies while I is paused at
//     its first chunk. Before, P was deleted and I completed as an
//     incremental of a backup that is gone (found out only at restore).
//     Now P is kept, and I restores with the source's rows;
//   - PlannedBefore: retention plans before I recorded its parent (I
//     paused at that step) and applies after. P is kept all the same;
//   - ParentDeleted: P's control object is deleted while I runs (by a
//     writer that does not know the marker: PGHoard's retention, an
//     older hoard, by hand). I fails, naming P, wrapping ErrNoParent, and
//     stores nothing; before, it completed.
func TestRun_IncrementalBesideRetention(t *testing.T) {
	for _, major := range []int{17, 18} {
		t.Run(strconv.Itoa(major), func(t *testing.T) { testIncrementalBesideRetention(t, major) })
	}
}

func testIncrementalBesideRetention(t *testing.T, major int) {
	for _, sc := range []storetest.Server{{Name: "Local", Config: storetest.Local}, {Name: "MinIO", Config: storetest.MinIO}} {
		t.Run(sc.Name, func(t *testing.T) { incrementalBesideRetention(t, major, sc.Config) })
	}
}

// incrementalBesideRetention runs TestRun_IncrementalBesideRetention's
// cases on a new cluster of major (a restored copy archives into the
// source's WAL directory), its backups in new archives on the storage
// config gives.
func incrementalBesideRetention(t *testing.T, major int, config func(testing.TB) storage.Config) {
	src, walDir := pgtest.StartArchiving(t, pgtest.Options{Major: major, Conf: map[string]string{"summarize_wal": "on"}})
	pgtest.Pgbench(t, src, "-i", "-s", "1")
	ctx := incrContext(t)
	newArchive := func(t *testing.T) *archive.Archive {
		c := &archive.Codec{Compression: "zstd"}
		archivetest.AddKeys(t, c)
		// storetest.Open closes the store when the test ends.
		return &archive.Archive{Store: storetest.Open(t, config(t)), Codec: c, Layout: archive.Layout{Prefix: "site"}, Site: "site"}
	}
	// isChunk accepts the keys of chunks, not those of the markers
	// beside them.
	isChunk := func(a *archive.Archive) func(string) bool {
		return func(key string) bool {
			return strings.HasPrefix(key, a.Layout.Dir(archive.BasebackupChunkDir)) && !strings.Contains(key, "/hoard-incremental/")
		}
	}
	isMarker := func(key string) bool { return strings.Contains(key, "/basebackup_chunk/hoard-incremental/") }
	parentStored := func(t *testing.T, a *archive.Archive, p *archive.BackupInfo) {
		t.Helper()
		if _, err := a.Store.Stat(ctx, p.Key); err != nil {
			t.Errorf("parent %s of the incremental backup in progress after retention: %v", p.Name, err)
		}
	}

	t.Run("WhileRunning", func(t *testing.T) {
		a := newArchive(t)
		p := takeBackup(ctx, t, src, a, basebackup.ModeStream, false)
		src.Exec(t, "update pgbench_accounts set abalance = abalance + 1 where aid % 50 = 0")
		ri := startIncremental(ctx, t, src, a, isChunk(a))
		src.Exec(t, "select pg_switch_wal()")
		f := takeBackup(ctx, t, src, a, basebackup.ModeStream, false)
		plan := retain(ctx, t, a, nil)
		for _, d := range plan.Delete {
			if d.Backup.Name == p.Name {
				t.Errorf("retention deleted %s, the parent of the incremental backup in progress: %s", p.Name, d.Reason)
			}
		}
		parentStored(t, a, p)
		inc, err := ri.Wait(ctx)
		if err != nil {
			t.Fatalf("incremental backup beside retention: %v", err)
		}
		if inc.Parent != p.Name {
			t.Fatalf("incremental backup's parent %q, want %s (F: %s)", inc.Parent, p.Name, f.Name)
		}
		want := digest(t, src)
		archivetest.StoreArchivedWAL(t, src, walDir, a)
		dir := filepath.Join(pgtest.TempDir(t), "data")
		if _, err := Run(ctx, Options{Archive: a, TargetDir: dir, Backup: inc.Name, RestoreCommand: "cp " + walDir + "/%f %p", Logger: zerolog.Nop()}); err != nil {
			t.Fatalf("restore of %s after retention: %v", inc.Name, err)
		}
		c := pgtest.StartDataDir(t, major, dir, nil)
		c.WaitRecoveryDone(t, 3*time.Minute)
		checkRestored(t, c, want)
		c.Stop(t)
	})

	t.Run("PlannedBefore", func(t *testing.T) {
		a := newArchive(t)
		p := takeBackup(ctx, t, src, a, basebackup.ModeStream, false)
		src.Exec(t, "update pgbench_accounts set abalance = abalance + 2 where aid % 70 = 0")
		ri := startIncremental(ctx, t, src, a, isMarker)
		takeBackup(ctx, t, src, a, basebackup.ModeStream, false)
		retain(ctx, t, a, func() { ri.LetGo(ctx) })
		parentStored(t, a, p)
		inc, err := ri.Wait(ctx)
		if err != nil {
			t.Fatalf("incremental backup beside retention: %v", err)
		}
		bs, err := a.ListBackups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		chain, err := archive.Chain(bs, inc)
		if err != nil {
			t.Fatalf("chain of %s after retention: %v", inc.Name, err)
		}
		for _, b := range chain {
			if err := a.CheckBackup(ctx, b, true); err != nil {
				t.Errorf("backup %s of the chain: %v", b.Name, err)
			}
		}
	})

	t.Run("ParentDeleted", func(t *testing.T) {
		a := newArchive(t)
		p := takeBackup(ctx, t, src, a, basebackup.ModeStream, false)
		ri := startIncremental(ctx, t, src, a, isChunk(a))
		if err := a.Store.Delete(ctx, p.Key); err != nil {
			t.Fatal(err)
		}
		inc, err := ri.Wait(ctx)
		if !errors.Is(err, archive.ErrNoParent) || !strings.Contains(err.Error(), p.Name) {
			t.Fatalf("incremental backup whose parent was deleted: %v (stored %v), want ErrNoParent naming %s", err, inc, p.Name)
		}
		var left []string
		err = a.Store.List(ctx, a.Layout.Dir(archive.BasebackupChunkDir), func(o storage.Object) error {
			if !strings.HasPrefix(o.Key, a.Layout.Dir(archive.BasebackupChunkDir)+p.Name+"/") {
				left = append(left, o.Key)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(left) != 0 {
			t.Errorf("the failed incremental backup left %q", left)
		}
		n := 0
		err = a.Store.List(ctx, a.Layout.Dir(archive.BasebackupChunkDir)+p.Name+"/", func(storage.Object) error { n++; return nil })
		if err != nil || n != p.ChunkCount {
			t.Errorf("%d chunks of %s left (%v), want its %d: the failed backup deletes only its own objects", n, p.Name, err, p.ChunkCount)
		}
	})
}

// staleMarkers shows the markers of incremental backups among keys as
// written two days ago (storage.Object.Changed), over a real store: as
// retention sees a marker whose backup failed to store it again for more
// than a day (KeepIncrementalMarker; the storage was down), after which
// a newer backup started.
type staleMarkers struct {
	storage.Store
	keys map[string]bool
}

func (s staleMarkers) age(o storage.Object) storage.Object {
	if s.keys[o.Key] {
		o.Changed = time.Now().Add(-2 * archive.OrphanMinAge)
	}
	return o
}

func (s staleMarkers) List(ctx context.Context, prefix string, fn func(storage.Object) error) error {
	return s.Store.List(ctx, prefix, func(o storage.Object) error { return fn(s.age(o)) })
}

func (s staleMarkers) Stat(ctx context.Context, key string) (storage.Object, error) {
	o, err := s.Store.Stat(ctx, key)
	return s.age(o), err
}

// beforePut runs before, once, ahead of the first Put that match accepts.
type beforePut struct {
	storage.Store
	match  func(key string) bool
	once   *sync.Once
	before func()
}

func (s beforePut) Put(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	if s.match(key) {
		s.once.Do(s.before)
	}
	return s.Store.Put(ctx, key, r, md)
}

// TestRun_IncrementalMarkerStale: an incremental backup I of a real
// PostgreSQL 18 (local storage) against P whose marker stopped
// counting while it ran (staleMarkers: a day without a new marker stored),
// after a full backup F completed. Retention with basebackup_count=1 runs
// after I's last check of P's chain, just before I's control object. I
// must not complete as an incremental of a backup that retention deleted:
// before, retention deleted P (the marker stale) and I completed, listed,
// with its parent gone. Now I stores a new marker before that check,
// which retention sees: P is kept and I's chain is whole.
func TestRun_IncrementalMarkerStale(t *testing.T) {
	src, _ := pgtest.StartArchiving(t, pgtest.Options{Major: 18, Conf: map[string]string{"summarize_wal": "on"}})
	pgtest.Pgbench(t, src, "-i", "-s", "1")
	ctx := incrContext(t)
	c := &archive.Codec{Compression: "zstd"}
	archivetest.AddKeys(t, c)
	a := &archive.Archive{Store: storetest.Open(t, storetest.Local(t)), Codec: c, Layout: archive.Layout{Prefix: "site"}, Site: "site"}
	p := takeBackup(ctx, t, src, a, basebackup.ModeStream, false)
	src.Exec(t, "update pgbench_accounts set abalance = abalance + 3 where aid % 60 = 0")

	markerDir := a.Layout.Dir(archive.BasebackupChunkDir) + "hoard-incremental/"
	stale := staleMarkers{Store: a.Store, keys: map[string]bool{}}
	var plan archive.RetentionPlan
	ran := false
	retain := func() {
		ran = true
		ra := *a
		ra.Store = stale
		var err error
		if plan, err = ra.PlanRetention(ctx, archive.RetentionPolicy{MaxCount: 1}, time.Now()); err != nil {
			t.Errorf("plan retention: %v", err)
			return
		}
		if _, err := ra.ApplyRetention(ctx, plan, zerolog.Nop()); err != nil {
			t.Errorf("apply retention: %v", err)
		}
	}
	isControl := func(key string) bool {
		rest, ok := strings.CutPrefix(key, a.Layout.Dir(archive.BasebackupDir))
		return ok && !strings.Contains(rest, "/")
	}
	ia := *a
	ia.Store = beforePut{Store: a.Store, match: isControl, once: &sync.Once{}, before: retain}
	isChunk := func(key string) bool {
		return strings.HasPrefix(key, a.Layout.Dir(archive.BasebackupChunkDir)) && !strings.HasPrefix(key, markerDir)
	}
	ri := startIncremental(ctx, t, src, &ia, isChunk)
	// I chose P and stored its marker; F completes, and the marker
	// stops counting.
	f := takeBackup(ctx, t, src, a, basebackup.ModeStream, false)
	err := a.Store.List(ctx, markerDir, func(o storage.Object) error {
		stale.keys[o.Key] = true
		return nil
	})
	if err != nil || len(stale.keys) == 0 {
		t.Fatalf("markers of I: %v, %v", stale.keys, err)
	}
	inc, err := ri.Wait(ctx)
	if !ran {
		t.Fatalf("retention did not run before I's control object (I: %v)", err)
	}
	if err != nil {
		// Failing is safe too; completing without P is not.
		t.Logf("incremental backup: %v", err)
		return
	}
	for _, d := range plan.Delete {
		if d.Backup.Name == p.Name {
			t.Errorf("retention deleted %s, the parent of the incremental backup %s in progress: %s", p.Name, inc.Name, d.Reason)
		}
	}
	if _, err := a.Store.Stat(ctx, p.Key); err != nil {
		t.Errorf("incremental backup %s completed; its parent %s: %v (F: %s)", inc.Name, p.Name, err, f.Name)
	}
	bs, err := a.ListBackups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := archive.Chain(bs, inc); err != nil {
		t.Errorf("chain of %s after retention: %v", inc.Name, err)
	}
}

// TestRun_IncrementalMarkerDeleted: an incremental backup I of a real
// PostgreSQL 18 (local storage) against P, paused at its control object,
// after its new marker and its last check of P's chain (markAgain,
// checkParent). A full backup F completes, someone who can write the
// bucket deletes I's marker, and retention with basebackup_count=1 plans
// while I is not listed:
//
//   - AppliedBefore: the plan is applied before I's control object is
//     stored: P is deleted;
//   - AppliedAfter: the plan is applied once I returned: its listing of
//     the markers before each deletion finds none, and P is deleted
//     after I's control object is stored;
//   - WithdrawFails: no plan is applied, and the store refuses to
//     delete I's control object.
//
// Before, I was reported stored, listed as an incremental of P, which
// was gone (found out only at restore). Now I fails, wrapping
// ErrIncrementalMarkerLost (or ErrNoParent), and is not listed: its
// control object and chunks are deleted again. When its control object
// cannot be deleted, the error says that it is listed, and its chunks
// stay with it.
func TestRun_IncrementalMarkerDeleted(t *testing.T) {
	src, _ := pgtest.StartArchiving(t, pgtest.Options{Major: 18, Conf: map[string]string{"summarize_wal": "on"}})
	pgtest.Pgbench(t, src, "-i", "-s", "1")
	ctx := incrContext(t)
	for _, tc := range []struct {
		name              string
		apply, applyAfter bool
		withdrawFails     bool
	}{
		{name: "AppliedBefore", apply: true},
		{name: "AppliedAfter", apply: true, applyAfter: true},
		{name: "WithdrawFails", withdrawFails: true},
	} {
		t.Run(tc.name, func(t *testing.T) { incrementalMarkerDeleted(ctx, t, src, tc.apply, tc.applyAfter, tc.withdrawFails) })
	}
}

// refuseDelete fails the deletion of the keys match accepts.
type refuseDelete struct {
	storage.Store
	match func(key string) bool
}

func (s refuseDelete) Delete(ctx context.Context, key string) error {
	if s.match(key) {
		return errors.New("delete refused (test)")
	}
	return s.Store.Delete(ctx, key)
}

func incrementalMarkerDeleted(ctx context.Context, t *testing.T, src *pgtest.Cluster, apply, applyAfter, withdrawFails bool) {
	c := &archive.Codec{Compression: "zstd"}
	archivetest.AddKeys(t, c)
	a := &archive.Archive{Store: storetest.Open(t, storetest.Local(t)), Codec: c, Layout: archive.Layout{Prefix: "site"}, Site: "site"}
	p := takeBackup(ctx, t, src, a, basebackup.ModeStream, false)
	src.Exec(t, "update pgbench_accounts set abalance = abalance + 4 where aid % 40 = 0")

	isControl := func(key string) bool {
		rest, ok := strings.CutPrefix(key, a.Layout.Dir(archive.BasebackupDir))
		return ok && !strings.Contains(rest, "/")
	}
	ia := *a
	if withdrawFails {
		ia.Store = refuseDelete{Store: a.Store, match: isControl}
	}
	ri := startIncremental(ctx, t, src, &ia, isControl)
	f := takeBackup(ctx, t, src, a, basebackup.ModeStream, false)
	markerDir := a.Layout.Dir(archive.BasebackupChunkDir) + "hoard-incremental/"
	var markers []string
	err := a.Store.List(ctx, markerDir, func(o storage.Object) error {
		markers = append(markers, o.Key)
		return nil
	})
	if err != nil || len(markers) == 0 {
		t.Fatalf("markers of I: %v, %v", markers, err)
	}
	for _, k := range markers {
		if err := a.Store.Delete(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	plan, err := a.PlanRetention(ctx, archive.RetentionPolicy{MaxCount: 1}, time.Now())
	if err != nil {
		t.Fatalf("plan retention: %v", err)
	}
	applyPlan := func() {
		if _, err := a.ApplyRetention(ctx, plan, zerolog.Nop()); err != nil {
			t.Fatalf("apply retention: %v", err)
		}
	}
	if apply && !applyAfter {
		applyPlan()
	}
	inc, err := ri.Wait(ctx)
	if apply && applyAfter {
		applyPlan()
	}
	bs, lerr := a.ListBackups(ctx)
	if lerr != nil {
		t.Fatal(lerr)
	}
	if err == nil {
		if _, serr := a.Store.Stat(ctx, p.Key); serr != nil {
			t.Errorf("incremental backup %s reported stored; its parent %s: %v (F: %s)", inc.Name, p.Name, serr, f.Name)
		}
		if _, cerr := archive.Chain(bs, inc); cerr != nil {
			t.Errorf("chain of %s after retention: %v", inc.Name, cerr)
		}
		return
	}
	t.Logf("incremental backup: %v", err)
	if !errors.Is(err, archive.ErrIncrementalMarkerLost) && !errors.Is(err, archive.ErrNoParent) {
		t.Errorf("incremental backup whose marker was deleted: %v, want ErrIncrementalMarkerLost or ErrNoParent", err)
	}
	var listed []*archive.BackupInfo
	for _, b := range bs {
		if b.Name != p.Name && b.Name != f.Name {
			listed = append(listed, b)
		}
	}
	chunkDir := a.Layout.Dir(archive.BasebackupChunkDir)
	if withdrawFails {
		// Listed, so whole: its chunks are not deleted from under it.
		if len(listed) != 1 || !strings.Contains(err.Error(), listed[0].Key) || !strings.Contains(err.Error(), "could not be deleted again") {
			t.Fatalf("incremental backup whose control object could not be withdrawn: %v; listed %v, want it listed and the error to say so", err, listed)
		}
		if err := a.CheckBackup(ctx, listed[0], true); err != nil {
			t.Errorf("listed backup %s after its withdrawal failed: %v", listed[0].Name, err)
		}
		return
	}
	for _, b := range listed {
		t.Errorf("the failed incremental backup is listed: %s (parent %q)", b.Name, b.Parent)
	}
	var left []string
	err = a.Store.List(ctx, chunkDir, func(o storage.Object) error {
		if !strings.HasPrefix(o.Key, chunkDir+p.Name+"/") && !strings.HasPrefix(o.Key, chunkDir+f.Name+"/") {
			left = append(left, o.Key)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("the failed incremental backup left %q", left)
	}
}
