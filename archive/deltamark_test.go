package archive

import (
	"context"
	"testing"
	"time"
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
		setModified(t, dir, []string{key}, since.Add(-DeltaDeleteWindow-deltaMarkerMargin-time.Second))
		err := a.WaitDeltaRetention(ctx, since, time.Millisecond, func(k string) {
			t.Fatalf("waited for %s, written long before the backup's marker", k)
		})
		if err != nil {
			t.Error(err)
		}
	})
}
