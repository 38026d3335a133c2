package archive

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
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
	kctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.KeepDeltaRunning(kctx, name, tick, zerolog.Nop())
	}()
ticks:
	for at = at.Add(DeltaRunningRefresh); at.Before(now); at = at.Add(DeltaRunningRefresh) {
		tick <- at
		// Stored again: the store's time moved past the simulated one
		// of the previous tick.
		deadline := time.Now().Add(time.Minute)
		for {
			o, err := a.Store.Stat(ctx, a.Layout.DeltaRunningKey(name))
			if err == nil && storedAt(o).After(now) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("at %s: marker %+v, %v; want it stored again within 1m", at, o, err)
				break ticks
			}
			time.Sleep(10 * time.Millisecond)
		}
		ageKeys(a, []string{a.Layout.DeltaRunningKey(name)}, at)
	}
	cancel()
	<-done

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
