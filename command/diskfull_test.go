package command

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

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

// wal-fetch into a pg_wal on a full, then read-only, file system exits
// 255 (PostgreSQL stops recovery rather than promote without the
// segment), names the directory, and leaves neither the destination nor
// a temporary file; once space is freed the same call delivers the
// segment.
func TestWALFetch_DiskFull(t *testing.T) {
	const name = "000000010000000000000003"
	pgwal := pgtest.MountTmpfs(t, 2)
	filler := filepath.Join(pgwal, "filler")
	pgtest.FillDisk(t, filler, 256<<10)
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
		if names := pgtest.Files(t, pgwal); !slices.Equal(names, []string{"filler"}) {
			t.Errorf("pg_wal holds %v after the failed fetch, want only the filler", names)
		}
	})
	t.Run("ErrReadOnly", func(t *testing.T) {
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		pgtest.Remount(t, pgwal, "ro")
		code, msg := runErr(t, "--config", cfg, "wal-fetch", name, dest)
		pgtest.Remount(t, pgwal, "rw")
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
	if code, msg := runErr(t, "--config", cfg, "wal-push", "--allow-root", src); code != ExitOK {
		t.Fatalf("wal-push: exit %d, %s", code, msg)
	}
	return seg
}

// wal-push into a local store on a full, then read-only, file system
// (postgres's, as the server's archive_command finds it: the test, run as
// root, passes --allow-root) exits 1 (PostgreSQL keeps the segment and retries) with an error naming
// the store's path, leaves no temporary file, and keeps the objects
// already stored intact; once space is freed the same push succeeds.
func TestWALPush_DiskFull(t *testing.T) {
	const stored, next = "000000010000000000000003", "000000010000000000000004"
	store := pgtest.MountTmpfs(t, 4)
	cfg := writeSiteConfig(t, localConfig(store))
	seg := pushSegment(t, cfg, stored)
	filler := filepath.Join(store, "filler")
	pgtest.FillDisk(t, filler, 16<<10)
	before := pgtest.Files(t, store)
	src := filepath.Join(t.TempDir(), next)
	if err := os.WriteFile(src, waltest.Segment(t, next, 1<<20, 4), 0o600); err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, want string) {
		t.Helper()
		code, msg := runErr(t, "--config", cfg, "wal-push", "--allow-root", src)
		t.Log(msg)
		if code != ExitFailure || !strings.Contains(msg, want) || !strings.Contains(msg, store) {
			t.Errorf("wal-push: exit %d, %q; want %d and an error naming %s and %q", code, msg, ExitFailure, store, want)
		}
		if got := pgtest.Files(t, store); !slices.Equal(got, before) {
			t.Errorf("the store holds %v after the failed push, want %v", got, before)
		}
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		if code, msg := runErr(t, "--config", cfg, "wal-fetch", stored, dest); code != ExitOK {
			t.Fatalf("wal-fetch of the stored segment: exit %d, %s", code, msg)
		}
		if got, err := os.ReadFile(dest); err != nil || !bytes.Equal(got, seg) {
			t.Errorf("the stored segment changed: %d bytes (%v)", len(got), err)
		}
	}
	pgtest.DiskFaults(t, store, filler, check, func(t *testing.T) {
		if code, msg := runErr(t, "--config", cfg, "wal-push", "--allow-root", src); code != ExitOK {
			t.Fatalf("wal-push: exit %d, %s", code, msg)
		}
	})
}

// create-keys adding a key pair to a configuration file on a full, then
// read-only, file system exits 1 naming the file and the cause, and leaves
// the file as it was with no temporary file beside it: never half a
// private key under the configuration's name. Once space is freed it adds
// the key.
func TestCreateKeys_DiskFull(t *testing.T) {
	dir := pgtest.MountTmpfs(t, 1)
	data, err := os.ReadFile(writeSiteConfig(t, localConfig(t.TempDir())))
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "hoard.json")
	if err := os.WriteFile(cfg, data, 0o600); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(dir, "filler")
	pgtest.FillDisk(t, filler, 0)
	check := func(t *testing.T, want string) {
		t.Helper()
		code, msg := runErr(t, "--config", cfg, "create-keys", "--key-id", "k1", "--bits", "2048")
		t.Log(msg)
		if code != ExitFailure || !strings.Contains(msg, cfg) || !strings.Contains(msg, want) {
			t.Errorf("create-keys: exit %d, %q; want %d and an error naming %s and %q", code, msg, ExitFailure, cfg, want)
		}
		if got, err := os.ReadFile(cfg); err != nil || !bytes.Equal(got, data) {
			t.Errorf("the configuration file changed (%v)", err)
		}
		if names := pgtest.Files(t, dir); !slices.Equal(names, []string{"filler", "hoard.json"}) {
			t.Errorf("the directory holds %v, want only the filler and hoard.json", names)
		}
	}
	pgtest.DiskFaults(t, dir, filler, check, func(t *testing.T) {
		if code, msg := runErr(t, "--config", cfg, "create-keys", "--key-id", "k1", "--bits", "2048"); code != ExitOK {
			t.Fatalf("create-keys: exit %d, %s", code, msg)
		}
		if got, err := os.ReadFile(cfg); err != nil || !bytes.Contains(got, []byte("PRIVATE KEY")) {
			t.Errorf("the configuration file has no private key (%v)", err)
		}
	})
}
