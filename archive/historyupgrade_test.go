package archive

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/storage"
)

// TestArchive_UpgradedHistory: where a cluster of a new system identifier
// is on the old cluster's timeline in the same site, the history files
// bound to the old system at or below the new cluster's timeline are treated as absent
// by wal-fetch (storage.ErrNotFound, nothing delivered, a warning naming
// the object and both systems) and by CheckLost's path (the
// timeline alone, as PostgreSQL assumes); one above it is still refused,
// and so is every one where the reader's timeline is not known.
func TestArchive_UpgradedHistory(t *testing.T) {
	ctx := context.Background()
	const sysOld, sysNew = 7000000000000000001, 7000000000000000002
	two, three := "00000002.history", "00000003.history"
	a := walTestArchive(t, true)
	a.Codec.RequireEncryption = true
	if err := pushHistory(t, a, two, "1\t0/5000000\tno recovery target specified\n", sysOld); err != nil {
		t.Fatal(err)
	}
	if err := pushHistory(t, a, three, "1\t0/5000000\tno recovery target specified\n2\t0/8000000\tno recovery target specified\n", sysOld); err != nil {
		t.Fatal(err)
	}
	fetch := func(name string, tli uint32) (string, error) {
		dest := filepath.Join(t.TempDir(), "RECOVERYHISTORY")
		err := a.FetchWAL(ctx, name, dest, FetchOptions{SystemID: sysNew, Timeline: tli})
		return dest, err
	}
	for _, c := range []struct {
		name string
		tli  uint32
	}{{two, 2}, {two, 3}, {three, 3}, {three, 7}} {
		dest, err := fetch(c.name, c.tli)
		ig, ok := errors.AsType[*IgnoredHistoryError](err)
		if !ok || !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("fetch %s on timeline %d for another system: %v; want it treated as absent", c.name, c.tli, err)
		}
		for _, w := range []string{a.Layout.WALKey(c.name), "7000000000000000001", "7000000000000000002", "pg_resetwal"} {
			if !strings.Contains(ig.Error(), w) {
				t.Errorf("warning %q does not name %s", ig, w)
			}
		}
		if _, err := os.Lstat(dest); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("fetch %s treated as absent left %s: %v", c.name, dest, err)
		}
	}
	// Above the reader's timeline, or where it is not known: refused.
	for _, c := range []struct {
		name string
		tli  uint32
	}{{three, 2}, {two, 0}, {three, 0}} {
		_, err := fetch(c.name, c.tli)
		if !errors.Is(err, ErrOtherSystem) || errors.Is(err, storage.ErrNotFound) {
			t.Errorf("fetch %s on timeline %d for another system: %v; want it refused (ErrOtherSystem)", c.name, c.tli, err)
		}
	}
	// The old system still reads its own.
	if err := a.FetchWAL(ctx, three, filepath.Join(t.TempDir(), "h"), FetchOptions{SystemID: sysOld, Timeline: 3}); err != nil {
		t.Errorf("fetch %s for its own system: %v", three, err)
	}
	// CheckLost's path: the timeline alone at or below the cluster's,
	// refused above it.
	if p, err := a.timelinePath(ctx, 3, sysNew, 3); err != nil || len(p) != 1 || p[0].Timeline != 3 {
		t.Errorf("timelinePath(3) on timeline 3 for the new system: %v, %v; want timeline 3 alone", p, err)
	}
	if _, err := a.timelinePath(ctx, 3, sysNew, 2); !errors.Is(err, ErrOtherSystem) {
		t.Errorf("timelinePath(3) on timeline 2 for the new system: %v; want ErrOtherSystem", err)
	}
}
