package archive

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
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
			continue
		}
		// The refusal names the likely cause and the fix.
		for _, w := range []string{a.Layout.WALKey(c.name), "7000000000000000001", "7000000000000000002",
			"after pg_upgrade", "starts it at timeline 1", "backup_sites.<site>.prefix", "sharing this key pair"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("refusal %q does not name %s", err, w)
			}
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

// TestArchive_OtherSystemHistories: hoard check's question, from the
// history files' metadata: those bound to another system above the
// node's timeline, by timeline (the pg_upgrade shape: the old cluster's
// 2 and 3 above the new cluster's timeline 1); none at or below it, none
// of the node's own system, none where the site has no keys.
func TestArchive_OtherSystemHistories(t *testing.T) {
	ctx := context.Background()
	const sysOld, sysNew = 7000000000000000001, 7000000000000000002
	body := "1\t0/5000000\tno recovery target specified\n"
	for _, keys := range []bool{true, false} {
		a := walTestArchive(t, keys)
		a.Codec.RequireEncryption = keys
		for _, name := range []string{"00000002.history", "00000003.history"} {
			if err := pushHistory(t, a, name, body, sysOld); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range []struct {
			system uint64
			above  uint32
			want   []uint32
		}{{sysNew, 1, []uint32{2, 3}}, {sysNew, 2, []uint32{3}}, {sysNew, 3, nil}, {sysOld, 1, nil}} {
			if !keys {
				c.want = nil
			}
			got, err := a.OtherSystemHistories(ctx, c.system, c.above)
			if err != nil {
				t.Fatal(err)
			}
			var tlis []uint32
			for _, o := range got {
				tlis = append(tlis, o.Timeline)
				if o.System != "7000000000000000001" || o.Want != c.system {
					t.Errorf("keys %v: %v: system %s for %d, want %d for %d", keys, o, o.System, o.Want, uint64(sysOld), c.system)
				}
			}
			if !slices.Equal(tlis, c.want) {
				t.Errorf("keys %v: OtherSystemHistories(%d, above %d) = timelines %v, want %v", keys, c.system, c.above, tlis, c.want)
			}
		}
	}
}

// TestArchive_PushHistoryConflict: after a pg_upgrade into the same site,
// the upgraded cluster's first failover pushes its own 00000002.history
// where the old cluster's sits. The push is refused as before
// (ErrWALConflict, the stored file unchanged), and the refusal says why
// and what to do: in a site with keys, another system's history file,
// naming both systems, pg_upgrade and the prefix to set; without keys,
// pg_upgrade as the likely cause. A conflict with the cluster's own
// history file does not blame another system.
func TestArchive_PushHistoryConflict(t *testing.T) {
	ctx := context.Background()
	const sysOld, sysNew = 7000000000000000001, 7000000000000000002
	const name = "00000002.history"
	oldBody := "1\t0/5000000\tno recovery target specified\n"
	newBody := "1\t0/B000060\tno recovery target specified\n"
	for _, keys := range []bool{true, false} {
		a := walTestArchive(t, keys)
		a.Codec.RequireEncryption = keys
		if err := pushHistory(t, a, name, oldBody, sysOld); err != nil {
			t.Fatal(err)
		}
		err := pushHistory(t, a, name, newBody, sysNew)
		if !errors.Is(err, ErrWALConflict) {
			t.Fatalf("keys %v: push of another system's %s over the old one's: %v; want ErrWALConflict", keys, name, err)
		}
		want := []string{a.Layout.WALKey(name), "pg_upgrade", "backup_sites.<site>.prefix", "never replaces"}
		if keys {
			want = append(want, "7000000000000000001", "7000000000000000002", "another cluster's history file holds")
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("keys %v: refusal %q does not say %s", keys, err, w)
			}
		}
		fetched := filepath.Join(t.TempDir(), "h")
		if err := a.FetchWAL(ctx, name, fetched, FetchOptions{SystemID: sysOld, Timeline: 2}); err != nil {
			t.Fatalf("keys %v: fetch %s for the old system after the refused push: %v", keys, name, err)
		}
		if got, err := os.ReadFile(fetched); err != nil || string(got) != oldBody {
			t.Errorf("keys %v: %s after the refused push holds %q (%v), want the old system's %q", keys, name, got, err, oldBody)
		}
		if keys {
			err := pushHistory(t, a, name, newBody, sysOld)
			if !errors.Is(err, ErrWALConflict) || strings.Contains(err.Error(), "another cluster's history file holds") {
				t.Errorf("push of other bytes of the cluster's own %s: %v; want ErrWALConflict not naming another system", name, err)
			}
		}
	}
}
