package basebackup

import (
	"context"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/hoardbackup/hoard/internal/pgtest"
)

// TestRun_DeltaStagingDiskFull: a delta backup whose staging directory
// (Options.TempDir) fills while it encodes a large file fails with ENOSPC
// naming that directory, stores no backup and leaves nothing in the
// directory (staged objects are unlinked as soon as they are created);
// with room again the backup is taken.
func TestRun_DeltaStagingDiskFull(t *testing.T) {
	staging := pgtest.MountTmpfs(t, 1)
	ctx := testContext(t)
	c := pgtest.Start(t, pgtest.Options{Major: 15})
	blob := filepath.Join(c.DataDir, "hoard_test_blob")
	data := make([]byte, 2<<20) // incompressible, more than the staging directory holds
	rand.New(rand.NewSource(1)).Read(data)
	if err := os.WriteFile(blob, data, 0o600); err != nil {
		t.Fatal(err)
	}
	pgtest.Chown(t, blob)
	a := localArchive(t)
	opts := deltaOptions(t, c, a)
	opts.NoWait = true
	opts.Parallel = 1
	opts.TempDir = staging
	opts.Logger = zerolog.Nop()
	_, err := Run(ctx, opts)
	if !errors.Is(err, unix.ENOSPC) || !strings.Contains(err.Error(), staging) {
		t.Fatalf("Run = %v, want ENOSPC naming %s", err, staging)
	}
	t.Log(err)
	if bs, err := a.ListBackups(context.Background()); err != nil || len(bs) != 0 {
		t.Errorf("the failed backup is listed: %d backups (%v)", len(bs), err)
	}
	if files := pgtest.Files(t, staging); len(files) != 0 {
		t.Errorf("the staging directory holds %v after the failed backup", files)
	}
	pgtest.Remount(t, staging, "size=64m")
	if _, err := Run(ctx, opts); err != nil {
		t.Fatal(err)
	}
}
