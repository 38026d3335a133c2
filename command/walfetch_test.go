package command

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/storage"
)

// TestWALFetch_SpoolLogLink: a link planted at the prefetch worker's log
// (pg_wal/hoard-prefetch/worker.log, in a restored data directory) is
// replaced, not written through: the file it points at is left alone.
func TestWALFetch_SpoolLogLink(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	store := filepath.Join(root, "store")
	cfg := filepath.Join(root, "hoard.json")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`{"backup_location": %q, "backup_sites": {"s": {"prefix": "s",
		"object_storage": {"storage_type": "local", "directory": %q}}}}`, filepath.Join(root, "state"), store)), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := storage.Open(ctx, storage.Config{Type: "local", Directory: store})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a := &archive.Archive{Store: st, Codec: &archive.Codec{}, Layout: archive.Layout{Prefix: "s"}, Site: "s"}
	const seg = "000000010000000000000002"
	data := waltest.Segment(t, seg, 16<<20, 1)
	src := filepath.Join(root, seg)
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := a.PushWAL(ctx, src, archive.PushOptions{}); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(root, "victim")
	if err := os.WriteFile(victim, []byte("keep\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pgwal := filepath.Join(root, "pg_wal")
	spool := filepath.Join(pgwal, archive.SpoolDirName)
	if err := os.MkdirAll(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(spool, prefetchWorkerLog)); err != nil {
		t.Fatal(err)
	}
	app := App("test")
	var out, errOut bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errOut
	dest := filepath.Join(pgwal, "RECOVERYXLOG")
	if err := app.RunContext(ctx, []string{"hoard", "--config", cfg, "wal-fetch", seg, dest}); err != nil {
		t.Fatalf("wal-fetch: %v\n%s", err, errOut.String())
	}
	if got, err := os.ReadFile(dest); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("delivered %d bytes, %v", len(got), err)
	}
	if got, err := os.ReadFile(victim); err != nil || string(got) != "keep\n" {
		t.Errorf("the file the log link points at now holds %q, %v", got, err)
	}
	if fi, err := os.Lstat(filepath.Join(spool, prefetchWorkerLog)); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("worker.log is not a regular file: %v", err)
	}
}
