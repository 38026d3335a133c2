package basebackup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// agedFolder reports every object under prefix but a delta backup's
// marker as written at at (storage.Object.Changed), over a real store:
// the folder of a delta backup that stored its bundles more than a day
// ago, after which a newer backup started, and that stored its marker
// again since (archive.KeepDeltaRunning), as retention sees it.
type agedFolder struct {
	storage.Store
	prefix string
	at     time.Time
}

func (s agedFolder) age(o storage.Object) storage.Object {
	if strings.HasPrefix(o.Key, s.prefix) && !strings.HasSuffix(o.Key, archive.DeltaRunningSuffix) {
		o.Changed = s.at
	}
	return o
}

func (s agedFolder) List(ctx context.Context, prefix string, fn func(storage.Object) error) error {
	return s.Store.List(ctx, prefix, func(o storage.Object) error { return fn(s.age(o)) })
}

func (s agedFolder) Stat(ctx context.Context, key string) (storage.Object, error) {
	o, err := s.Store.Stat(ctx, key)
	return s.age(o), err
}

// markerSyncFail fails the next Put of a delta backup's marker once fail
// is set, as the local store fails one whose directory fsync failed after
// it renamed the new file over the key: the key is removed, the previous
// copy with it. With keep set, the previous copy stays, as on S3 (a PUT
// that fails leaves the object as it was). failed is closed after that
// Put.
type markerSyncFail struct {
	storage.Store
	fail   *atomic.Bool
	failed chan struct{}
	keep   bool
}

func (s markerSyncFail) Put(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	if !strings.HasSuffix(key, archive.DeltaRunningSuffix) || !s.fail.Load() {
		return s.Store.Put(ctx, key, r, md)
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	var err error
	if !s.keep {
		err = s.Store.Delete(ctx, key)
	}
	if s.fail.CompareAndSwap(true, false) {
		close(s.failed)
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("put %s: sync directory: %w", key, syscall.EIO)
}

// TestRunDelta_MarkerLost: a delta backup whose marker retention may not
// have seen at some moment while it ran must fail, storing no control
// object, rather than be listed with a manifest naming delta objects that
// a retention run deleted meanwhile. The backup reuses x, an object only
// the backup that retention deletes refers to (a file whose bytes came
// back); the retention run comes just before the backup's control object,
// after it checked its reused objects (beforeControl), and sees its
// folder as that of a backup that stored its bundles two days ago, after
// which a newer backup started: only the marker shows the backup running.
// How the marker is lost:
//
//   - WriteFails: the marker's refresh (a tick of DeltaRunningRefresh,
//     after the bundles) fails halfway on the local store, which then
//     removes the marker (a failed directory fsync);
//   - Deleted: someone who can write the bucket deletes it;
//   - DeletedStoredBack: they delete it and, after retention ran, store
//     its very bytes back.
//
// Before, each backup completed and was listed with x deleted: its
// restore would fail. Now each fails with ErrDeltaMarkerLost, and its
// name is not listed. The marker kept as stored (OK) lets the same
// backup complete, with x kept by retention; so does a refresh that
// fails leaving the marker as it was (WriteFailsKept: S3 keeps an object
// whose new PUT failed), which retention still sees, within a day of its
// last write.
func TestRunDelta_MarkerLost(t *testing.T) {
	major := pgtest.Versions()[len(pgtest.Versions())-1]
	ctx := testContext(t)
	c := pgtest.Start(t, pgtest.Options{Major: major, DataChecksums: true})
	c.Exec(t, "create table t as select g as i from generate_series(1, 1000) g")
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	cases := []struct {
		name string
		// lose runs after the bundles (afterBundles) and before the
		// retention run (beforeControl); back runs after it.
		lose, back func(t *testing.T, a *archive.Archive, key string, s markerSyncFail, tick chan time.Time)
		ok         bool
		keep       bool // the failed write leaves the marker (markerSyncFail.keep)
	}{
		{name: "OK", ok: true},
		{name: "WriteFails", lose: failRefresh(ctx)},
		{name: "Deleted", lose: func(t *testing.T, a *archive.Archive, key string, _ markerSyncFail, _ chan time.Time) {
			if err := a.Store.Delete(ctx, key); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "DeletedStoredBack"},
		{name: "WriteFailsKept", lose: failRefresh(ctx), keep: true, ok: true},
	}
	var saved []byte
	var savedMD storage.Metadata
	cases[3].lose = func(t *testing.T, a *archive.Archive, key string, _ markerSyncFail, _ chan time.Time) {
		r, o, err := a.Store.Open(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		saved, err = io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		savedMD = o.Metadata
		if err := a.Store.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
	cases[3].back = func(t *testing.T, a *archive.Archive, key string, _ markerSyncFail, _ chan time.Time) {
		if err := a.Store.Put(ctx, key, bytes.NewReader(saved), savedMD); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := encryptedArchive(t, compress.Zstd)
			opts := deltaOptions(t, c, a)
			opts.BasebackupMode = "delta"
			opts.Logger = log
			_, x := backupsABA(ctx, t, c, opts)
			plan, err := a.PlanRetention(ctx, archive.RetentionPolicy{MaxCount: 1}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			s := markerSyncFail{Store: a.Store, fail: &atomic.Bool{}, failed: make(chan struct{}), keep: tc.keep}
			ba := *a
			ba.Store = s
			opts.Archive = &ba
			tick := make(chan time.Time)
			opts.deltaMarkerTick = tick
			var key string // the backup's marker
			opts.afterBundles = func() {
				key = runningMarker(ctx, t, a)
				if tc.lose != nil {
					tc.lose(t, a, key, s, tick)
				}
			}
			var res archive.RetentionResult
			opts.beforeControl = func() {
				ra := *a
				folder := key[:strings.LastIndex(key, "/")+1]
				ra.Store = agedFolder{Store: a.Store, prefix: folder, at: time.Now().Add(-2 * archive.OrphanMinAge)}
				if res, err = ra.ApplyRetention(ctx, plan, log); err != nil {
					t.Error(err)
				}
				if tc.back != nil {
					tc.back(t, a, key, s, tick)
				}
			}
			b, err := Run(ctx, opts)
			if tc.ok {
				if err != nil {
					t.Fatalf("backup with its marker kept: %v", err)
				}
				if res.Delta != 0 {
					t.Errorf("retention deleted %d delta objects while the backup's marker showed it running", res.Delta)
				}
				if _, err := a.Store.Stat(ctx, x); err != nil {
					t.Errorf("%s, which backup %s reuses: %v", x, b.Name, err)
				}
				return
			}
			if res.Delta == 0 {
				t.Fatalf("retention deleted no delta object: the test does not lose the marker (notes %q)", plan.Notes)
			}
			if err == nil {
				_, serr := a.Store.Stat(ctx, x)
				t.Fatalf("backup %s completed with its marker lost; %s, which it reuses: %v", b.Name, x, serr)
			}
			if !errors.Is(err, archive.ErrDeltaMarkerLost) {
				t.Errorf("backup error %v, want ErrDeltaMarkerLost", err)
			}
			backups, lerr := a.ListBackups(ctx)
			if lerr != nil {
				t.Fatal(lerr)
			}
			if n := len(backups); n != 1 {
				t.Errorf("%d backups listed, want 1: the one retention kept, not the failed one", n)
			}
		})
	}
}

// failRefresh returns a lose of TestRunDelta_MarkerLost that makes the
// marker's refresh at the next tick fail (markerSyncFail), and waits for
// it.
func failRefresh(ctx context.Context) func(t *testing.T, _ *archive.Archive, _ string, s markerSyncFail, tick chan time.Time) {
	return func(t *testing.T, _ *archive.Archive, _ string, s markerSyncFail, tick chan time.Time) {
		s.fail.Store(true)
		tick <- time.Now()
		select {
		case <-s.failed:
		case <-ctx.Done():
			t.Fatal("the marker was not stored again at the tick")
		}
	}
}

// runningMarker returns the key of the one delta backup marker in a.
func runningMarker(ctx context.Context, t *testing.T, a *archive.Archive) string {
	t.Helper()
	var keys []string
	err := a.Store.List(ctx, a.Layout.DeltaChunkKey(""), func(o storage.Object) error {
		if strings.HasSuffix(o.Key, archive.DeltaRunningSuffix) {
			keys = append(keys, o.Key)
		}
		return nil
	})
	if err != nil || len(keys) != 1 {
		t.Fatalf("delta backup markers %q, %v; want one", keys, err)
	}
	return keys[0]
}

// markerHeld holds the first Put of a delta backup's marker made once
// armed is set, after the store wrote it: it closes landed and returns
// when ctx ends, refused, as a network store whose answer the
// cancellation cut, or after hold.
type markerHeld struct {
	storage.Store
	armed  *atomic.Bool
	landed chan struct{}
	hold   time.Duration
}

func (s markerHeld) Put(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	err := s.Store.Put(ctx, key, r, md)
	if err != nil || !strings.HasSuffix(key, archive.DeltaRunningSuffix) || !s.armed.CompareAndSwap(true, false) {
		return err
	}
	close(s.landed)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(s.hold):
		return nil
	}
}

// TestRunDelta_MarkerStoppedInFlight: a delta backup that ends (and
// stops storing its marker again) while a refresh of the marker is in
// flight, stored but not yet answered, completes: the refresh finishes,
// and the backup's checks compare the marker with the time of that
// write. Before, the stop cut the refresh and the backup checked the
// marker against the write before it, took the new one for another
// writer's and failed with ErrDeltaMarkerLost, a backup that retention
// saw all along. The refresh comes at a tick just before the control
// object (beforeControl) and is held from the store's write until its
// ctx ends (as the stop ended it before) or for a few seconds, by when
// the backup has asked the refresh to stop (right after beforeControl).
func TestRunDelta_MarkerStoppedInFlight(t *testing.T) {
	major := pgtest.Versions()[len(pgtest.Versions())-1]
	ctx := testContext(t)
	c := pgtest.Start(t, pgtest.Options{Major: major, DataChecksums: true})
	c.Exec(t, "create table t as select g as i from generate_series(1, 1000) g")
	a := encryptedArchive(t, compress.Zstd)
	opts := deltaOptions(t, c, a)
	s := markerHeld{Store: a.Store, armed: &atomic.Bool{}, landed: make(chan struct{}), hold: 3 * time.Second}
	ba := *a
	ba.Store = s
	opts.Archive = &ba
	tick := make(chan time.Time)
	opts.deltaMarkerTick = tick
	opts.beforeControl = func() {
		s.armed.Store(true)
		select {
		case tick <- time.Now():
		case <-ctx.Done():
			t.Error("the marker's refresh did not take the tick")
			return
		}
		select {
		case <-s.landed:
		case <-ctx.Done():
			t.Error("the marker was not stored again at the tick")
		}
	}
	b, err := Run(ctx, opts)
	if err != nil {
		t.Fatalf("backup stopped with its marker's refresh in flight: %v", err)
	}
	backups, err := a.ListBackups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(backups) != 1 || backups[0].Name != b.Name {
		t.Errorf("backups listed %+v, want %s", backups, b.Name)
	}
	if _, err := a.Store.Stat(ctx, a.Layout.DeltaRunningKey(b.Name)); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("marker of the completed backup: %v, want it deleted", err)
	}
}
