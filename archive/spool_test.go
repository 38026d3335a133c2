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

	"github.com/hoardbackup/hoard/internal/storetest"
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

// spoolFixture is an archive holding segments 1..pushed of timeline 1,
// the path of a RECOVERYXLOG in a fresh pg_wal, and a directory of
// outsideVictims that the spool's links point at and that must stay as
// they were.
type spoolFixture struct {
	a       *Archive
	segs    map[string][]byte
	dest    string
	outside string
	before  map[string]string
}

func newSpoolFixture(t *testing.T, pushed, victim uint64) *spoolFixture {
	t.Helper()
	f := &spoolFixture{a: walTestArchive(t, false)}
	f.segs = pushSegments(t, f.a, 1, pushed)
	f.outside = outsideVictims(t, segName(victim))
	f.before = treeOf(t, f.outside)
	f.dest = filepath.Join(t.TempDir(), "RECOVERYXLOG")
	return f
}

// fetch fetches segments from..to to dest with o and checks each.
func (f *spoolFixture) fetch(t *testing.T, from, to uint64, o FetchOptions) {
	t.Helper()
	for no := from; no <= to; no++ {
		if err := f.a.FetchWAL(context.Background(), segName(no), f.dest, o); err != nil {
			t.Fatalf("fetch %s: %v", segName(no), err)
		}
		checkFile(t, f.dest, f.segs[segName(no)])
	}
}

// checkOutside checks that nothing outside the spool changed.
func (f *spoolFixture) checkOutside(t *testing.T) {
	t.Helper()
	if diff := cmp.Diff(f.before, treeOf(t, f.outside)); diff != "" {
		t.Errorf("outside the spool (-before +after):\n%s", diff)
	}
}

// TestSpool_LinkedSpool: a pg_wal/hoard-prefetch that is a link to a
// directory elsewhere (as a restored backup could have left it) is not
// used: wal-fetch still delivers from storage, the prefetch worker refuses
// it, and nothing in the linked directory is read, written or removed.
func TestSpool_LinkedSpool(t *testing.T) {
	ctx := context.Background()
	f := newSpoolFixture(t, 3, 1)
	spoolDir := SpoolDir(f.dest)
	if err := os.Symlink(f.outside, spoolDir); err != nil {
		t.Fatal(err)
	}
	o := FetchOptions{Spool: spoolDir}
	f.fetch(t, 1, 3, o)
	if err := f.a.FetchWAL(ctx, segName(9), f.dest, o); err == nil {
		t.Fatal("fetched a segment that is not archived")
	}
	if _, err := f.a.PrefetchWAL(ctx, spoolDir, PrefetchOptions{Count: 2}); err == nil {
		t.Error("the prefetch worker used a linked spool")
	}
	if PrefetchRunning(spoolDir) {
		t.Error("a linked spool counts as running")
	}
	f.checkOutside(t)
}

// TestSpool_LinksInSpool: links planted inside the spool, to files
// elsewhere, are never followed: want and want.new are replaced, a linked
// segment is dropped (the link, not its target), and a linked lock stops
// the worker.
func TestSpool_LinksInSpool(t *testing.T) {
	f := newSpoolFixture(t, 4, 2)
	spoolDir := SpoolDir(f.dest)
	if err := os.Mkdir(spoolDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{segName(2), "000000010000000000000000", spoolWantFile, spoolWantFile + ".new", spoolLockFile} {
		if err := os.Symlink(filepath.Join(f.outside, n), filepath.Join(spoolDir, n)); err != nil {
			t.Fatal(err)
		}
	}
	f.fetch(t, 1, 2, FetchOptions{Spool: spoolDir})
	if fi, err := os.Lstat(filepath.Join(spoolDir, spoolWantFile)); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("want is not a regular file: %v %v", fi, err)
	}
	if _, err := os.Lstat(filepath.Join(spoolDir, segName(2))); err == nil {
		t.Error("the linked segment is still in the spool")
	}
	if _, err := f.a.PrefetchWAL(context.Background(), spoolDir, PrefetchOptions{Count: 2}); err == nil {
		t.Error("the prefetch worker locked through a link")
	}
	f.checkOutside(t)
}

// TestSpool_RelativeDest: PostgreSQL runs restore_command in the data
// directory with %p relative (pg_wal/RECOVERYXLOG), and wal-fetch passes
// the spool as an absolute path. spool.take compared the two directories
// as strings, never equal, so wal-fetch downloaded again every segment the
// prefetch worker (or the restore) had spooled, and the spool only cost
// room. A spooled segment must be taken without a download whatever the
// spelling of dest.
func TestSpool_RelativeDest(t *testing.T) {
	ctx := context.Background()
	f := newSpoolFixture(t, 3, 9)
	log := &storetest.OpenLog{Store: f.a.Store}
	f.a.Store = log
	spoolDir := SpoolDir(f.dest)
	f.fetch(t, 1, 1, FetchOptions{Spool: spoolDir})
	if res, err := f.a.PrefetchWAL(ctx, spoolDir, PrefetchOptions{Count: 2}); err != nil || len(res.Fetched) != 2 {
		t.Fatalf("prefetch: %+v %v, want segments 2 and 3 spooled", res, err)
	}
	pgwal := filepath.Dir(f.dest)
	t.Chdir(filepath.Dir(pgwal))
	rel := filepath.Join(filepath.Base(pgwal), filepath.Base(f.dest))
	log.Reset()
	for no := uint64(2); no <= 3; no++ {
		if err := f.a.FetchWAL(ctx, segName(no), rel, FetchOptions{Spool: spoolDir}); err != nil {
			t.Fatalf("fetch %s: %v", segName(no), err)
		}
		checkFile(t, f.dest, f.segs[segName(no)])
	}
	if keys := log.Keys(); len(keys) > 0 {
		t.Errorf("fetching to %s downloaded %v, which the spool held", rel, keys)
	}
}
