package archive

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/hoardbackup/hoard/wal"
)

// treeOf describes every entry under dir without following links: mode,
// and the size and SHA-256 of a file or the target of a link.
func treeOf(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		desc := fi.Mode().String()
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %x", sha256.Sum256(b))
		} else if fi.Mode()&fs.ModeSymlink != 0 {
			l, _ := os.Readlink(p)
			desc += " -> " + l
		}
		out[p] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// outsideVictims makes a directory of files a spool's names could hit:
// segments, want, want.new, lock.
func outsideVictims(t *testing.T, seg string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "outside")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{seg, "000000010000000000000000", spoolWantFile, spoolWantFile + ".new", spoolLockFile} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("keep "+n+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestSpool_LinkedSpool: a pg_wal/hoard-prefetch that is a link to a
// directory elsewhere (as a restored backup could have left it) is not
// used: wal-fetch still delivers from storage, the prefetch worker refuses
// it, and nothing in the linked directory is read, written or removed.
func TestSpool_LinkedSpool(t *testing.T) {
	ctx := context.Background()
	a := walTestArchive(t, false)
	segs := pushSegments(t, a, 1, 3)
	name := func(no uint64) string { return wal.Segment{Timeline: 1, No: no}.Name(testSegSize) }
	outside := outsideVictims(t, name(1))
	before := treeOf(t, outside)
	pgwal := t.TempDir()
	dest := filepath.Join(pgwal, "RECOVERYXLOG")
	if err := os.Symlink(outside, SpoolDir(dest)); err != nil {
		t.Fatal(err)
	}
	for no := uint64(1); no <= 3; no++ {
		if err := a.FetchWAL(ctx, name(no), dest, FetchOptions{Spool: SpoolDir(dest)}); err != nil {
			t.Fatalf("fetch %s: %v", name(no), err)
		}
		checkFile(t, dest, segs[name(no)])
	}
	if err := a.FetchWAL(ctx, name(9), dest, FetchOptions{Spool: SpoolDir(dest)}); err == nil {
		t.Fatal("fetched a segment that is not archived")
	}
	if _, err := a.PrefetchWAL(ctx, SpoolDir(dest), PrefetchOptions{Count: 2}); err == nil {
		t.Error("the prefetch worker used a linked spool")
	}
	if PrefetchRunning(SpoolDir(dest)) {
		t.Error("a linked spool counts as running")
	}
	if diff := cmp.Diff(before, treeOf(t, outside)); diff != "" {
		t.Errorf("outside the spool (-before +after):\n%s", diff)
	}
}

// TestSpool_LinksInSpool: links planted inside the spool, to files
// elsewhere, are never followed: want and want.new are replaced, a linked
// segment is dropped (the link, not its target), and a linked lock stops
// the worker.
func TestSpool_LinksInSpool(t *testing.T) {
	ctx := context.Background()
	a := walTestArchive(t, false)
	segs := pushSegments(t, a, 1, 4)
	name := func(no uint64) string { return wal.Segment{Timeline: 1, No: no}.Name(testSegSize) }
	outside := outsideVictims(t, name(2))
	before := treeOf(t, outside)
	pgwal := t.TempDir()
	dest := filepath.Join(pgwal, "RECOVERYXLOG")
	spoolDir := SpoolDir(dest)
	if err := os.Mkdir(spoolDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{name(2), "000000010000000000000000", spoolWantFile, spoolWantFile + ".new", spoolLockFile} {
		if err := os.Symlink(filepath.Join(outside, n), filepath.Join(spoolDir, n)); err != nil {
			t.Fatal(err)
		}
	}
	o := FetchOptions{Spool: spoolDir}
	for no := uint64(1); no <= 2; no++ {
		if err := a.FetchWAL(ctx, name(no), dest, o); err != nil {
			t.Fatalf("fetch %s: %v", name(no), err)
		}
		checkFile(t, dest, segs[name(no)])
	}
	if fi, err := os.Lstat(filepath.Join(spoolDir, spoolWantFile)); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("want is not a regular file: %v %v", fi, err)
	}
	if _, err := os.Lstat(filepath.Join(spoolDir, name(2))); err == nil {
		t.Error("the linked segment is still in the spool")
	}
	if _, err := a.PrefetchWAL(ctx, spoolDir, PrefetchOptions{Count: 2}); err == nil {
		t.Error("the prefetch worker locked through a link")
	}
	if diff := cmp.Diff(before, treeOf(t, outside)); diff != "" {
		t.Errorf("outside the spool (-before +after):\n%s", diff)
	}
}
