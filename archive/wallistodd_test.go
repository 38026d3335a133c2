package archive

import (
	"context"
	"os"
	"path/filepath"
	"slices"
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
