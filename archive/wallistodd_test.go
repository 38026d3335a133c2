package archive

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
)

// TestArchive_RetentionOddWAL: in local storage, the file of a WAL
// segment that retention would delete is replaced by a FIFO, its
// .metadata sidecar kept (someone who can write the storage directory).
// The local store lists it as a damaged object; the WAL listing passes
// it over, as no read returns it, so retention neither plans nor tries
// to delete it, and leaves it and its sidecar in place, while it deletes
// the other WAL before the kept backup's start.
func TestArchive_RetentionOddWAL(t *testing.T) {
	ctx := context.Background()
	const seg = "000000010000000000000001"
	a, dir, _, now := twoBackups(t)
	p := filepath.Join(dir, filepath.FromSlash(a.Layout.WALKey(seg)))
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	files, err := a.ListWAL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(files, func(f WALFile) bool { return f.Name == seg }) {
		t.Errorf("ListWAL lists %s, a FIFO", seg)
	}
	plan, err := a.PlanRetention(ctx, RetentionPolicy{MaxCount: 1}, now)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, w := range plan.WAL {
		names = append(names, w.Name)
	}
	if want := []string{"000000010000000000000002", "000000010000000000000003"}; !slices.Equal(names, want) {
		t.Errorf("plan deletes WAL %q, want %q", names, want)
	}
	if _, err := a.ApplyRetention(ctx, plan, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{p, p + ".metadata"} {
		if _, err := os.Lstat(n); err != nil {
			t.Errorf("%s after retention: %v, want it kept", n, err)
		}
	}
}

// TestArchive_ListStoredWALDamaged: the WAL listing holds a segment whose
// local file is a FIFO (its sidecar kept) in Damaged, with the store's
// words, and not in Segments. Across moved_from sites it is there only
// where wal-fetch would read it first: a damaged entry in the site ends
// wal-fetch there (it does not look further), so it counts over a
// readable copy in the old site; one in the old site behind a readable
// copy in the site does not.
func TestArchive_ListStoredWALDamaged(t *testing.T) {
	ctx := context.Background()
	const first, second = "000000010000000000000001", "000000010000000000000002"
	newDir, oldDir := t.TempDir(), t.TempDir()
	a := localArchive(t, newDir, "new", &Codec{})
	old := localArchive(t, oldDir, "old", &Codec{})
	a.MovedFrom = []*Archive{old}
	putWAL(t, a, first, second)
	putWAL(t, old, first, second)
	fifo := func(dir string, s *Archive, name string) {
		p := filepath.Join(dir, filepath.FromSlash(s.Layout.WALKey(name)))
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fifo(newDir, a, first)
	fifo(oldDir, old, second)
	l, err := a.ListStoredWAL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := l.Damaged[first]; !ok || d.Archive != a || d.Err == nil || !strings.Contains(d.Err.Error(), "is a FIFO") {
		t.Errorf("Damaged[%s] = %+v, want the new site's FIFO", first, d)
	}
	if _, ok := l.Damaged[second]; ok || len(l.Damaged) != 1 {
		t.Errorf("Damaged = %+v, want %s alone (the new site's copy of %s is read first)", l.Damaged, first, second)
	}
	if f, ok := l.Segments[first]; !ok || f.Archive != old {
		t.Errorf("Segments[%s] = %+v, want the old site's copy", first, f)
	}
}
