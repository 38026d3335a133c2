package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/storage"
)

// TestArchive_WaitDeltaRetention: a retention marker written just before
// (or after) the backup's own makes it wait until the marker goes; one
// written more than DeltaDeleteWindow before it, left by a run that died,
// is passed over at once.
func TestArchive_WaitDeltaRetention(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := localArchive(t, dir, "site", retentionCodec(t))
	key := a.Layout.deltaRetentionDir() + "1-1"
	since, err := a.MarkDeltaRunning(ctx, "2024-01-01_10-00_0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.putMarker(ctx, key); err != nil {
		t.Fatal(err)
	}
	t.Run("Live", func(t *testing.T) {
		waits := 0
		err := a.WaitDeltaRetention(ctx, since, time.Millisecond, func(k string) {
			waits++
			if k != key {
				t.Errorf("waited for %s, want %s", k, key)
			}
			if waits == 2 {
				if err := a.Store.Delete(ctx, key); err != nil {
					t.Fatal(err)
				}
			}
		})
		if err != nil || waits != 2 {
			t.Errorf("waited %d times (want 2, until the marker went): %v", waits, err)
		}
	})
	t.Run("Stale", func(t *testing.T) {
		if _, err := a.putMarker(ctx, key); err != nil {
			t.Fatal(err)
		}
		ageKeys(a, []string{key}, since.Add(-DeltaDeleteWindow-deltaMarkerMargin-time.Second))
		err := a.WaitDeltaRetention(ctx, since, time.Millisecond, func(k string) {
			t.Fatalf("waited for %s, written long before the backup's marker", k)
		})
		if err != nil {
			t.Error(err)
		}
	})
}

// TestArchive_KeepDeltaRunning: a hoard delta backup that runs for more
// than OrphanMinAge after it stored its bundles (hashing and storing
// large files takes the rest) keeps its bundle folder from retention,
// which takes a folder of no listed backup for an orphan once nothing
// was written in it for a day and a newer backup started after it.
// KeepDeltaRunning stores the backup's marker again at each tick; the
// clock is simulated by the ticks and the store's times of the folder's
// objects (a tick every DeltaRunningRefresh from the backup's start, on
// 8 March at 11:00, to retention on 10 March at 12:00, after a full
// backup completed on 9 March). Without it the folder, bundles and
// marker, is deleted as orphaned while the backup runs.
func TestArchive_KeepDeltaRunning(t *testing.T) {
	ctx := context.Background()
	a, _, now := markedArchive(t)
	const name = "2024-03-08_11-00_0"
	if _, err := a.MarkDeltaRunning(ctx, name); err != nil {
		t.Fatal(err)
	}
	bundle := a.Layout.DeltaChunkKey(name + "/" + name + "_0")
	putMarkerKey(t, a, bundle)
	at := time.Date(2024, 3, 8, 11, 0, 0, 0, time.UTC)
	ageKeys(a, []string{a.Layout.DeltaRunningKey(name), bundle}, at)

	tick := make(chan time.Time)
	stop := make(chan struct{})
	type kept struct {
		at  time.Time
		err error
	}
	done := make(chan kept, 1)
	go func(at time.Time) {
		last, err := a.KeepDeltaRunning(ctx, name, at, tick, stop, zerolog.Nop())
		done <- kept{last, err}
	}(at)
	marker := a.Layout.DeltaRunningKey(name)
	last := at
ticks:
	for at = at.Add(DeltaRunningRefresh); at.Before(now); at = at.Add(DeltaRunningRefresh) {
		// Stored again at the simulated time of the tick.
		ageNextWrite(a, marker, at)
		tick <- at
		deadline := time.Now().Add(time.Minute)
		for {
			o, err := a.Store.Stat(ctx, marker)
			if err == nil && storedAt(o).Equal(at) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("at %s: marker %+v, %v; want it stored again within 1m", at, o, err)
				break ticks
			}
			time.Sleep(10 * time.Millisecond)
		}
		last = at
	}
	// Stopped as the backup stops it, maybe with the last tick's write
	// still in flight (its read-back): it returns that write's time.
	close(stop)
	if k := <-done; k.err != nil || !k.at.Equal(last) {
		t.Errorf("KeepDeltaRunning = %s, %v; want the last write's time %s", k.at, k.err, last)
	}

	p, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 1}, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range p.Orphans {
		if strings.Contains(o.Folder, name) {
			t.Errorf("plan deletes the running delta backup's folder %s as orphaned: %s", o.Folder, o.Reason)
		}
	}
	if _, err := a.Store.Stat(ctx, bundle); err != nil {
		t.Errorf("bundle %s: %v", bundle, err)
	}
}

// stopAtMarker calls stop once, right after the first Put of key that
// returns (AfterPut) or the first Stat of key after it (AfterStat), and
// refuses every call once ctx is done, as a network store does: the
// moment a running delta backup ends (and stops KeepDeltaRunning) while
// a refresh of its marker is in flight.
type stopAtMarker struct {
	storage.Store
	key      string
	afterPut bool // stop after the Put; else after the Stat that follows it
	put      atomic.Bool
	stopped  atomic.Bool
	stop     func()
}

func (s *stopAtMarker) Put(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.Store.Put(ctx, key, r, md)
	if err == nil && key == s.key {
		s.put.Store(true)
		if s.afterPut && s.stopped.CompareAndSwap(false, true) {
			s.stop()
		}
	}
	return err
}

func (s *stopAtMarker) Stat(ctx context.Context, key string) (storage.Object, error) {
	if err := ctx.Err(); err != nil {
		return storage.Object{}, err
	}
	o, err := s.Store.Stat(ctx, key)
	if err == nil && key == s.key && !s.afterPut && s.put.Load() && s.stopped.CompareAndSwap(false, true) {
		s.stop()
	}
	return o, err
}

// TestArchive_KeepDeltaRunningStop: KeepDeltaRunning stopped (the
// backup ended) while it stores the marker again returns the time of
// that write when the write completed: the backup's check before its
// control object (CheckDeltaRunning) compares the marker with that time,
// and a stale one makes it fail a backup whose marker retention saw all
// along, taking the write for another writer's. Stopped right after the
// Put (its read-back still to come) or right after the read-back.
func TestArchive_KeepDeltaRunningStop(t *testing.T) {
	ctx := context.Background()
	const name = "2024-03-08_11-00_0"
	for _, tc := range []struct {
		name     string
		afterPut bool
	}{{"AfterPut", true}, {"AfterStat", false}} {
		t.Run(tc.name, func(t *testing.T) {
			a := localArchive(t, t.TempDir(), "site", retentionCodec(t))
			at, err := a.MarkDeltaRunning(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond) // a later time, on any file system's clock
			key := a.Layout.DeltaRunningKey(name)
			stop := make(chan struct{})
			a.Store = &stopAtMarker{Store: a.Store, key: key, afterPut: tc.afterPut, stop: func() { close(stop) }}
			tick := make(chan time.Time, 1)
			tick <- time.Now()
			last, err := a.KeepDeltaRunning(ctx, name, at, tick, stop, zerolog.Nop())
			o, serr := a.Store.Stat(ctx, key)
			if serr != nil {
				t.Fatal(serr)
			}
			if storedAt(o).Equal(at) {
				t.Fatalf("marker still at %s: the test did not store it again", at)
			}
			if err != nil || !last.Equal(storedAt(o)) {
				t.Errorf("KeepDeltaRunning = %s, %v; want the time of the write that completed, %s (the previous one was %s)", last, err, storedAt(o), at)
			}
			if err := a.CheckDeltaRunning(ctx, name, last, time.Now()); err != nil {
				t.Errorf("the backup's check after it stopped KeepDeltaRunning: %v", err)
			}
		})
	}
}

// syncFailStore fails every Put of key as the local store fails one whose
// directory fsync failed after it renamed the new file over the key: the
// key is removed, the previous copy with it, and the error returned.
type syncFailStore struct {
	storage.Store
	key string
}

func (s syncFailStore) Put(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	if key != s.key {
		return s.Store.Put(ctx, key, r, md)
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	if err := s.Store.Delete(ctx, key); err != nil {
		return err
	}
	return fmt.Errorf("put %s: sync directory: %w", key, syscall.EIO)
}

// errPutKept is the error of keptFailStore's failed Puts.
var errPutKept = errors.New("put: service unavailable")

// keptFailStore fails every Put of key while fail is set, leaving the
// object as it was, as S3 and the other object stores leave one whose
// new PUT failed. failed receives once after each failed Put.
type keptFailStore struct {
	storage.Store
	key    string
	fail   atomic.Bool
	failed chan struct{}
}

func (s *keptFailStore) Put(ctx context.Context, key string, r io.Reader, md storage.Metadata) error {
	if key != s.key || !s.fail.Load() {
		return s.Store.Put(ctx, key, r, md)
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	s.failed <- struct{}{}
	return errPutKept
}

// TestArchive_KeepDeltaRunningLost: a running delta backup's marker that
// is not as the backup last stored it when KeepDeltaRunning comes to
// store it again (deleted or written again by someone who can write the
// store), or whose new write fails halfway (removing it, as the local
// store does when the directory fsync fails), ends KeepDeltaRunning with
// ErrDeltaMarkerLost: retention may not have seen the backup meanwhile,
// and storing the marker again would hide that. CheckDeltaRunning, the
// backup's check before it is listed, says the same. The marker as the
// backup stored it passes both.
func TestArchive_KeepDeltaRunningLost(t *testing.T) {
	ctx := context.Background()
	const name = "2024-03-08_11-00_0"
	var dir string
	setup := func(t *testing.T) (*Archive, string, time.Time) {
		dir = t.TempDir()
		a := localArchive(t, dir, "site", retentionCodec(t))
		at, err := a.MarkDeltaRunning(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.CheckDeltaRunning(ctx, name, at, time.Now()); err != nil {
			t.Fatalf("the marker as stored: %v", err)
		}
		return a, a.Layout.DeltaRunningKey(name), at
	}
	// keep runs KeepDeltaRunning for one tick and returns what it
	// returned, once it returned or the tick's write is done.
	keep := func(t *testing.T, a *Archive, at time.Time) (time.Time, error) {
		t.Helper()
		tick := make(chan time.Time, 1)
		tick <- time.Now()
		stop := make(chan struct{})
		type kept struct {
			at  time.Time
			err error
		}
		done := make(chan kept, 1)
		go func() {
			last, err := a.KeepDeltaRunning(ctx, name, at, tick, stop, zerolog.Nop())
			done <- kept{last, err}
		}()
		select {
		case k := <-done:
			return k.at, k.err
		case <-time.After(5 * time.Second):
		}
		close(stop)
		k := <-done
		return k.at, k.err
	}
	t.Run("OK", func(t *testing.T) {
		a, _, at := setup(t)
		last, err := keep(t, a, at)
		if err != nil || !last.After(at) {
			t.Fatalf("KeepDeltaRunning = %s, %v; want a write after %s", last, err, at)
		}
		if err := a.CheckDeltaRunning(ctx, name, last, time.Now()); err != nil {
			t.Errorf("the marker as stored again: %v", err)
		}
	})
	lost := []struct {
		name   string
		meddle func(t *testing.T, a *Archive, key string)
	}{
		{"ErrDeleted", func(t *testing.T, a *Archive, key string) {
			if err := a.Store.Delete(ctx, key); err != nil {
				t.Fatal(err)
			}
		}},
		{"ErrReplaced", func(t *testing.T, a *Archive, key string) {
			if _, err := a.putMarker(ctx, key); err != nil {
				t.Fatal(err)
			}
		}},
		{"ErrDeletedStoredBack", func(t *testing.T, a *Archive, key string) {
			// A hard link kept aside and linked back: the same file and
			// bytes, but the link count changed its inode change time.
			p := filepath.Join(dir, filepath.FromSlash(key))
			aside := filepath.Join(t.TempDir(), "aside")
			if err := os.Link(p, aside); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Link(aside, p); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range lost {
		t.Run(tc.name, func(t *testing.T) {
			a, key, at := setup(t)
			time.Sleep(10 * time.Millisecond) // a later time, on any file system's clock
			tc.meddle(t, a, key)
			if err := a.CheckDeltaRunning(ctx, name, at, time.Now()); !errors.Is(err, ErrDeltaMarkerLost) {
				t.Errorf("CheckDeltaRunning = %v, want ErrDeltaMarkerLost", err)
			}
			if _, err := keep(t, a, at); !errors.Is(err, ErrDeltaMarkerLost) {
				t.Errorf("KeepDeltaRunning = %v, want ErrDeltaMarkerLost", err)
			}
		})
	}
	t.Run("ErrWriteFails", func(t *testing.T) {
		a, key, at := setup(t)
		a.Store = syncFailStore{Store: a.Store, key: key}
		if _, err := keep(t, a, at); !errors.Is(err, ErrDeltaMarkerLost) || !errors.Is(err, syscall.EIO) {
			t.Errorf("KeepDeltaRunning = %v, want ErrDeltaMarkerLost and the store's EIO", err)
		}
		if err := a.CheckDeltaRunning(ctx, name, at, time.Now()); !errors.Is(err, ErrDeltaMarkerLost) {
			t.Errorf("CheckDeltaRunning after the failed write = %v, want ErrDeltaMarkerLost", err)
		}
	})
	// runKeep runs KeepDeltaRunning in the background; done receives
	// what it returned once stop (the backup's stop) ended it.
	type kept struct {
		at  time.Time
		err error
	}
	runKeep := func(t *testing.T, a *Archive, at time.Time) (tick chan time.Time, done chan kept, stop func()) {
		tick = make(chan time.Time)
		stopped := make(chan struct{})
		stop = sync.OnceFunc(func() { close(stopped) })
		t.Cleanup(stop)
		done = make(chan kept, 1)
		go func() {
			last, err := a.KeepDeltaRunning(ctx, name, at, tick, stopped, zerolog.Nop())
			done <- kept{last, err}
		}()
		return tick, done, stop
	}
	// tickFail ticks KeepDeltaRunning at now and waits for the write that
	// s fails; it fails the test if KeepDeltaRunning returned instead.
	tickFail := func(t *testing.T, tick chan time.Time, done chan kept, s *keptFailStore, now time.Time) {
		t.Helper()
		select {
		case tick <- now:
		case k := <-done:
			t.Fatalf("KeepDeltaRunning = %s, %v after a write that failed leaving the marker as stored; want it to try again", k.at, k.err)
		}
		select {
		case <-s.failed:
		case <-time.After(5 * time.Second):
			t.Fatalf("at %s: the marker was not stored again", now)
		}
	}
	// A write that fails leaving the marker as the backup stored it (S3)
	// is tried again: retention saw the marker all along. The ticks:
	// the first write fails, the second stores the marker again, the
	// third fails again (KeepDeltaRunning takes it only once done with
	// the second, and is then waiting to try again: nothing is in flight
	// when it is stopped).
	t.Run("OKWriteFailsKept", func(t *testing.T) {
		a, key, at := setup(t)
		s := &keptFailStore{Store: a.Store, key: key, failed: make(chan struct{}, 1)}
		s.fail.Store(true)
		a.Store = s
		tick, done, stop := runKeep(t, a, at)
		tickFail(t, tick, done, s, time.Now())
		s.fail.Store(false)
		select {
		case tick <- time.Now():
		case k := <-done:
			t.Fatalf("KeepDeltaRunning = %s, %v after a write that failed leaving the marker as stored; want it to try again", k.at, k.err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			o, err := a.Store.Stat(ctx, key)
			if err == nil && !storedAt(o).Equal(at) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("marker %+v, %v; want it stored again", o, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		s.fail.Store(true)
		tickFail(t, tick, done, s, time.Now())
		o, err := a.Store.Stat(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		stop()
		k := <-done
		if k.err != nil || !k.at.Equal(storedAt(o)) || !k.at.After(at) {
			t.Fatalf("KeepDeltaRunning = %s, %v; want the second write's time %s, after %s", k.at, k.err, storedAt(o), at)
		}
		if err := a.CheckDeltaRunning(ctx, name, k.at, time.Now()); err != nil {
			t.Errorf("the marker as stored again: %v", err)
		}
	})
	// Writes that keep failing, leaving the marker as stored, are tried
	// again while retention counts it: up to DeltaRunningRefresh before a
	// day after its last write (simulated times: the ticks' and the
	// store's). Then the marker may expire before it is stored again.
	t.Run("ErrWriteFailsKeptExpires", func(t *testing.T) {
		a, key, _ := setup(t)
		at := time.Date(2024, 3, 8, 11, 0, 0, 0, time.UTC)
		ageKeys(a, []string{key}, at)
		s := &keptFailStore{Store: a.Store, key: key, failed: make(chan struct{}, 1)}
		s.fail.Store(true)
		a.Store = s
		tick, done, _ := runKeep(t, a, at)
		for _, d := range []time.Duration{DeltaRunningRefresh, 2 * DeltaRunningRefresh, OrphanMinAge - DeltaRunningRefresh - 30*time.Second} {
			tickFail(t, tick, done, s, at.Add(d))
		}
		var k kept
		select {
		case k = <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("KeepDeltaRunning still runs with the marker about to expire")
		}
		if !errors.Is(k.err, ErrDeltaMarkerLost) || !errors.Is(k.err, errPutKept) || !k.at.Equal(at) {
			t.Errorf("KeepDeltaRunning = %s, %v; want %s and ErrDeltaMarkerLost with the store's error", k.at, k.err, at)
		}
		// The backup's own check says the same once the marker is older
		// than that, not before.
		if err := a.CheckDeltaRunning(ctx, name, at, at.Add(deltaRunningValid)); err != nil {
			t.Errorf("CheckDeltaRunning %s after the last write = %v, want nil", deltaRunningValid, err)
		}
		if err := a.CheckDeltaRunning(ctx, name, at, at.Add(deltaRunningValid+time.Second)); !errors.Is(err, ErrDeltaMarkerLost) {
			t.Errorf("CheckDeltaRunning %s after the last write = %v, want ErrDeltaMarkerLost", deltaRunningValid+time.Second, err)
		}
	})
}
