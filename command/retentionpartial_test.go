package command

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hoardbackup/hoard/archive"
	"github.com/hoardbackup/hoard/compress"
	"github.com/hoardbackup/hoard/internal/archivetest"
	"github.com/hoardbackup/hoard/internal/testio"
	"github.com/hoardbackup/hoard/internal/waltest"
	"github.com/hoardbackup/hoard/wal"
)

// TestRetention_SupersededPartialReason: a .partial that a daemon left
// when it stopped streaming in segment 5, before the oldest kept backup
// started in that same segment, and whose complete segment was archived
// later, is deleted because the complete segment supersedes it, not
// because it precedes the kept backups' start: it lies in that start
// segment. The plan listed it in the range of the files "deleting what
// precedes 000000010000000000000005" (1 .. 5.partial), a reason that
// contradicts itself.
func TestRetention_SupersededPartialReason(t *testing.T) {
	ctx := context.Background()
	const segSize = 16 << 20
	const system = 7123456789012345678
	seg := func(no uint64) string { return wal.Segment{Timeline: 1, No: no}.Name(segSize) }
	root := t.TempDir()
	store := filepath.Join(root, "store")
	a := archivetest.Local(t, store, "s", &archive.Codec{Compression: compress.Zstd})
	backup := func(name string, startNo uint64, at time.Time) {
		t.Helper()
		archivetest.PutBackupInfo(t, a, name, archivetest.SegmentBackupInfo(startNo, at, system, segSize))
	}
	t0 := time.Now().Add(-48 * time.Hour).UTC().Truncate(time.Minute)
	for no := uint64(1); no <= 7; no++ {
		archivetest.PushWAL(t, a, seg(no), waltest.SegmentOf(t, seg(no), segSize, 0, system), system)
	}
	partial := seg(5) + wal.PartialSuffix
	data := waltest.SegmentOf(t, seg(5), segSize, 0, system)[:segSize/2]
	if _, err := a.Codec.Put(ctx, a.Store, a.Layout.WALKey(partial), bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
	backup(t0.Format("2006-01-02_15-04")+"_0", 5, t0)
	backup(t0.Add(24*time.Hour).Format("2006-01-02_15-04")+"_0", 6, t0.Add(24*time.Hour))

	// The node is a port nothing listens on: the system identifier is
	// unknown, whatever runs on this machine's default port.
	cfg := fmt.Sprintf(`{"backup_location": %q, "backup_sites": {"s": {"prefix": "s",
		"nodes": [{"host": "127.0.0.1", "port": %d}],
		"object_storage": {"storage_type": "local", "directory": %q}}}}`,
		filepath.Join(root, "state"), testio.FreePort(t), store)
	cfgFile := filepath.Join(root, "hoard.json")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		app := App("test")
		app.Writer, app.ErrWriter = &out, &errOut
		if err := app.RunContext(ctx, append([]string{"hoard", "--config", cfgFile, "retention", "--dry-run"}, args...)); err != nil {
			t.Fatalf("hoard retention --dry-run %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
		}
		return out.String()
	}

	text := run()
	if want := fmt.Sprintf("  s %s .. %s: 4 files,", seg(1), seg(4)); !strings.Contains(text, want) {
		t.Errorf("hoard retention --dry-run:\n%s\nwant the files preceding the horizon as the line %q", text, want)
	}
	if want := fmt.Sprintf("  s %s: 1 file, ", partial); !strings.Contains(text, want) {
		t.Errorf("hoard retention --dry-run:\n%s\nwant the .partial on a line of its own, %q", text, want)
	}
	if want := fmt.Sprintf("superseded by the complete segment %s", seg(5)); !strings.Contains(text, want) {
		t.Errorf("hoard retention --dry-run:\n%s\nwant the .partial's reason %q", text, want)
	}

	var out retentionJSON
	if err := json.Unmarshal([]byte(run("--json")), &out); err != nil {
		t.Fatal(err)
	}
	if got, want := len(out.WAL.Ranges), 2; got != want {
		t.Fatalf("--json: %d WAL ranges %+v, want %d", got, out.WAL.Ranges, want)
	}
	if r := out.WAL.Ranges[0]; r.First != seg(1) || r.Last != seg(4) || r.SupersededBy != "" {
		t.Errorf("--json: first range %+v, want %s .. %s preceding the horizon", r, seg(1), seg(4))
	}
	if r := out.WAL.Ranges[1]; r.First != partial || r.Last != partial || r.SupersededBy != seg(5) {
		t.Errorf("--json: second range %+v, want %s superseded by %s", r, partial, seg(5))
	}
}
