package archive

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/storage"
)

// fetchChildEnv names the destination a re-run of the test binary fetches
// segName(1) to, through storage that stalls (stdinStallStore).
const fetchChildEnv = "HOARD_TEST_FETCH_CHILD_DEST"

// stdinStallStore serves the WAL objects of its Store with a pause near
// their end, until its process's standard input closes: a download that
// stalls halfway, with most of its temporary file written.
type stdinStallStore struct {
	storage.Store
}

func (s stdinStallStore) Open(ctx context.Context, key string) (io.ReadCloser, storage.Object, error) {
	rc, obj, err := s.Store.Open(ctx, key)
	if err != nil || !strings.Contains(key, "/xlog/") {
		return rc, obj, err
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return nil, obj, err
	}
	cut := len(data) * 7 / 8
	stall := readerFunc(func([]byte) (int, error) {
		_, _ = io.Copy(io.Discard, os.Stdin)
		return 0, io.EOF
	})
	return io.NopCloser(io.MultiReader(bytes.NewReader(data[:cut]), stall, bytes.NewReader(data[cut:]))), obj, nil
}

// readerFunc is an io.Reader made of a function.
type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// TestFetchWAL_StalledChild is the child of TestFetchWAL_KilledDownload:
// a wal-fetch of segName(1) whose storage stalls until its standard input
// closes. Without fetchChildEnv it does nothing.
func TestFetchWAL_StalledChild(t *testing.T) {
	dest := os.Getenv(fetchChildEnv)
	if dest == "" {
		t.Skip("the child of TestFetchWAL_KilledDownload")
	}
	a := walTestArchive(t, false)
	pushSegments(t, a, 1, 1)
	a.Store = stdinStallStore{a.Store}
	if err := a.FetchWAL(context.Background(), segName(1), dest, FetchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// startStalledFetch starts a wal-fetch of segName(1) to dest in a child
// process whose download stalls near its end, and returns once its
// temporary file in dest's directory holds most of the segment. Closing
// the returned pipe lets it finish.
func startStalledFetch(t *testing.T, dest string) (*exec.Cmd, io.WriteCloser, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFetchWAL_StalledChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), fetchChildEnv+"="+dest)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		names, _ := filepath.Glob(filepath.Join(filepath.Dir(dest), fetchTempPrefix+"*"))
		for _, name := range names {
			if fi, err := os.Stat(name); err == nil && fi.Size() >= testSegSize/2 {
				return cmd, stdin, name
			}
		}
	}
	t.Fatalf("the child's download wrote no temporary file of half a segment in 30 s\n%s", out.String())
	return nil, nil, ""
}

// resumeStalledFetch lets the child startStalledFetch started finish its
// download, which must succeed and leave want at dest.
func resumeStalledFetch(t *testing.T, cmd *exec.Cmd, stdin io.WriteCloser, dest string, want []byte) {
	t.Helper()
	if err := stdin.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the live download, resumed: %v", err)
	}
	checkFile(t, dest, want)
}

// TestFetchWAL_KilledDownload: a wal-fetch killed (kill -9, or its exit 10 s
// after a signal) during its download leaves its temporary file in pg_wal.
// On a pg_wal with little room, that file left the next wal-fetch none:
// it failed with ENOSPC, naming its own temporary file, until the leftover
// was an hour old, and recovery stopped. The next wal-fetch must remove a
// dead download's file at once, and never a live one's: two wal-fetch
// processes may run at once (the prefetch worker, a call by hand).
func TestFetchWAL_KilledDownload(t *testing.T) {
	ctx := context.Background()
	t.Run("OKKilled", func(t *testing.T) {
		pgwal := pgtest.MountTmpfs(t, 4)
		pgtest.FillDisk(t, filepath.Join(pgwal, "filler"), testSegSize*3/2)
		dest := filepath.Join(pgwal, "RECOVERYXLOG")
		cmd, _, tmp := startStalledFetch(t, dest)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		a := walTestArchive(t, false)
		segs := pushSegments(t, a, 1, 1)
		if err := a.FetchWAL(ctx, segName(1), dest, FetchOptions{}); err != nil {
			t.Fatalf("fetch after a wal-fetch killed during its download: %v", err)
		}
		checkFile(t, dest, segs[segName(1)])
		if _, err := os.Lstat(tmp); err == nil {
			t.Errorf("the killed download's temporary file %s is still there", tmp)
		}
	})
	// pg_wal full with a live download's file: it stays, and the error
	// says how much is free, and where.
	t.Run("ErrFullLive", func(t *testing.T) {
		pgwal := pgtest.MountTmpfs(t, 4)
		pgtest.FillDisk(t, filepath.Join(pgwal, "filler"), testSegSize*3/2)
		dest := filepath.Join(pgwal, "RECOVERYXLOG")
		cmd, stdin, tmp := startStalledFetch(t, dest)
		a := walTestArchive(t, false)
		segs := pushSegments(t, a, 1, 2)
		err := a.FetchWAL(ctx, segName(2), filepath.Join(pgwal, "RECOVERYHISTORY"), FetchOptions{})
		if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "bytes free") || !strings.Contains(err.Error(), pgwal) {
			t.Errorf("fetch into a pg_wal full with a live download = %v, want ENOSPC saying how much %s has free", err, pgwal)
		}
		if _, err := os.Lstat(tmp); err != nil {
			t.Fatalf("a live download's temporary file was removed by another fetch: %v", err)
		}
		resumeStalledFetch(t, cmd, stdin, dest, segs[segName(1)])
	})
	t.Run("OKLive", func(t *testing.T) {
		pgwal := t.TempDir()
		cmd, stdin, tmp := startStalledFetch(t, filepath.Join(pgwal, "RECOVERYXLOG"))
		a := walTestArchive(t, false)
		segs := pushSegments(t, a, 1, 2)
		other := filepath.Join(pgwal, "RECOVERYHISTORY")
		if err := a.FetchWAL(ctx, segName(2), other, FetchOptions{}); err != nil {
			t.Fatal(err)
		}
		checkFile(t, other, segs[segName(2)])
		if _, err := os.Lstat(tmp); err != nil {
			t.Fatalf("a live download's temporary file was removed by another fetch: %v", err)
		}
		resumeStalledFetch(t, cmd, stdin, filepath.Join(pgwal, "RECOVERYXLOG"), segs[segName(1)])
	})
}

// TestCreateLockedTemp_Cleaner: another wal-fetch removing dead downloads'
// files all the while (removeDeadTemps) never removes a file
// createLockedTemp creates, though it may take its lock between the create
// and the lock (it finds it empty): each create succeeds, and its file is
// still at its name, with its lock held, after tmp's Close.
func TestCreateLockedTemp_Cleaner(t *testing.T) {
	dir, err := os.OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				removeDeadTemps(dir, fetchTempPrefix)
			}
		}
	}()
	defer func() { close(stop); <-done }()
	for range 500 {
		tmp, lock, name, err := createLockedTemp(dir, fetchTempPrefix+"x-")
		if err != nil {
			t.Fatal(err)
		}
		if err := sameFile(dir, name, tmp); err != nil {
			t.Fatalf("createLockedTemp returned %s, removed by another fetch: %v", name, err)
		}
		tmp.Close()
		if err := sameFile(dir, name, lock); err != nil {
			t.Fatalf("%s removed after its Close, with its lock held: %v", name, err)
		}
		if err := dir.Remove(name); err != nil {
			t.Fatal(err)
		}
		lock.Close()
	}
}

// nfs4Flock acts as flock(2) on an NFSv4 mount, where the client emulates
// it with a lock on the server and refuses an exclusive lock on a file
// not open for writing (fs/nfs/nfs4proc.c nfs4_proc_lock: EBADF).
func nfs4Flock(fd, how int) error {
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	if how&syscall.LOCK_EX != 0 && flags&unix.O_ACCMODE == unix.O_RDONLY {
		return syscall.EBADF
	}
	return syscall.Flock(fd, how)
}

// TestFetchWAL_NFSv4: pg_wal on NFSv4 (PostgreSQL supports a data
// directory there). A download's lock and another wal-fetch's try for it
// must be taken through descriptors open for writing, or every download
// fails (EBADF), and a dead download's file is not removed at once.
func TestFetchWAL_NFSv4(t *testing.T) {
	flock = nfs4Flock
	t.Cleanup(func() { flock = syscall.Flock })
	ctx := context.Background()
	a := walTestArchive(t, false)
	segs := pushSegments(t, a, 1, 3)
	t.Run("OK", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		if err := a.FetchWAL(ctx, segName(1), dest, FetchOptions{}); err != nil {
			t.Fatalf("fetch into a pg_wal on NFSv4: %v", err)
		}
		checkFile(t, dest, segs[segName(1)])
	})
	t.Run("OKDead", func(t *testing.T) {
		pgwal := t.TempDir()
		dead := filepath.Join(pgwal, fetchTempPrefix+segName(1)+"-0123456789abcdef")
		if err := os.WriteFile(dead, segs[segName(1)][:testSegSize/2], 0o600); err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(pgwal, "RECOVERYXLOG")
		if err := a.FetchWAL(ctx, segName(1), dest, FetchOptions{}); err != nil {
			t.Fatalf("fetch into a pg_wal on NFSv4: %v", err)
		}
		if _, err := os.Lstat(dead); err == nil {
			t.Errorf("a dead download's temporary file on NFSv4 is still there")
		}
	})
	// The prefetch worker downloads into its spool the same way.
	t.Run("OKPrefetch", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		o := FetchOptions{Spool: SpoolDir(dest)}
		if err := a.FetchWAL(ctx, segName(1), dest, o); err != nil {
			t.Fatal(err)
		}
		res, err := a.PrefetchWAL(ctx, o.Spool, PrefetchOptions{Count: 2})
		if err != nil || len(res.Fetched) != 2 {
			t.Fatalf("prefetch into a pg_wal on NFSv4 = %+v, %v; want 2 segments fetched", res, err)
		}
		if err := a.FetchWAL(ctx, segName(3), dest, o); err != nil {
			t.Fatal(err)
		}
		checkFile(t, dest, segs[segName(3)])
	})
}
