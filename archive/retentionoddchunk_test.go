package archive

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestArchive_RetentionOddChunk: in local storage, a chunk of the oldest
// of three backups is replaced by a FIFO, its .metadata sidecar kept
// (someone who can write the storage directory, a mistake by hand). The
// policy keeps one backup. Retention used to stop at the FIFO, having
// deleted the backup's main object: the middle backup and the WAL
// stayed for that run, and from the next on the folder, an orphan, failed
// every run at the same place, before the orphaned folders after it and
// the delta objects. Now it deletes the backup but the FIFO (and its
// sidecar), goes on with the rest of the plan (the middle backup, the
// WAL, an orphaned folder after the FIFO's), and fails naming the FIFO's
// path and saying to remove it by hand; once that is done the next run
// succeeds and deletes what is left of the folder.
func TestArchive_RetentionOddChunk(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := localArchive(t, dir, "site", retentionCodec(t))
	const odd, mid, newest = "2024-03-05_10-00_0", "2024-03-07_10-00_0", "2024-03-09_10-00_0"
	oddKeys := putBackup(t, a, odd, "000000010000000000000002", 2, 0)
	midKeys := putBackup(t, a, mid, "000000010000000000000004", 2, 0)
	newKeys := putBackup(t, a, newest, "000000010000000000000006", 2, 0)
	ageKeys(a, oddKeys, time.Date(2024, 3, 5, 10, 10, 0, 0, time.UTC))
	ageKeys(a, midKeys, time.Date(2024, 3, 7, 10, 10, 0, 0, time.UTC))
	walKeys := putWAL(t, a, segs(1, 1, 7)...)
	now := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	fifo := filepath.Join(dir, filepath.FromSlash(oddKeys[0]))
	if err := os.Remove(fifo); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// After the first run, an interrupted backup's folder, listed after
	// the FIFO's.
	var orphan []string

	want := append(append(slices.Clone(newKeys), walKeys[5:]...), oddKeys[0])
	slices.Sort(want)
	for run := 1; run <= 2; run++ {
		plan, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 1}, now)
		if err != nil {
			t.Fatalf("run %d: plan: %v", run, err)
		}
		// From the second run on the folder is an orphan: the plan,
		// from its listing, names the FIFO it will leave.
		if notes := strings.Join(plan.Notes, "\n"); run == 2 && (!strings.Contains(notes, fifo) || !strings.Contains(notes, "is a FIFO")) {
			t.Errorf("run %d: plan notes %q do not name %s", run, plan.Notes, fifo)
		}
		_, err = a.ApplyRetention(ctx, plan, zerolog.Nop())
		if err == nil || !strings.Contains(err.Error(), fifo) || !strings.Contains(err.Error(), "FIFO") ||
			!strings.Contains(err.Error(), "remove it and its .metadata sidecar by hand") {
			t.Errorf("run %d: retention's error %v, want one naming %s and saying to remove it by hand", run, err, fifo)
		}
		if got := storeKeys(t, a.Store); !slices.Equal(got, want) {
			t.Errorf("run %d: objects left %q\nwant %q", run, got, want)
		}
		for _, p := range []string{fifo, fifo + ".metadata"} {
			if fi, err := os.Lstat(p); err != nil || p == fifo && fi.Mode()&os.ModeNamedPipe == 0 {
				t.Errorf("run %d: %s: %v, want it kept as it was", run, p, err)
			}
		}
		if run == 1 {
			orphan = putBackup(t, a, "2024-03-06_10-00_0", "000000010000000000000003", 1, 0)
			ageKeys(a, orphan, time.Date(2024, 3, 6, 10, 10, 0, 0, time.UTC))
			if err := a.Store.Delete(ctx, orphan[len(orphan)-1]); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Removed by hand, as the error says: the next run succeeds and
	// deletes what is left.
	for _, p := range []string{fifo, fifo + ".metadata"} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	plan, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 1}, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.ApplyRetention(ctx, plan, zerolog.Nop()); err != nil {
		t.Fatalf("retention after the FIFO was removed: %v", err)
	}
	want = slices.DeleteFunc(want, func(k string) bool { return k == oddKeys[0] })
	if got := storeKeys(t, a.Store); !slices.Equal(got, want) {
		t.Errorf("objects left %q\nwant %q", got, want)
	}
}
