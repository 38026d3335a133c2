package archive

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/internal/storetest"
)

// parallelFixture is a site of three backups of 40 chunks each, 60 WAL
// segments before the newest backup and an orphaned chunk folder of 30
// objects, behind a storetest.Counter that makes each Delete take
// hold. Retention with basebackup_count 1 deletes two backups, their
// WAL and the orphans.
func parallelFixture(t *testing.T, hold time.Duration) (*Archive, *storetest.Counter, RetentionPlan) {
	t.Helper()
	a := localArchive(t, t.TempDir(), "site", retentionCodec(t))
	for _, b := range []struct {
		name, start string
		chunks      int
	}{{"2024-03-07_10-00_0", "000000010000000000000010", 40}, {"2024-03-08_10-00_0", "000000010000000000000030", 40},
		{"2024-03-08_22-00_0", "000000010000000000000040", 30}, {"2024-03-09_10-00_0", "00000001000000000000004C", 2}} {
		keys := putBackup(t, a, b.name, b.start, b.chunks, 0)
		// Each backup's objects were written ten minutes after it
		// started.
		at, _ := backupNameTime(b.name)
		ageKeys(a, keys, at.Add(10*time.Minute))
		if b.name == "2024-03-08_22-00_0" { // interrupted: no main object
			if err := a.Store.Delete(context.Background(), keys[len(keys)-1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	putWAL(t, a, segs(1, 0x10, 0x4C)...)
	c := &storetest.Counter{Store: a.Store, DeleteHold: hold}
	a.Store = c
	// Two days on: every object is older than OrphanMinAge.
	plan, err := a.PlanRetention(context.Background(), RetentionPolicy{MaxCount: 1}, time.Now().Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Delete) != 2 || len(plan.WAL) != 0x4C-0x10 || len(plan.Orphans) != 1 {
		t.Logf("plan: %s\n%q", formatPlan(plan), plan.Notes)
		t.Fatalf("plan deletes %d backups, %d WAL files, %d orphan folders; want 2, %d, 1", len(plan.Delete), len(plan.WAL), len(plan.Orphans), 0x4C-0x10)
	}
	c.Reset()
	return a, c, plan
}

// TestArchive_ApplyRetentionParallel: retention's deletes run
// RetentionDeletes at a time (each takes 20 ms here, a storage's round
// trip), and in its order all the same: a backup's main object returns
// before any of its chunks starts, every chunk of a backup returns
// before the next backup's main object starts, every backup's deletes
// before any WAL file's, every WAL file's before any orphan's. Before,
// one Delete was in flight at a time: 212 of them, 4.3 s here, minutes
// on a real site.
func TestArchive_ApplyRetentionParallel(t *testing.T) {
	a, c, plan := parallelFixture(t, 20*time.Millisecond)
	res, err := a.ApplyRetention(context.Background(), plan, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(res.Backups, res.Chunks, res.WAL, res.Orphans), fmt.Sprint(2, 80, 0x4C-0x10, 30); got != want {
		t.Errorf("deleted backups, chunks, WAL, orphans: %s, want %s", got, want)
	}
	if got, want := c.MaxDeletesInFlight(), RetentionDeletes; got != want {
		t.Errorf("%d deletes in flight at most, want %d", got, want)
	}
	// Each delete, by kind, in the order retention must keep.
	const (
		main1 = iota
		chunks1
		main2
		chunks2
		walFiles
		orphans
	)
	kind := func(key string) int {
		switch {
		case key == a.Layout.BackupKey("2024-03-07_10-00_0"):
			return main1
		case strings.Contains(key, "/2024-03-07_10-00_0/"):
			return chunks1
		case key == a.Layout.BackupKey("2024-03-08_10-00_0"):
			return main2
		case strings.Contains(key, "/2024-03-08_10-00_0/"):
			return chunks2
		case strings.HasPrefix(key, a.Layout.Dir(XLogDir)):
			return walFiles
		case strings.Contains(key, "/2024-03-08_22-00_0/"):
			return orphans
		}
		t.Fatalf("retention deleted %s", key)
		return -1
	}
	ds := c.Deletes()
	if got, want := len(ds), 2+80+0x4C-0x10+30; got != want {
		t.Errorf("%d deletes, want %d", got, want)
	}
	for _, d := range ds {
		for _, e := range ds {
			if kind(e.Key) < kind(d.Key) && e.End > d.Start {
				t.Fatalf("%s started (step %d) before %s returned (step %d)", d.Key, d.Start, e.Key, e.End)
			}
		}
	}
}

// TestArchive_ApplyRetentionParallelFails: a delete that fails stops the
// run as it did one delete at a time: no delete starts after it, the
// error names its key, and the step after it (here the WAL, after the
// chunks of the first backup) does not start at all. Every backup still
// listed has all its chunks, and the next run finishes the job.
func TestArchive_ApplyRetentionParallelFails(t *testing.T) {
	a, c, plan := parallelFixture(t, time.Millisecond)
	fs := &failingStore{Store: c, allowed: 20}
	cut := *a
	cut.Store = fs
	_, err := cut.ApplyRetention(context.Background(), plan, zerolog.Nop())
	if !errors.Is(err, errInjected) || !strings.Contains(err.Error(), "delete chunk site/basebackup_chunk/2024-03-07_10-00_0/") {
		t.Fatalf("retention with a delete failing after 20: %v, want the injected error naming a chunk of the first backup", err)
	}
	ds := c.Deletes()
	if len(ds) != 20 {
		t.Errorf("%d deletes reached the store, want the 20 allowed", len(ds))
	}
	for _, d := range ds {
		if !strings.Contains(d.Key, "2024-03-07_10-00_0") {
			t.Errorf("%s deleted after a delete of the first backup's chunks failed", d.Key)
		}
	}
	ctx := context.Background()
	bs, err := a.ListBackups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bs {
		ctrl, err := a.ReadBackupControl(ctx, b, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, ch := range ctrl.Manifest.Chunks {
			checkIntact(t, a, []string{a.Layout.ChunkKey(ch.ChunkFilename)})
		}
	}
	if len(bs) != 2 {
		t.Errorf("%d backups listed after the failure, want 2 (the first one deleted)", len(bs))
	}
	plan, err = a.PlanRetention(ctx, RetentionPolicy{MaxCount: 1}, time.Now().Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.ApplyRetention(ctx, plan, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	keys := storeKeys(t, a.Store)
	if got, want := len(keys), 2+1+1; got != want { // the newest backup's chunks and main object, its segment
		t.Errorf("after the second run, %d objects: %v, want %d", got, keys, want)
	}
}
