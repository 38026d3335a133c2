package command

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hoardbackup/hoard/internal/pgtest"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
)

// runErr runs hoard with args and returns its exit status and the error
// message it would print.
func runErr(t *testing.T, args ...string) (int, string) {
	t.Helper()
	app := App("test")
	app.Writer, app.ErrWriter = io.Discard, io.Discard
	err := app.RunContext(context.Background(), OrderArgs(app, append([]string{"hoard"}, args...)))
	if err == nil {
		return ExitCode(nil), ""
	}
	return ExitCode(err), ErrorMessage(err)
}

// fillTmpfs mounts a tmpfs of sizeMB MiB and fills it with a file
// (returned) so that only leave bytes stay free.
func fillTmpfs(t *testing.T, sizeMB int, leave int64) (dir, filler string) {
	t.Helper()
	dir = pgtest.MountTmpfs(t, sizeMB)
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	filler = filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), 0, 0, int64(st.Bavail)*st.Bsize-leave); err != nil {
		t.Fatal(err)
	}
	return dir, filler
}

// dirNames lists the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// wal-fetch into a pg_wal on a full, then read-only, file system exits
// 255 (PostgreSQL stops recovery rather than promote without the
// segment), names the directory, and leaves neither the destination nor
// a temporary file; once space is freed the same call delivers the
// segment.
func TestWALFetch_DiskFull(t *testing.T) {
	const name = "000000010000000000000003"
	pgwal, filler := fillTmpfs(t, 2, 256<<10)
	store := t.TempDir()
	cfg := writeSiteConfig(t, localConfig(store))
	seg := pushSegment(t, cfg, name)
	dest := filepath.Join(pgwal, "RECOVERYXLOG")

	t.Run("ErrFull", func(t *testing.T) {
		code, msg := runErr(t, "--config", cfg, "wal-fetch", name, dest)
		t.Log(msg)
		if code != exitWALFatal || !bytes.Contains([]byte(msg), []byte("no space left on device")) || !bytes.Contains([]byte(msg), []byte(pgwal)) {
			t.Errorf("wal-fetch: exit %d, %q; want %d and an error naming %s and the full disk", code, msg, exitWALFatal, pgwal)
		}
		if names := dirNames(t, pgwal); !slices.Equal(names, []string{"filler"}) {
			t.Errorf("pg_wal holds %v after the failed fetch, want only the filler", names)
		}
	})
	t.Run("ErrReadOnly", func(t *testing.T) {
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		remount(t, pgwal, "ro")
		code, msg := runErr(t, "--config", cfg, "wal-fetch", name, dest)
		remount(t, pgwal, "rw")
		if code != exitWALFatal || !bytes.Contains([]byte(msg), []byte(pgwal)) {
			t.Errorf("wal-fetch: exit %d, %q; want %d and an error naming %s", code, msg, exitWALFatal, pgwal)
		}
	})
	t.Run("OKFreed", func(t *testing.T) {
		if code, msg := runErr(t, "--config", cfg, "wal-fetch", name, dest); code != ExitOK {
			t.Fatalf("wal-fetch: exit %d, %s", code, msg)
		}
		if got, err := os.ReadFile(dest); err != nil || !bytes.Equal(got, seg) {
			t.Errorf("fetched %d bytes (%v), want the segment's %d", len(got), err, len(seg))
		}
	})
}

// remount remounts the file system at dir with opts (ro, rw).
func remount(t *testing.T, dir, opts string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,"+opts, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s %s: %v: %s", dir, opts, err, out)
	}
}

// localConfig is a local storage directory's configuration.
func localConfig(dir string) storage.Config {
	return storage.Config{Type: "local", Directory: dir}
}

// pushSegment stores a 1 MiB segment name with wal-push through the
// configuration cfg and returns its bytes.
func pushSegment(t *testing.T, cfg, name string) []byte {
	t.Helper()
	seg := waltest.Segment(t, name, 1<<20, 3)
	src := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(src, seg, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, msg := runErr(t, "--config", cfg, "wal-push", src); code != ExitOK {
		t.Fatalf("wal-push: exit %d, %s", code, msg)
	}
	return seg
}
