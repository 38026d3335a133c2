package archive

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
	"github.com/hoardbackup/hoard/wal"
)

// Answers of fetchAnswer, as wal-fetch exits.
const (
	answerDelivered = 0
	answerMissing   = 1
	answerLost      = 255
)

// fetchAnswer answers a request for name as wal-fetch with
// --archived-through at does, for the data directory dataDir: FetchWAL,
// and on a miss CheckLost (dataDir has no pg_control).
func fetchAnswer(t *testing.T, a *Archive, name, dataDir string, at ArchivedThrough) int {
	t.Helper()
	ctx := context.Background()
	err := a.FetchWAL(ctx, name, filepath.Join(dataDir, "pg_wal", "RECOVERYXLOG"), FetchOptions{})
	if err == nil {
		return answerDelivered
	}
	if !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("fetch %s: %v", name, err)
	}
	if err := a.CheckLost(ctx, name, dataDir, ClusterControl{}, at); err != nil {
		if !errors.Is(err, ErrWALLost) {
			t.Logf("%s: %v", name, err)
		}
		return answerLost
	}
	return answerMissing
}

// recoveryDir makes a data directory with an empty pg_wal and the signal
// files named.
func recoveryDir(t *testing.T, signals ...string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "pg_wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, s := range signals {
		if err := os.WriteFile(filepath.Join(dir, s), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// tl names segment no of timeline tli (1 MiB segments).
func tl(tli uint32, no uint64) string { return wal.Segment{Timeline: tli, No: no}.Name(testSegSize) }

// The archive of a cluster that switched to timeline 2 in the middle of
// segment 7 (stored on both timelines) and to timeline 3 at the start of
// segment 10; a restore checked it through segment 11 of timeline 3.
// Which requests stop recovery (255), which are "not archived" (1)?
func TestArchive_CheckLost(t *testing.T) {
	ctx := context.Background()
	stored := []string{tl(1, 3), tl(1, 4), tl(1, 5), tl(1, 6), tl(1, 7), tl(2, 7), tl(2, 8), tl(2, 9), tl(3, 10), tl(3, 11)}
	histories := map[string]string{
		"00000002.history": "1\t0/780000\tno recovery target specified\n",
		"00000003.history": "1\t0/780000\tno recovery target specified\n2\t0/A00000\tno recovery target specified\n",
	}
	at := ArchivedThrough{Last: wal.Segment{Timeline: 3, No: 11}, SegmentSize: testSegSize}
	archiveWithout := func(t *testing.T, deleted ...string) *Archive {
		a := walTestArchive(t, false)
		src := t.TempDir()
		for i, name := range stored {
			if _, err := a.PushWAL(ctx, writeWALFile(t, src, name, waltest.Segment(t, name, testSegSize, int64(i))), PushOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		for name, data := range histories {
			if _, err := a.PushWAL(ctx, writeWALFile(t, src, name, []byte(data)), PushOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		for _, name := range deleted {
			if err := a.Store.Delete(ctx, a.Layout.WALKey(name)); err != nil {
				t.Fatal(err)
			}
		}
		return a
	}
	for _, c := range []struct {
		name    string
		request string
		deleted []string
		want    int
	}{
		{"OK", tl(1, 5), nil, answerDelivered},
		{"OKHistoryProbe", "00000004.history", nil, answerMissing},
		{"OKAfterTheEnd", tl(3, 12), nil, answerMissing},
		{"OKAfterTheEndOlderTimeline", tl(1, 12), nil, answerMissing},
		{"OKNewerTimelineProbe", tl(2, 7), []string{tl(2, 7)}, answerMissing},   // timeline 1's copy is stored
		{"OKOlderTimelineMissing", tl(1, 7), []string{tl(1, 7)}, answerMissing}, // timeline 2's copy is stored
		{"OKTimelineNotBegun", tl(3, 9), nil, answerMissing},                    // timeline 3 begins at 10
		{"OKTimelineEnded", tl(1, 9), nil, answerMissing},                       // timeline 1 ends in 7
		{"OKNewerTimeline", tl(4, 11), nil, answerMissing},
		{"ErrLost", tl(1, 5), []string{tl(1, 5)}, answerLost},
		{"ErrLostLast", tl(3, 11), []string{tl(3, 11)}, answerLost},
		{"ErrLostSwitchSegmentNewer", tl(2, 7), []string{tl(1, 7), tl(2, 7)}, answerLost},
		{"ErrLostSwitchSegmentOlder", tl(1, 7), []string{tl(1, 7), tl(2, 7)}, answerLost},
		{"ErrLostTimelineStart", tl(3, 10), []string{tl(3, 10)}, answerLost},
		{"ErrLostHistory", tl(2, 8), []string{tl(2, 8), "00000003.history"}, answerLost},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := archiveWithout(t, c.deleted...)
			if got := fetchAnswer(t, a, c.request, recoveryDir(t, "recovery.signal"), at); got != c.want {
				t.Errorf("%s (deleted %v): answer %d, want %d", c.request, c.deleted, got, c.want)
			}
		})
	}

	// Only the recovery a restore set up: a standby streams what the
	// archive lacks, and a server that has promoted is past it.
	t.Run("OKStandby", func(t *testing.T) {
		a := archiveWithout(t, tl(1, 5))
		for _, signals := range [][]string{{"standby.signal"}, {"recovery.signal", "standby.signal"}, nil} {
			if got := fetchAnswer(t, a, tl(1, 5), recoveryDir(t, signals...), at); got != answerMissing {
				t.Errorf("with %v: answer %d, want %d", signals, got, answerMissing)
			}
		}
	})

	// A copy in a site it moved from is a copy.
	t.Run("OKMovedFrom", func(t *testing.T) {
		old := archiveWithout(t)
		a := archiveWithout(t, tl(1, 5), "00000003.history")
		a.MovedFrom = []*Archive{old}
		if err := a.CheckLost(ctx, tl(1, 5), recoveryDir(t, "recovery.signal"), ClusterControl{}, at); err != nil {
			t.Fatal(err)
		}
	})
}

// The archive ends in the .partial copy of segment 5, which the restore
// checked as the end of the WAL: wal-fetch delivers it for the segment;
// when it is gone too, recovery stops.
func TestArchive_CheckLost_PartialTail(t *testing.T) {
	ctx := context.Background()
	at := ArchivedThrough{Last: wal.Segment{Timeline: 1, No: 5}, SegmentSize: testSegSize}
	a := walTestArchive(t, false)
	pushSegments(t, a, 3, 4)
	partial := tl(1, 5) + wal.PartialSuffix
	if _, err := a.PushWAL(ctx, writeWALFile(t, t.TempDir(), partial, waltest.Segment(t, tl(1, 5), testSegSize, 5)[:50000]), PushOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := recoveryDir(t, "recovery.signal")
	for _, c := range []struct {
		request string
		want    int
	}{
		{tl(1, 5), answerDelivered},
		{tl(1, 6), answerMissing},
		{tl(2, 5), answerMissing},
	} {
		if got := fetchAnswer(t, a, c.request, dir, at); got != c.want {
			t.Errorf("%s: answer %d, want %d", c.request, got, c.want)
		}
	}
	if err := a.Store.Delete(ctx, a.Layout.WALKey(partial)); err != nil {
		t.Fatal(err)
	}
	if got := fetchAnswer(t, a, tl(1, 5), dir, at); got != answerLost {
		t.Errorf("%s after its .partial was deleted: answer %d, want %d", tl(1, 5), got, answerLost)
	}
	err := a.CheckLost(ctx, tl(1, 5), dir, ClusterControl{}, at)
	if !errors.Is(err, ErrWALLost) {
		t.Fatalf("err = %v, want ErrWALLost", err)
	}
	t.Log(err)
}
