package archive

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// TestArchive_UpgradedHistory: where a cluster of a new system identifier
// is on the old cluster's timeline in the same site, the history files
// bound to the old system at or below the new cluster's timeline are treated as absent
// by wal-fetch (storage.ErrNotFound, nothing delivered, a warning naming
// the object and both systems) and by CheckLost's path (the
// timeline alone, as PostgreSQL assumes); one above it is still refused
// where the new system has WAL on its timeline or later, and so is every
// one where the reader's timeline is not known. The same
// in a site without keys, by the system the files' metadata claims.
func TestArchive_UpgradedHistory(t *testing.T) {
	testio.WithAndWithoutKeys(t, testUpgradedHistory)
}

func testUpgradedHistory(t *testing.T, keys bool) {
	ctx := context.Background()
	const sysOld, sysNew = 7000000000000000001, 7000000000000000002
	two, three := "00000002.history", "00000003.history"
	a := walTestArchive(t, keys)
	a.Codec.RequireEncryption = keys
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
	// Above the reader's timeline where the archive holds the new
	// system's WAL from there on (historyabove.go), or where the
	// timeline is not known: refused.
	pushSegmentOf(t, a, "000000030000000000000007", sysNew)
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
		want := []string{a.Layout.WALKey(c.name), "7000000000000000001", "7000000000000000002",
			"after pg_upgrade", "starts it at timeline 1", "backup_sites.<site>.prefix", "sharing this key pair"}
		if !keys {
			want[len(want)-1] = "by its metadata's claim (not authenticated: this site has no keys)"
		}
		for _, w := range want {
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
// of the node's own system. Where the site has no keys, the same by the
// system the files' metadata claims, and none where they claim none
// (PGHoard's, an older hoard's: unclaimed).
func TestArchive_OtherSystemHistories(t *testing.T) {
	ctx := context.Background()
	const sysOld, sysNew = 7000000000000000001, 7000000000000000002
	body := "1\t0/5000000\tno recovery target specified\n"
	for _, site := range []struct{ keys, unclaimed bool }{{true, false}, {false, false}, {false, true}} {
		keys := site.keys
		a := walTestArchive(t, keys)
		a.Codec.RequireEncryption = keys
		for _, name := range []string{"00000002.history", "00000003.history"} {
			if err := pushHistory(t, a, name, body, sysOld); err != nil {
				t.Fatal(err)
			}
			if site.unclaimed {
				stripClaim(t, a, name)
			}
		}
		for _, c := range []struct {
			system uint64
			above  uint32
			want   []uint32
		}{{sysNew, 1, []uint32{2, 3}}, {sysNew, 2, []uint32{3}}, {sysNew, 3, nil}, {sysOld, 1, nil}} {
			if site.unclaimed {
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
					t.Errorf("%+v: %v: system %s for %d, want %d for %d", site, o, o.System, o.Want, uint64(sysOld), c.system)
				}
			}
			if !slices.Equal(tlis, c.want) {
				t.Errorf("%+v: OtherSystemHistories(%d, above %d) = timelines %v, want %v", site, c.system, c.above, tlis, c.want)
			}
		}
	}
}

// TestArchive_PushHistoryConflict: after a pg_upgrade into the same site,
// the upgraded cluster's first failover pushes its own 00000002.history
// where the old cluster's sits. The push is refused as before
// (ErrWALConflict, the stored file unchanged), and the refusal says why
// and what to do: another system's history file, naming both systems,
// pg_upgrade and the prefix to set, in a site with keys by the file's
// binding, without by its metadata's claim (saying it is one); without
// keys and a stored file claiming no system (an older hoard's),
// pg_upgrade as the likely cause. A conflict with the cluster's own
// history file does not blame another system.
func TestArchive_PushHistoryConflict(t *testing.T) {
	ctx := context.Background()
	const sysOld, sysNew = 7000000000000000001, 7000000000000000002
	const name = "00000002.history"
	oldBody := "1\t0/5000000\tno recovery target specified\n"
	newBody := "1\t0/B000060\tno recovery target specified\n"
	for _, site := range []struct{ keys, unclaimed bool }{{true, false}, {false, false}, {false, true}} {
		keys := site.keys
		a := walTestArchive(t, keys)
		a.Codec.RequireEncryption = keys
		if err := pushHistory(t, a, name, oldBody, sysOld); err != nil {
			t.Fatal(err)
		}
		if site.unclaimed {
			stripClaim(t, a, name)
		}
		err := pushHistory(t, a, name, newBody, sysNew)
		if !errors.Is(err, ErrWALConflict) {
			t.Fatalf("%+v: push of another system's %s over the old one's: %v; want ErrWALConflict", site, name, err)
		}
		want := []string{a.Layout.WALKey(name), "pg_upgrade", "backup_sites.<site>.prefix", "never replaces"}
		if !site.unclaimed {
			want = append(want, "7000000000000000001", "7000000000000000002", "another cluster's history file holds")
		}
		if !keys && !site.unclaimed {
			want = append(want, "by its metadata's claim (not authenticated: this site has no keys)")
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: refusal %q does not say %s", site, err, w)
			}
		}
		fetched := filepath.Join(t.TempDir(), "h")
		if err := a.FetchWAL(ctx, name, fetched, FetchOptions{SystemID: sysOld, Timeline: 2}); err != nil {
			t.Fatalf("%+v: fetch %s for the old system after the refused push: %v", site, name, err)
		}
		if got, err := os.ReadFile(fetched); err != nil || string(got) != oldBody {
			t.Errorf("%+v: %s after the refused push holds %q (%v), want the old system's %q", site, name, got, err, oldBody)
		}
		if !site.unclaimed {
			err := pushHistory(t, a, name, newBody, sysOld)
			if !errors.Is(err, ErrWALConflict) || strings.Contains(err.Error(), "another cluster's history file holds") ||
				strings.Contains(err.Error(), "pg_upgrade") {
				t.Errorf("%+v: push of other bytes of the cluster's own %s: %v; want ErrWALConflict not naming another system", site, name, err)
			}
		}
	}
}

// stripClaim rewrites history file name of a, a site without keys,
// without the system its metadata claims: as PGHoard or an older hoard
// stored it.
func stripClaim(t *testing.T, a *Archive, name string) {
	t.Helper()
	key := a.Layout.WALKey(name)
	md := unsignedMetadata(t, a, key)
	delete(md, MetaSystemID)
	moveObject(t, a, key, key, md)
}
