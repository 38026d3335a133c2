package archive

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/storage"
)

// markedArchive stores, in a local store in dir, a full backup on 7 March
// 2024, an incremental one on it on 8 March and a full one on 9 March,
// and segments 1 to 7. now is the day after the newest.
func markedArchive(t *testing.T) (a *Archive, dir string, now time.Time) {
	t.Helper()
	dir = t.TempDir()
	a = localArchive(t, dir, "site", retentionCodec(t))
	putBackup(t, a, "2024-03-07_10-00_0", "000000010000000000000002", 2, 0)
	putBackup(t, a, "2024-03-08_10-00_0", "000000010000000000000004", 2, 0)
	setParent(t, a, "2024-03-08_10-00_0", "2024-03-07_10-00_0")
	putBackup(t, a, "2024-03-09_10-00_0", "000000010000000000000006", 2, 0)
	putWAL(t, a, segs(1, 1, 7)...)
	return a, dir, time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
}

// putMarkerKey stores an empty object under key, as a marker is stored.
func putMarkerKey(t *testing.T, a *Archive, key string) {
	t.Helper()
	md := storage.Metadata{MetaFormat: FormatIncrementalMarker}
	if _, err := a.Codec.Put(context.Background(), a.Store, key, bytes.NewReader(nil), 0, md); err != nil {
		t.Fatal(err)
	}
}

// TestArchive_PlanRetentionIncrementalMarker: retention with
// basebackup_count=1 keeps the chain of the parent a marker of an
// incremental backup in progress names (and the WAL from its start), as
// long as the marker is not stale; a stale marker is deleted, and
// markers of another shape, or naming no backup, change nothing.
func TestArchive_PlanRetentionIncrementalMarker(t *testing.T) {
	ctx := context.Background()
	policy := RetentionPolicy{MaxCount: 1}

	t.Run("OK", func(t *testing.T) {
		a, _, now := markedArchive(t)
		key, err := a.MarkIncrementalParent(ctx, "2024-03-08_10-00_0")
		if err != nil {
			t.Fatal(err)
		}
		p, err := a.PlanRetention(ctx, policy, now)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Delete) != 0 || p.WALHorizonBackup != "2024-03-07_10-00_0" || len(p.WAL) != 1 {
			t.Fatalf("plan deletes %v and %d WAL files (horizon %s), want nothing but segment 1 with %s marked", names(p.Delete), len(p.WAL), p.WALHorizonBackup, key)
		}
		for _, k := range p.Keep[:2] {
			if !strings.Contains(k.Reason, key) {
				t.Errorf("backup %s kept for %q, want the marker named", k.Backup.Name, k.Reason)
			}
		}
		for _, n := range p.Notes {
			if strings.Contains(n, incrementalMarkerFolder) {
				t.Errorf("note %q: the markers' folder is taken for a backup in progress", n)
			}
		}
		if len(p.Orphans) != 0 {
			t.Errorf("orphans %v", p.Orphans)
		}
	})

	t.Run("Stale", func(t *testing.T) {
		a, _, now := markedArchive(t)
		st := ageStore(a)
		key, err := a.MarkIncrementalParent(ctx, "2024-03-08_10-00_0")
		if err != nil {
			t.Fatal(err)
		}
		// Written before the newest backup started, more than a
		// day ago.
		st.setStoredAt([]string{key}, time.Date(2024, 3, 9, 9, 0, 0, 0, time.UTC))
		p, err := a.PlanRetention(ctx, policy, now)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(names(p.Delete), " "); got != "2024-03-07 2024-03-08" {
			t.Errorf("plan deletes %s, want both older backups: the marker is stale", got)
		}
		if len(p.Orphans) != 1 || !slices.Equal(p.Orphans[0].Keys, []string{key}) {
			t.Fatalf("orphans %+v, want the stale marker", p.Orphans)
		}
		if _, err := a.ApplyRetention(ctx, p, zerolog.Nop()); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Store.Stat(ctx, key); err == nil {
			t.Errorf("stale marker %s not deleted", key)
		}
	})

	t.Run("FutureMTime", func(t *testing.T) {
		// A marker planted with its mtime in 2099 (touch -d) on a
		// local store: its age is the ctime the store recorded,
		// which utimes cannot set.
		a, dir, _ := markedArchive(t)
		key, err := a.MarkIncrementalParent(ctx, "2024-03-08_10-00_0")
		if err != nil {
			t.Fatal(err)
		}
		setModified(t, dir, []string{key}, time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC))
		// A full backup started after the marker was written, and
		// retention runs two days later.
		newest := time.Now().UTC().Add(time.Hour)
		putBackup(t, a, newest.Format("2006-01-02_15-04")+"_0", "000000010000000000000008", 2, 0)
		p, err := a.PlanRetention(ctx, policy, newest.Add(2*OrphanMinAge))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(names(p.Delete), " "); got != "2024-03-07 2024-03-08 2024-03-09" {
			t.Errorf("plan deletes %s, want the three older backups: the marker was stored more than a day ago, whatever its mtime", got)
		}
		if len(p.Orphans) != 1 || !slices.Equal(p.Orphans[0].Keys, []string{key}) {
			t.Errorf("orphans %+v, want the stale marker", p.Orphans)
		}
	})

	t.Run("Planted", func(t *testing.T) {
		a, _, now := markedArchive(t)
		dir := a.Layout.incrementalMarkerDir()
		for _, k := range []string{dir + "2024-03-08_10-00_0", dir + "x/y/z", dir + "2024-01-01_00-00_0/1-1"} {
			putMarkerKey(t, a, k)
		}
		p, err := a.PlanRetention(ctx, policy, now)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(names(p.Delete), " "); got != "2024-03-07 2024-03-08" {
			t.Errorf("plan deletes %s, want both older backups: no marker names one", got)
		}
		if len(p.Orphans) != 0 {
			t.Errorf("orphans %+v: recent objects in the markers' folder are deleted", p.Orphans)
		}
	})

	t.Run("SinceThePlan", func(t *testing.T) {
		a, _, now := markedArchive(t)
		p, err := a.PlanRetention(ctx, policy, now)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(names(p.Delete), " "); got != "2024-03-07 2024-03-08" {
			t.Fatalf("plan deletes %s, want both older backups", got)
		}
		keep := slices.Clone(p.Keep)
		// An incremental backup chose the second as its parent before
		// the third completed, and recorded it after the plan.
		if _, err := a.MarkIncrementalParent(ctx, "2024-03-08_10-00_0"); err != nil {
			t.Fatal(err)
		}
		res, err := a.ApplyRetention(ctx, p, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		if res.Backups != 0 || res.WAL != 1 {
			t.Errorf("deleted %d backups and %d WAL files, want segment 1 only", res.Backups, res.WAL)
		}
		bs, err := a.ListBackups(ctx)
		if err != nil || len(bs) != 3 {
			t.Fatalf("backups left %d (%v), want 3", len(bs), err)
		}
		for _, n := range segs(1, 2, 7) {
			if _, err := a.Store.Stat(ctx, a.Layout.WALKey(n)); err != nil {
				t.Errorf("WAL %s: %v", n, err)
			}
		}
		if !slices.EqualFunc(keep, p.Keep, func(x, y BackupDecision) bool { return x.Backup == y.Backup }) {
			t.Error("ApplyRetention changed the caller's plan")
		}
	})
}

// markers returns the keys of the markers of incremental backups in a.
func markerKeys(t *testing.T, a *Archive) []string {
	t.Helper()
	var keys []string
	err := a.Store.List(context.Background(), a.Layout.incrementalMarkerDir(), func(o storage.Object) error {
		keys = append(keys, o.Key)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestArchive_KeepIncrementalMarker: an incremental backup that runs for
// more than OrphanMinAge keeps its parent's chain from retention.
// KeepIncrementalMarker stores a new marker at each tick and deletes the
// previous one; the clock is simulated by the ticks and by the store's
// times of the markers (a tick every IncrementalMarkerRefresh from the
// backup's start, on 8 March at 11:00, to retention on 10 March at 12:00,
// after a full backup completed on 9 March). Without the new markers,
// the first one is stale by then (TestArchive_PlanRetentionIncrementalMarker/Stale)
// and retention deletes the parent.
func TestArchive_KeepIncrementalMarker(t *testing.T) {
	ctx := context.Background()
	a, _, now := markedArchive(t)
	st := ageStore(a)
	key, err := a.MarkIncrementalParent(ctx, "2024-03-08_10-00_0")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2024, 3, 8, 11, 0, 0, 0, time.UTC)
	st.setStoredAt([]string{key}, at)

	tick := make(chan time.Time)
	kctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan string, 1)
	go func() { done <- a.KeepIncrementalMarker(kctx, key, tick, zerolog.Nop()) }()
ticks:
	for at = at.Add(IncrementalMarkerRefresh); at.Before(now); at = at.Add(IncrementalMarkerRefresh) {
		tick <- at
		// The new marker is stored before the previous one goes.
		deadline := time.Now().Add(time.Minute)
		for {
			keys := markerKeys(t, a)
			if len(keys) == 1 && keys[0] != key {
				key = keys[0]
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("at %s: markers %v, want one in place of %s within 1m", at, keys, key)
				break ticks
			}
			time.Sleep(10 * time.Millisecond)
		}
		st.setStoredAt([]string{key}, at)
	}
	cancel()
	if got := <-done; got != key {
		t.Errorf("KeepIncrementalMarker returned %s, want the last marker %s", got, key)
	}

	p, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 1}, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Delete) != 0 || len(p.Orphans) != 0 {
		t.Errorf("plan deletes %v and orphans %+v after the backup ran %s, want the parent's chain and its marker kept",
			names(p.Delete), p.Orphans, now.Sub(time.Date(2024, 3, 8, 11, 0, 0, 0, time.UTC)))
	}
}

// TestArchive_CheckIncrementalMarker: a marker still stored passes; one
// deleted is ErrIncrementalMarkerLost, naming its key.
func TestArchive_CheckIncrementalMarker(t *testing.T) {
	ctx := context.Background()
	a, _, _ := markedArchive(t)
	key, err := a.MarkIncrementalParent(ctx, "2024-03-09_10-00_0")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("OK", func(t *testing.T) {
		if err := a.CheckIncrementalMarker(ctx, key); err != nil {
			t.Errorf("marker stored: %v", err)
		}
	})
	t.Run("ErrGone", func(t *testing.T) {
		if err := a.Store.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
		err := a.CheckIncrementalMarker(ctx, key)
		if !errors.Is(err, ErrIncrementalMarkerLost) || !strings.Contains(err.Error(), key) {
			t.Errorf("marker deleted: %v, want ErrIncrementalMarkerLost naming %s", err, key)
		}
	})
}
