package verify

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/storage"
)

// scratchKillEnv names the directory TestNewScratch_KilledChild makes its
// scratch directory in when set.
const scratchKillEnv = "HOARD_TEST_SCRATCH_KILL"

// TestNewScratch_KilledChild is the child process of
// TestRestoreTest_RemovesKilledScratch: without scratchKillEnv it does
// nothing. It makes a scratch directory, fills it as a restore would, and
// dies of SIGKILL.
func TestNewScratch_KilledChild(t *testing.T) {
	dir := os.Getenv(scratchKillEnv)
	if dir == "" {
		return
	}
	p, _, err := newScratch(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(p, "data", "base", "5"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, "data", "base", "5", "16401"), make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// TestRestoreTest_RemovesKilledScratch: a test restore killed midway (the
// daemon's, SIGKILL) leaves its scratch directory with a restored cluster
// in it; the next test restore removes it, and an old one without a lock
// (an earlier hoard's), but not the directory of a test restore running
// beside it, a fresh one without a lock, or a link.
func TestRestoreTest_RemovesKilledScratch(t *testing.T) {
	dir := t.TempDir()
	testio.RunKilledChild(t, "TestNewScratch_KilledChild", scratchKillEnv, dir)
	killed := testio.DirNames(t, dir)
	if len(killed) != 1 {
		t.Fatalf("the killed run left %v, want its scratch directory", killed)
	}
	running, lock, err := newScratch(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	for _, n := range []string{scratchPrefix + "old", scratchPrefix + "fresh"} {
		if err := os.Mkdir(filepath.Join(dir, n), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleUnlocked)
	if err := os.Chtimes(filepath.Join(dir, scratchPrefix+"old"), old, old); err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "keep"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, scratchPrefix+"link")); err != nil {
		t.Fatal(err)
	}

	a := archivetest.New(t, storage.NewMem(), &archive.Codec{})
	if _, err := RestoreTest(context.Background(), RestoreTestOptions{
		Archive: a, ScratchDir: dir, RestoreCommand: "false", RunAsUser: pgtest.ServerUser, Logger: zerolog.Nop(),
	}); err == nil {
		t.Fatal("RestoreTest of an empty archive succeeded")
	}
	want := []string{filepath.Base(running), scratchPrefix + "fresh", scratchPrefix + "link"}
	slices.Sort(want)
	if got := testio.DirNames(t, dir); !slices.Equal(got, want) {
		t.Errorf("scratch directories after a test restore: %v, want %v (the killed run's %s and the old one removed)", got, want, killed[0])
	}
	if got := testio.DirNames(t, outside); !slices.Equal(got, []string{"keep"}) {
		t.Errorf("the link's target holds %v, want it as it was", got)
	}
}

// TestNewScratch_ConcurrentCleanup: a test restore that starts while
// another one cleans up (two sites of a daemon, or hoard verify --restore
// beside it) keeps its scratch directory, whatever the moment. Before, a
// cleanup between the creation of the lock file and its flock found the
// file unlocked, took the directory for a killed run's and removed it.
func TestNewScratch_ConcurrentCleanup(t *testing.T) {
	dir := t.TempDir()
	scratchLockHook = func(string) { removeStaleScratch(dir, zerolog.Nop()) }
	t.Cleanup(func() { scratchLockHook = nil })
	p, lock, err := newScratch(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if _, err := os.Stat(filepath.Join(p, scratchLock)); err != nil {
		t.Errorf("scratch directory after a cleanup while it was made: %v", err)
	}
	removeStaleScratch(dir, zerolog.Nop())
	if _, err := os.Stat(p); err != nil {
		t.Errorf("locked scratch directory after a cleanup: %v", err)
	}
}
